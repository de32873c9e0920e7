-- Send one message (RSMQ sendMessage in one round trip).
-- KEYS[1] messages zset, KEYS[2] attributes hash, KEYS[3] send marker (KeyLayout.send_marker)
-- ARGV[1] 22-char random id suffix, ARGV[2] body, ARGV[3] body length in UTF-16 code units,
-- ARGV[4] delay in seconds or '' for the queue's default,
-- ARGV[5] realtime target ('' or P/S + channel, see wsmq_publish), ARGV[6] marker TTL (s)
-- Hand-off (optional, docs/delivery.md "Hand-off"): KEYS[4] the queue's parked-nodes hash
-- (node token -> '<room>:<vt>'; receive.lua parks for one message), ARGV[7] the nodes' hand-off channel prefix, ARGV[8] the queue
-- name. A message visible at once goes straight to a parked node: received here for it (rc 1,
-- hidden for its vt) and published on its channel as '<queue>\n<id>\n<fr>\n<body>', instead
-- of the realtime notification. PUBLISH counts the node's listener: a node that nobody listens
-- for any more (dead, or its pub/sub connection lost) is dropped and the next one tried.
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
if delay == 0 and KEYS[4] then
  local parked = redis.call('HGETALL', KEYS[4])
  local n = #parked / 2
  if n > 0 then
    local now = wsmq_fmt(ms)
    local payload = ARGV[8] .. '\n' .. id .. '\n' .. now .. '\n' .. ARGV[2]
    local first = string.byte(ARGV[1], 1) % n -- spread over the parked nodes (random suffix)
    for k = 0, n - 1 do
      local i = ((first + k) % n) * 2 + 1
      local node, room_vt = parked[i], parked[i + 1]
      local sep = string.find(room_vt, ':', 1, true) or 0
      local room = tonumber(string.sub(room_vt, 1, sep - 1)) or 0
      local vt = tonumber(string.sub(room_vt, sep + 1)) or tonumber(q[1]) or 0
      if room > 0 and redis.call('PUBLISH', ARGV[7] .. node, payload) > 0 then
        redis.call('ZADD', KEYS[1], wsmq_fmt(ms + vt * 1000), id)
        redis.call('HSET', KEYS[2], id .. ':rc', 1, id .. ':fr', now)
        redis.call('HINCRBY', KEYS[2], 'totalrecv', 1)
        if room > 1 then
          redis.call('HSET', KEYS[4], node, (room - 1) .. ':' .. vt)
        else
          redis.call('HDEL', KEYS[4], node)
        end
        return id
      end
      redis.call('HDEL', KEYS[4], node)
    end
  end
end
if ARGV[5] ~= '' then
  -- RSMQ's realtime payload: the number of messages in the queue, hidden ones included.
  wsmq_publish(ARGV[5], redis.call('ZCARD', KEYS[1]))
end
return id
