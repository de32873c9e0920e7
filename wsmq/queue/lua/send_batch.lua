-- Send many messages in one round trip; all or nothing (one too long: none is stored).
-- KEYS[1] messages zset, KEYS[2] attributes hash
-- ARGV[1] delay in seconds or '' for the queue's default,
-- ARGV[2] realtime target ('' or P/S + channel, see wsmq_publish),
-- then per message: 22-char random id suffix, body, length in UTF-16 code units.
-- Message i gets the id time TIME + i microseconds so the batch keeps its order in the zset
-- (members with equal scores sort by id).
local q = redis.call('HMGET', KEYS[2], 'vt', 'delay', 'maxsize')
if not q[1] or not q[2] or not q[3] then
  return redis.error_reply('queueNotFound')
end
local delay = tonumber(ARGV[1]) or tonumber(q[2]) or 0
local maxsize = tonumber(q[3]) or -1
if maxsize ~= -1 then
  for i = 5, #ARGV, 3 do
    if tonumber(ARGV[i]) > maxsize then
      return redis.error_reply('messageTooLong')
    end
  end
end
local sec, usec, ms = wsmq_now()
local base = sec * 1000000 + usec
local score = wsmq_fmt(ms + delay * 1000)
local ids = {}
for i = 3, #ARGV, 3 do
  local id = wsmq_base36(base + #ids) .. ARGV[i]
  redis.call('ZADD', KEYS[1], score, id)
  redis.call('HSET', KEYS[2], id, ARGV[i + 1])
  ids[#ids + 1] = id
end
redis.call('HINCRBY', KEYS[2], 'totalsent', #ids)
if ARGV[2] ~= '' then
  wsmq_publish(ARGV[2], redis.call('ZCARD', KEYS[1]))
end
return ids
