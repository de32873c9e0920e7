-- Peek: the first N messages of a queue in delivery order, without receiving them (no receive
-- count, no visibility change), each body cut to at most M bytes here, in Redis: a peek at
-- huge messages (maxsize -1) moves M bytes per message to the node, not the whole bodies.
-- KEYS[1] messages zset, KEYS[2] attributes hash; ARGV[1] most messages (N), ARGV[2] M
-- Returns {id, score, body (at most M bytes), body size in bytes, rc, fr, ...}; a message
-- deleted meanwhile is left out.
if redis.call('HEXISTS', KEYS[2], 'vt') == 0 then
  return redis.error_reply('queueNotFound')
end
local cap = tonumber(ARGV[2])
local ranked = redis.call('ZRANGE', KEYS[1], 0, tonumber(ARGV[1]) - 1, 'WITHSCORES')
local out = {}
for i = 1, #ranked, 2 do
  local id = ranked[i]
  local v = redis.call('HMGET', KEYS[2], id, id .. ':rc', id .. ':fr')
  if v[1] then
    local size = string.len(v[1])
    local body = v[1]
    if size > cap then
      -- Cut before a character that would be split: back over continuation bytes (at most 3).
      local cut = cap
      while cut > cap - 3 do
        local b = string.byte(body, cut + 1)
        if b < 128 or b >= 192 then break end
        cut = cut - 1
      end
      body = string.sub(body, 1, cut)
    end
    out[#out + 1] = id
    out[#out + 1] = ranked[i + 1]
    out[#out + 1] = body
    out[#out + 1] = size
    out[#out + 1] = v[2] or '0'
    out[#out + 1] = v[3] or '0'
  end
end
return out
