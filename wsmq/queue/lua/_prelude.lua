-- wsmq prelude, prepended to every script by scripts.py.
-- Scripts call TIME and then write: allowed with effect replication (the default since
-- Redis 7; Redis 5 and 6 need the explicit switch below).
if redis.replicate_commands then pcall(redis.replicate_commands) end

local B36 = '0123456789abcdefghijklmnopqrstuvwxyz'

-- Redis TIME as (seconds, microseconds, epoch ms) like RSMQ's `ts`.
local function wsmq_now()
  local t = redis.call('TIME')
  local sec = tonumber(t[1])
  local usec = tonumber(t[2])
  return sec, usec, sec * 1000 + math.floor(usec / 1000)
end

-- Number(n).toString(36); exact because n < 2^53 for any date before year 2255.
local function wsmq_base36(n)
  local s = ''
  repeat
    local d = n % 36
    s = string.sub(B36, d + 1, d + 1) .. s
    n = math.floor(n / 36)
  until n == 0
  return s
end

-- Realtime notification. `target` is '' (none), 'P' .. channel (PUBLISH, RSMQ's layout) or
-- 'S' .. channel (SPUBLISH: sharded pub/sub in the cluster layout, where the channel carries the
-- queue's hash tag and so lives in the slot of the keys this script works on).
local function wsmq_publish(target, payload)
  if target == '' then return end
  local cmd = 'PUBLISH'
  if string.sub(target, 1, 1) == 'S' then cmd = 'SPUBLISH' end
  redis.call(cmd, string.sub(target, 2), payload)
end

-- Integers as plain digits (Lua's default number formatting is %.14g).
local function wsmq_fmt(n)
  return string.format('%.0f', n)
end

-- Copy a queue's settings into a device inbox's hash (docs/delivery.md, Devices), so the
-- receive script treats the inbox as the queue: same vt, max receive count, dead-letter queue,
-- TTL. Extras the queue does not set are removed. False when the queue does not exist.
local WSMQ_INBOX_FIELDS = {'vt', 'delay', 'maxsize', 'created', 'modified',
  'wsmq:maxrc', 'wsmq:dlq', 'wsmq:ttl'}
-- The settings are read once per script (wsmq_inbox_settings: nil when the queue does not
-- exist) and written into each inbox (wsmq_apply_inbox).
local function wsmq_inbox_settings(qhash)
  local v = redis.call('HMGET', qhash, unpack(WSMQ_INBOX_FIELDS))
  if not v[1] then return nil end
  local set, del = {}, {}
  for i, f in ipairs(WSMQ_INBOX_FIELDS) do
    if v[i] then
      set[#set + 1] = f
      set[#set + 1] = v[i]
    else
      del[#del + 1] = f
    end
  end
  return {set, del}
end
local function wsmq_apply_inbox(ihash, settings)
  redis.call('HSET', ihash, unpack(settings[1]))
  if #settings[2] > 0 then redis.call('HDEL', ihash, unpack(settings[2])) end
end
local function wsmq_sync_inbox(qhash, ihash)
  local settings = wsmq_inbox_settings(qhash)
  if not settings then return false end
  wsmq_apply_inbox(ihash, settings)
  return true
end
