-- Fan-out of one queue to its devices' inboxes (docs/delivery.md, Devices), one atomic step:
-- 0. a fan-out (ARGV[2] > 0) of a queue with nothing visible returns at once, touching only
--    KEYS[1..4] (the retention is the sweep's job then; the inbox keys are declared anyway),
--    and the shared inbox's keys when it is the only recipient left (removed once drained);
-- 1. check the caller passed the inbox keys of exactly the registered devices;
-- 2. expired leases (a node that died) count as "last seen" at their expiry; a device not in
--    use and last seen more than ARGV[1] ms ago is removed with its inbox (retention);
-- 3. every live inbox gets the queue's settings (unless ARGV[2] is 0: a sweep); a sweep drops
--    instead, from each live inbox with a message TTL (its 'wsmq:ttl', the queue's), up to
--    EXPIRE_BUDGET entries visible since at least the TTL: an entry's score is never below its
--    original send time (the time in its id, which receive counts the TTL from), so these
--    are all expired; counted in the inbox's 'wsmq:totalexpired' as receive does;
-- 4. up to ARGV[2] visible messages move from the queue into every live inbox (visible now,
--    receive count 0 there); the queue keeps delayed and hidden ones until they are visible.
-- KEYS[1] queue zset, KEYS[2] queue hash, KEYS[3] devices zset, KEYS[4] leases zset,
-- KEYS[5 + 2i], KEYS[6 + 2i] inbox zset and hash of device ARGV[3 + i] (i = 0..)
-- ARGV[1] retention ms (0 = never remove, -1 = remove every device not in use: the queue was
-- deleted), ARGV[2] most messages to move (0 = prune only),
-- ARGV[3..] the device ids, sorted
-- The plain subscribers' shared inbox is the pseudo-device '~' (no device id can be '~'): it is
-- copied to like a device while a real device is live; with none left it gets nothing more,
-- and it is removed (registry, leases, inbox) as soon as its inbox is empty, so that its
-- consumers go back to the queue itself once they drained it.
-- Returns {1, device...} when the device list is stale (the caller retries with those), else
-- {0, removed, moved, next, live, group, expired, removed device...}: next = lowest score left
-- in the queue ('' = empty), live = real devices left (not counting '~'), -1 when the queue does
-- not exist (nothing moved), group = 1 while the shared inbox '~' is registered, expired =
-- inbox entries dropped by their message TTL (a sweep only).
local _, _, ms = wsmq_now()
local now = wsmq_fmt(ms)
local budget = tonumber(ARGV[2])
-- Most expired entries one sweep drops from one inbox (the next sweep goes on).
local EXPIRE_BUDGET = 1000

local function next_score()
  local first = redis.call('ZRANGE', KEYS[1], 0, 0, 'WITHSCORES')
  return first[2] or ''
end

-- The shared inbox '~' with no real device left and nothing in it (not even a message in
-- flight): remove it. Its keys are the last two of KEYS (ARGV is sorted, '~' sorts last).
local function drop_group_if_drained(zkey, hkey)
  if redis.call('ZCARD', zkey) > 0 then return 1 end
  redis.call('DEL', zkey, hkey)
  redis.call('ZREM', KEYS[3], '~')
  local leases = redis.call('ZRANGE', KEYS[4], 0, -1)
  for _, m in ipairs(leases) do
    if string.sub(m, 1, 2) == '~/' then redis.call('ZREM', KEYS[4], m) end
  end
  return 0
end

if budget > 0 then
  local first = redis.call('ZRANGE', KEYS[1], 0, 0, 'WITHSCORES')
  if not first[2] or tonumber(first[2]) > ms then  -- nothing visible: nothing to copy
    local n = redis.call('ZCARD', KEYS[3])
    local group = redis.call('ZSCORE', KEYS[3], '~') and 1 or 0
    n = n - group
    -- (the shared inbox alone, not in the caller's list: the full path checks the list)
    if not (n == 0 and group == 1 and ARGV[#ARGV] ~= '~') then
      if n == 0 and group == 1 then
        group = drop_group_if_drained(KEYS[#KEYS - 1], KEYS[#KEYS])
      end
      if (n > 0 or group == 1) and redis.call('HEXISTS', KEYS[2], 'vt') == 0 then n = -1 end
      return {0, 0, 0, first[2] or '', n, group, 0}
    end
  end
end

local registered = redis.call('ZRANGE', KEYS[3], 0, -1)
table.sort(registered)
local same = #registered == #ARGV - 2
if same then
  for i, d in ipairs(registered) do
    if ARGV[i + 2] ~= d then same = false break end
  end
end
if not same then
  local out = {1}
  for _, d in ipairs(registered) do out[#out + 1] = d end
  return out
end
local retention = tonumber(ARGV[1])

local in_use = {}
local leases = redis.call('ZRANGE', KEYS[4], 0, -1, 'WITHSCORES')
for i = 1, #leases, 2 do
  local m, until_ = leases[i], tonumber(leases[i + 1])
  local d = string.match(m, '^(.*)/[^/]*$') or m
  if until_ > ms then
    in_use[d] = true
  else
    redis.call('ZREM', KEYS[4], m)
    redis.call('ZADD', KEYS[3], 'XX', 'GT', wsmq_fmt(until_), d)
  end
end

local live, removed_names, group = {}, {}, nil
for i, d in ipairs(registered) do
  local zkey, hkey = KEYS[3 + 2 * i], KEYS[4 + 2 * i]
  local seen = tonumber(redis.call('ZSCORE', KEYS[3], d))
  if not in_use[d] and (retention < 0 or (retention > 0 and seen + retention <= ms)) then
    redis.call('DEL', zkey, hkey)
    redis.call('ZREM', KEYS[3], d)
    removed_names[#removed_names + 1] = d
  else
    live[#live + 1] = {zkey, hkey}
    if d == '~' then group = live[#live] end
  end
end
local has_group = group and 1 or 0
local nlive = #live - has_group
if group and nlive == 0 then  -- no real device left: the shared inbox only drains
  has_group = drop_group_if_drained(group[1], group[2])
end

local moved = 0
if nlive > 0 and budget > 0 then  -- (a sweep, budget 0, only removes: no writes to the rest)
  local settings = wsmq_inbox_settings(KEYS[2])
  if not settings then nlive = -1 end
  if settings then
    for _, inbox in ipairs(live) do
      wsmq_apply_inbox(inbox[2], settings)
    end
    local ids = redis.call('ZRANGEBYSCORE', KEYS[1], '-inf', now, 'LIMIT', 0, budget)
    for _, id in ipairs(ids) do
      local body = redis.call('HGET', KEYS[2], id)
      if body then
        for _, inbox in ipairs(live) do
          redis.call('ZADD', inbox[1], now, id)
          redis.call('HSET', inbox[2], id, body)
        end
        moved = moved + 1
      end
      redis.call('ZREM', KEYS[1], id)
      redis.call('HDEL', KEYS[2], id, id .. ':rc', id .. ':fr')
    end
    if moved > 0 then
      for _, inbox in ipairs(live) do
        redis.call('HINCRBY', inbox[2], 'totalsent', moved)
      end
      redis.call('HINCRBY', KEYS[2], 'wsmq:totalfannedout', moved)
    end
  end
end
local expired = 0
if budget == 0 then
  for _, inbox in ipairs(live) do
    local ttl_ms = (tonumber(redis.call('HGET', inbox[2], 'wsmq:ttl') or '0') or 0) * 1000
    if ttl_ms > 0 then
      local ids = redis.call('ZRANGEBYSCORE', inbox[1], '-inf', wsmq_fmt(ms - ttl_ms),
        'LIMIT', 0, EXPIRE_BUDGET)
      if #ids > 0 then
        local fields = {}
        for _, id in ipairs(ids) do
          fields[#fields + 1] = id
          fields[#fields + 1] = id .. ':rc'
          fields[#fields + 1] = id .. ':fr'
        end
        redis.call('ZREM', inbox[1], unpack(ids))
        redis.call('HDEL', inbox[2], unpack(fields))
        redis.call('HINCRBY', inbox[2], 'wsmq:totalexpired', #ids)
        expired = expired + #ids
      end
    end
  end
end
local out = {0, #removed_names, moved, next_score(), nlive, has_group, expired}
for _, d in ipairs(removed_names) do out[#out + 1] = d end
return out
