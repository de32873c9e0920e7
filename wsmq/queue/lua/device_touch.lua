-- Renew the leases of the devices node ARGV[1] holds: until now + ARGV[2] ms; ARGV[3..] device
-- ids. A device removed meanwhile (an explicit leave) is registered again: it is in use; the
-- shared inbox '~' is not (its fan-out removed it: its consumers go back to the queue).
-- KEYS[1] devices zset, KEYS[2] leases zset
local _, _, ms = wsmq_now()
local now, until_ = wsmq_fmt(ms), wsmq_fmt(ms + tonumber(ARGV[2]))
for i = 3, #ARGV do
  if ARGV[i] ~= '~' or redis.call('ZSCORE', KEYS[1], '~') then
    redis.call('ZADD', KEYS[1], now, ARGV[i])
    redis.call('ZADD', KEYS[2], until_, ARGV[i] .. '/' .. ARGV[1])
  end
end
return #ARGV - 2
