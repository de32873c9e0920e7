-- Change the visibility timeout of one or more messages (RSMQ changeMessageVisibility, batched).
-- KEYS[1] messages zset, KEYS[2] attributes hash
-- ARGV[1] vt in seconds, ARGV[2..] message ids
-- Returns how many of the ids existed (and were changed).
local q = redis.call('HMGET', KEYS[2], 'vt', 'delay', 'maxsize')
if not q[1] or not q[2] or not q[3] then
  return redis.error_reply('queueNotFound')
end
local _, _, ms = wsmq_now()
local score = wsmq_fmt(ms + tonumber(ARGV[1]) * 1000)
local n = 0
for i = 2, #ARGV do
  if redis.call('ZSCORE', KEYS[1], ARGV[i]) then
    redis.call('ZADD', KEYS[1], score, ARGV[i])
    n = n + 1
  end
end
return n
