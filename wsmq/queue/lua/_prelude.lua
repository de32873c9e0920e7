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
