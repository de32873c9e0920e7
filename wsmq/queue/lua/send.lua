-- Send one message (RSMQ sendMessage in one round trip).
-- KEYS[1] messages zset, KEYS[2] attributes hash, KEYS[3] send marker (KeyLayout.send_marker)
-- ARGV[1] 22-char random id suffix, ARGV[2] body, ARGV[3] body length in UTF-16 code units,
-- ARGV[4] delay in seconds or '' for the queue's default,
-- ARGV[5] realtime target ('' or P/S + channel, see wsmq_publish), ARGV[6] marker TTL (s)
-- The suffix is new for every send_message call, so a second run with the same ARGV is a
-- client-side retry (redis-py's Retry after a lost reply) of a send that was applied: answer
-- with the id stored then and change nothing (no second copy, no second notification).
local done = redis.call('GET', KEYS[3])
if done then
  return done
end
local q = redis.call('HMGET', KEYS[2], 'vt', 'delay', 'maxsize')
if not q[1] or not q[2] or not q[3] then
  return redis.error_reply('queueNotFound')
end
local delay = tonumber(ARGV[4]) or tonumber(q[2]) or 0
local maxsize = tonumber(q[3]) or -1
if maxsize ~= -1 and tonumber(ARGV[3]) > maxsize then
  return redis.error_reply('messageTooLong')
end
local sec, usec, ms = wsmq_now()
local id = wsmq_base36(sec * 1000000 + usec) .. ARGV[1]
redis.call('ZADD', KEYS[1], wsmq_fmt(ms + delay * 1000), id)
redis.call('HSET', KEYS[2], id, ARGV[2])
redis.call('HINCRBY', KEYS[2], 'totalsent', 1)
redis.call('SET', KEYS[3], id, 'EX', ARGV[6])
if ARGV[5] ~= '' then
  -- RSMQ's realtime payload: the number of messages in the queue, hidden ones included.
  wsmq_publish(ARGV[5], redis.call('ZCARD', KEYS[1]))
end
return id
