-- Move up to N messages from a dead-letter queue back to a queue (the redrive), oldest first.
-- Each message keeps its id and body; its receive count and first-receive time start again, and
-- it is visible at once. One script call is atomic: a message is in exactly one of the queues.
-- KEYS[1] dead-letter zset, KEYS[2] dead-letter hash, KEYS[3] target zset, KEYS[4] target hash
-- ARGV[1] most messages to move, ARGV[2] the target's realtime target ('' or P/S + channel)
-- Returns the number moved.
if redis.call('HEXISTS', KEYS[2], 'vt') == 0 or redis.call('HEXISTS', KEYS[4], 'vt') == 0 then
  return redis.error_reply('queueNotFound')
end
local _, _, ms = wsmq_now()
local now = wsmq_fmt(ms)
local ids = redis.call('ZRANGE', KEYS[1], 0, tonumber(ARGV[1]) - 1)
local moved = 0
for _, id in ipairs(ids) do
  local body = redis.call('HGET', KEYS[2], id)
  redis.call('ZREM', KEYS[1], id)
  redis.call('HDEL', KEYS[2], id, id .. ':rc', id .. ':fr')
  if body then
    redis.call('ZADD', KEYS[3], now, id)
    redis.call('HSET', KEYS[4], id, body)
    redis.call('HDEL', KEYS[4], id .. ':rc', id .. ':fr')
    moved = moved + 1
  end
end
if moved > 0 and ARGV[2] ~= '' then
  wsmq_publish(ARGV[2], redis.call('ZCARD', KEYS[3]))
end
return moved
