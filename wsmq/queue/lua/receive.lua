-- Receive (or pop) up to N visible messages in one round trip, applying the wsmq extensions:
-- message TTL (expired messages are dropped) and max receive count (the message is moved to the
-- dead-letter queue, or dropped when none is configured, instead of being delivered again).
-- KEYS[1] messages zset, KEYS[2] attributes hash,
-- KEYS[3] dead-letter zset, KEYS[4] dead-letter hash (only when ARGV[4] ~= '')
-- ARGV[1] count, ARGV[2] vt in seconds or '' for the queue's default, ARGV[3] '1' = pop,
-- ARGV[4] dead-letter queue name the caller assumed ('' = none),
-- ARGV[5] dead-letter realtime target ('' or P/S + channel, see wsmq_publish),
-- ARGV[6] most messages to drop/move in this call,
-- ARGV[7] '1' = also report when the queue's next message becomes visible (for consumers)
-- ARGV[8] (optional) index in KEYS of the queue's devices zset: when it is not empty the queue
-- fans out to device inboxes (docs/delivery.md, Devices) and this returns {2}, receiving nothing;
-- ARGV[9] '1': only real devices count, not the plain subscribers' shared inbox '~' alone (a
-- consumer draining it also receives from the queue)
-- ARGV[10] (optional) index in KEYS of the queue's parked-nodes hash, ARGV[11] this node's token:
-- a consumer that got fewer than ARGV[1] (the queue has nothing more visible) parks there for
-- one message with this vt, so the next send hands it over (send.lua) and the node receives
-- again after it (re-parking if the queue is empty still); one that got a full batch is busy
-- and unparks. One message per parking: under load messages come in batches, not one by one
-- (docs/delivery.md, "Hand-off").
-- Returns {1, dlq} when the caller's dead-letter assumption is stale (it retries with the right
-- keys, so no key outside KEYS is ever touched), else {0, id, body, rc, fr, id, body, ...}; with
-- ARGV[7] '1': {0, next, id, body, ...} where next is the lowest score left in the queue (epoch
-- ms, maybe in the past) or '' when the queue is empty or the batch came back full (the caller
-- receives again at once), so a consumer needs no second round trip to set its timer.
local zkey, hkey = KEYS[1], KEYS[2]
if ARGV[8] and ARGV[8] ~= '' then
  local dkey = KEYS[tonumber(ARGV[8])]
  local n = redis.call('ZCARD', dkey)
  if ARGV[9] == '1' and n == 1 and redis.call('ZSCORE', dkey, '~') then n = 0 end
  if n > 0 then
    return {2}
  end
end
local q = redis.call('HMGET', hkey, 'vt', 'delay', 'maxsize', 'wsmq:maxrc', 'wsmq:dlq', 'wsmq:ttl')
if not q[1] or not q[2] or not q[3] then
  return redis.error_reply('queueNotFound')
end
local maxrc = tonumber(q[4] or '0') or 0
local dlq = q[5] or ''
if maxrc > 0 and dlq ~= ARGV[4] then
  return {1, dlq}
end
local dlq_ok = maxrc > 0 and dlq ~= '' and redis.call('HEXISTS', KEYS[4], 'vt') == 1
local ttl_ms = (tonumber(q[6] or '0') or 0) * 1000
local count = tonumber(ARGV[1])
local vt = tonumber(ARGV[2]) or tonumber(q[1]) or 0
local pop = ARGV[3] == '1'
local budget = tonumber(ARGV[6])
local _, _, ms = wsmq_now()
local now = wsmq_fmt(ms)

local function forget(id)
  redis.call('ZREM', zkey, id)
  redis.call('HDEL', hkey, id, id .. ':rc', id .. ':fr')
end

-- fr: the message's first receive time as read with its body (false when never received).
local function dead_letter(id, body, rc, fr)
  forget(id)
  redis.call('ZADD', KEYS[3], now, id)
  redis.call('HSET', KEYS[4], id, body, id .. ':rc', rc)
  if fr then
    redis.call('HSET', KEYS[4], id .. ':fr', fr)
  end
  redis.call('HINCRBY', KEYS[4], 'totalsent', 1)
  if ARGV[5] ~= '' then
    wsmq_publish(ARGV[5], redis.call('ZCARD', KEYS[3]))
  end
end

