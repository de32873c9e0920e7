-- Copy group messages into one member queue, at most once per (message, member).
-- KEYS[1] member messages zset, KEYS[2] member attributes hash,
-- KEYS[3..] copy markers (KeyLayout.copy_marker), one per message, in ARGV order
-- ARGV[1] realtime target of the member ('' or P/S + channel, see wsmq_publish),
-- ARGV[2] marker TTL (s), then per message: id, body, body length in UTF-16 code units
-- Returns one status per message: 'new' (stored now), 'dup' (stored before: its marker exists,
-- or the copy, which keeps the group message's id, is still in the queue), 'long' (longer
-- than the member's maxsize: not stored).  A whole re-run (a copier redoing a batch after a
-- crash, or redis-py replaying a call whose reply was lost) therefore stores nothing twice.
local q = redis.call('HMGET', KEYS[2], 'vt', 'delay', 'maxsize')
if not q[1] or not q[2] or not q[3] then
  return redis.error_reply('queueNotFound')
end
local delay = tonumber(q[2]) or 0
local maxsize = tonumber(q[3]) or -1
local _, _, ms = wsmq_now()
local visible = wsmq_fmt(ms + delay * 1000)
local out = {}
local stored = 0
for i = 3, #KEYS do
  local j = 3 + (i - 3) * 3
  local id = ARGV[j]
  if redis.call('EXISTS', KEYS[i]) == 1 or redis.call('HEXISTS', KEYS[2], id) == 1 then
    out[#out + 1] = 'dup'
  elseif maxsize ~= -1 and tonumber(ARGV[j + 2]) > maxsize then
    out[#out + 1] = 'long'
  else
    redis.call('ZADD', KEYS[1], visible, id)
    redis.call('HSET', KEYS[2], id, ARGV[j + 1])
    redis.call('SET', KEYS[i], '1', 'EX', ARGV[2])
    stored = stored + 1
    out[#out + 1] = 'new'
  end
end
if stored > 0 then
  redis.call('HINCRBY', KEYS[2], 'totalsent', stored)
  -- One notification for the batch, RSMQ's payload: the queue's size.
  wsmq_publish(ARGV[1], redis.call('ZCARD', KEYS[1]))
end
return out
