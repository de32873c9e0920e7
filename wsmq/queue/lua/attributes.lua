-- Read (and optionally first update) a queue's attributes (RSMQ get/setQueueAttributes).
-- KEYS[1] attributes hash, KEYS[2] messages zset, KEYS[3] dead-letter hash (when setting one)
-- ARGV field/value pairs to set; an empty value deletes the field (clears a wsmq:* setting).
-- Returns {hmget values, msgs, hiddenmsgs}.
local fields = {'vt', 'delay', 'maxsize', 'totalrecv', 'totalsent', 'created', 'modified',
  'wsmq:maxrc', 'wsmq:dlq', 'wsmq:ttl', 'wsmq:totalexpired', 'wsmq:totalexceeded'}
local sec, _, ms = wsmq_now()
if #ARGV > 0 then
  local q = redis.call('HMGET', KEYS[1], 'vt', 'delay', 'maxsize')
  if not q[1] or not q[2] or not q[3] then
    return redis.error_reply('queueNotFound')
  end
  for i = 1, #ARGV, 2 do
    if ARGV[i] == 'wsmq:dlq' and ARGV[i + 1] ~= '' and redis.call('HEXISTS', KEYS[3], 'vt') == 0 then
      return redis.error_reply('dlqNotFound')
    end
  end
  redis.call('HSET', KEYS[1], 'modified', wsmq_fmt(sec))
  for i = 1, #ARGV, 2 do
    if ARGV[i + 1] == '' then
      redis.call('HDEL', KEYS[1], ARGV[i])
    else
      redis.call('HSET', KEYS[1], ARGV[i], ARGV[i + 1])
    end
  end
end
local a = redis.call('HMGET', KEYS[1], unpack(fields))
if not a[1] then
  return redis.error_reply('queueNotFound')
end
-- Hidden = not receivable now (score after now, ms resolution; RSMQ rounds now down to the
-- second and so counts messages sent in the current second as hidden).
return {a, redis.call('ZCARD', KEYS[2]), redis.call('ZCOUNT', KEYS[2], '(' .. wsmq_fmt(ms), '+inf')}