-- Sent at least ttl_ms ago: the id starts with the send time in base-36 µs (RSMQ's format).
local function expired(id)
  local sent = tonumber(string.sub(id, 1, 10), 36)
  return sent and ms - math.floor(sent / 1000) >= ttl_ms
end

local report_next = ARGV[7] == '1'
local out = {0}
if report_next then
  out[2] = ''
end
local got = 0
local seen = {}
local visible_at = wsmq_fmt(ms + vt * 1000)

-- The new scores and receive counts of one pass, written with one ZADD and one HSET per
-- CHUNK pairs (one redis.call per message each made the receive several times dearer).
local CHUNK = 500
local function write_back(zargs, hargs)
  for i = 1, #zargs, 2 * CHUNK do
    redis.call('ZADD', zkey, unpack(zargs, i, math.min(i + 2 * CHUNK - 1, #zargs)))
  end
  for i = 1, #hargs, 2 * CHUNK do
    redis.call('HSET', hkey, unpack(hargs, i, math.min(i + 2 * CHUNK - 1, #hargs)))
  end
end

while got < count and budget >= 0 do
  -- Messages delivered with vt 0 stay visible (at most `got` of them), so a window of `count`
  -- ids always holds enough unseen ones; `seen` skips the delivered ones.
  local ids = redis.call('ZRANGEBYSCORE', zkey, '-inf', now, 'LIMIT', 0, count)
  -- The unseen ids' body, receive count and first receive time, read with one HMGET per CHUNK
  -- ids (one HMGET per message made the receive dearer): handling one message changes only
  -- its own fields, so reading them all first reads what reading each in turn would.
  local todo, fields, f = {}, {}, {}
  for _, id in ipairs(ids) do
    if not seen[id] then
      todo[#todo + 1] = id
      fields[#fields + 1] = id
      fields[#fields + 1] = id .. ':rc'
      fields[#fields + 1] = id .. ':fr'
    end
  end
  for i = 1, #fields, 3 * CHUNK do
    local part = redis.call('HMGET', hkey, unpack(fields, i, math.min(i + 3 * CHUNK - 1, #fields)))
    for j = 1, #part do
      f[i + j - 1] = part[j]
    end
  end
  local removed = 0
  local received = 0
  local zargs, hargs = {}, {}
  for k, id in ipairs(todo) do
    if got >= count then break end
    local body = f[3 * k - 2]
    local rc = tonumber(f[3 * k - 1] or '0') or 0
    if not body then
      forget(id) -- an id without a body can never be delivered
      removed = removed + 1
    elseif ttl_ms > 0 and expired(id) then
      forget(id)
      redis.call('HINCRBY', hkey, 'wsmq:totalexpired', 1)
      removed = removed + 1
    elseif maxrc > 0 and rc >= maxrc and (dlq == '' or dlq_ok) then
      if dlq_ok then
        dead_letter(id, body, rc, f[3 * k])
      else
        forget(id)
      end
      redis.call('HINCRBY', hkey, 'wsmq:totalexceeded', 1)
      removed = removed + 1
    else
      seen[id] = true
      got = got + 1
      received = received + 1
      rc = rc + 1
      local fr
      if rc == 1 then
        fr = now
      else
        fr = f[3 * k] or (pop and now or '0')
      end
      if pop then
        forget(id)
      else
        zargs[#zargs + 1] = visible_at
        zargs[#zargs + 1] = id
        hargs[#hargs + 1] = fields[3 * k - 1]
        hargs[#hargs + 1] = rc
        if rc == 1 then
          hargs[#hargs + 1] = fields[3 * k]
          hargs[#hargs + 1] = now
        end
      end
      out[#out + 1] = id
      out[#out + 1] = body
      out[#out + 1] = rc
      out[#out + 1] = fr
    end
  end
  write_back(zargs, hargs)
  if received > 0 then
    redis.call('HINCRBY', hkey, 'totalrecv', received)
  end
  budget = budget - removed
  -- Nothing dropped or moved: every unseen visible id in the window was delivered, so either
  -- the batch is full or the queue has no more visible messages.
  if removed == 0 then
    break
  end
end
if ARGV[10] and ARGV[10] ~= '' then
  local pkey = KEYS[tonumber(ARGV[10])]
  if got < count then
    redis.call('HSET', pkey, ARGV[11], '1:' .. vt)
  else
    redis.call('HDEL', pkey, ARGV[11])
  end
end
if report_next and got < count then
  local first = redis.call('ZRANGE', zkey, 0, 0, 'WITHSCORES')
  if first[2] then
    out[2] = first[2]
  end
end
return out
