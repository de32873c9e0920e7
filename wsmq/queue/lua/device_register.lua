-- A subscription of device ARGV[1] starts on the node ARGV[2] (holder): register the device
-- (last seen = now), take or renew the holder's lease until now + ARGV[3] ms, and give the
-- inbox the queue's settings. ARGV[4] (optional): most devices the queue may have (0 = no
-- limit); a new device beyond it is refused and nothing is written.
-- KEYS[1] devices zset, KEYS[2] leases zset, KEYS[3] queue hash, KEYS[4] inbox hash
-- Returns 1 when the device was new, 0 when it was registered already, -1 when refused.
local cap = tonumber(ARGV[4] or '0') or 0
if cap > 0 and not redis.call('ZSCORE', KEYS[1], ARGV[1])
    and redis.call('ZCARD', KEYS[1]) >= cap then
  return -1
end
local _, _, ms = wsmq_now()
local new = redis.call('ZADD', KEYS[1], wsmq_fmt(ms), ARGV[1])
redis.call('ZADD', KEYS[2], wsmq_fmt(ms + tonumber(ARGV[3])), ARGV[1] .. '/' .. ARGV[2])
wsmq_sync_inbox(KEYS[3], KEYS[4])
return new
