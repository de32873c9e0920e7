-- Delete up to N messages of a queue (the purge, in bounded steps); the queue stays.
-- KEYS[1] messages zset, KEYS[2] attributes hash; ARGV[1] most messages to delete
-- Returns {deleted, left}.
if redis.call('HEXISTS', KEYS[2], 'vt') == 0 then
  return redis.error_reply('queueNotFound')
end
local ids = redis.call('ZRANGE', KEYS[1], 0, tonumber(ARGV[1]) - 1)
for _, id in ipairs(ids) do
  redis.call('HDEL', KEYS[2], id, id .. ':rc', id .. ':fr')
end
if #ids > 0 then
  redis.call('ZREM', KEYS[1], unpack(ids))
end
return {#ids, redis.call('ZCARD', KEYS[1])}
