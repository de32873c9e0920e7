-- Delete one or more messages (RSMQ deleteMessage, batched).
-- KEYS[1] messages zset, KEYS[2] attributes hash; ARGV message ids
-- An id counts as deleted, as in RSMQ, only when it was in the zset and had hash fields.
local n = 0
for i = 1, #ARGV do
  local id = ARGV[i]
  local z = redis.call('ZREM', KEYS[1], id)
  local h = redis.call('HDEL', KEYS[2], id, id .. ':rc', id .. ':fr')
  if z == 1 and h > 0 then
    n = n + 1
  end
end
return n
