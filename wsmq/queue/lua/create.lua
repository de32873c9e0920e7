-- Create a queue (RSMQ createQueue; the QUEUES set is updated by the caller).
-- KEYS[1] attributes hash, KEYS[2] dead-letter attributes hash (only when ARGV[4] ~= '')
-- ARGV[1] vt, ARGV[2] delay, ARGV[3] maxsize, ARGV[4] dead-letter queue name or '',
-- ARGV[5..] extra field/value pairs (wsmq:* settings)
if redis.call('HEXISTS', KEYS[1], 'vt') == 1 then
  return redis.error_reply('queueExists')
end
if ARGV[4] ~= '' and redis.call('HEXISTS', KEYS[2], 'vt') == 0 then
  return redis.error_reply('dlqNotFound')
end
local sec = wsmq_now()
redis.call('HSET', KEYS[1], 'vt', ARGV[1], 'delay', ARGV[2], 'maxsize', ARGV[3],
  'created', wsmq_fmt(sec), 'modified', wsmq_fmt(sec))
for i = 5, #ARGV, 2 do
  redis.call('HSET', KEYS[1], ARGV[i], ARGV[i + 1])
end
return 1
