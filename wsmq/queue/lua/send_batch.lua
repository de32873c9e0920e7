-- Send many messages in one round trip; all or nothing (one too long: none is stored).
-- KEYS[1] messages zset, KEYS[2] attributes hash,
-- KEYS[3] send marker of the first message's suffix (KeyLayout.send_marker)
-- ARGV[1] delay in seconds or '' for the queue's default,
-- ARGV[2] realtime target ('' or P/S + channel, see wsmq_publish), ARGV[3] marker TTL (s),
-- then per message: 22-char random id suffix, body, length in UTF-16 code units.
-- Message i gets the id time TIME + i microseconds so the batch keeps its order in the zset
-- (members with equal scores sort by id).
-- As in send.lua, a marker means this exact call already ran (a client retry after a lost
-- reply): rebuild the ids from the stored base time and the suffixes, change nothing.
local done = redis.call('GET', KEYS[3])
if done then
  local base = tonumber(done)
  local ids = {}
  for i = 4, #ARGV, 3 do
    ids[#ids + 1] = wsmq_base36(base + #ids) .. ARGV[i]
  end
  return ids
end
local q = redis.call('HMGET', KEYS[2], 'vt', 'delay', 'maxsize')
if not q[1] or not q[2] or not q[3] then
  return redis.error_reply('queueNotFound')
end
local delay = tonumber(ARGV[1]) or tonumber(q[2]) or 0
local maxsize = tonumber(q[3]) or -1
if maxsize ~= -1 then
  for i = 6, #ARGV, 3 do
    if tonumber(ARGV[i]) > maxsize then
      return redis.error_reply('messageTooLong')
    end
  end
end
local sec, usec, ms = wsmq_now()
local base = sec * 1000000 + usec
local score = wsmq_fmt(ms + delay * 1000)
local ids, zargs, hargs = {}, {}, {}
for i = 4, #ARGV, 3 do
  local id = wsmq_base36(base + #ids) .. ARGV[i]
  ids[#ids + 1] = id
  zargs[#zargs + 1] = score
  zargs[#zargs + 1] = id
  hargs[#hargs + 1] = id
  hargs[#hargs + 1] = ARGV[i + 1]
end
-- One ZADD and one HSET per CHUNK messages, not one of each per message (~10 % less CPU).
local CHUNK = 500
for i = 1, #zargs, 2 * CHUNK do
  local last = math.min(i + 2 * CHUNK - 1, #zargs)
  redis.call('ZADD', KEYS[1], unpack(zargs, i, last))
  redis.call('HSET', KEYS[2], unpack(hargs, i, last))
end
redis.call('HINCRBY', KEYS[2], 'totalsent', #ids)
-- The base time, not the ids: 16 bytes whatever the batch size; the suffixes come again in ARGV.
redis.call('SET', KEYS[3], wsmq_fmt(base), 'EX', ARGV[3])
if ARGV[2] ~= '' then
  wsmq_publish(ARGV[2], redis.call('ZCARD', KEYS[1]))
end
return ids
