-- A subscription of device ARGV[1] starts on the node ARGV[2] (holder): register the device
-- (last seen = now), take or renew the holder's lease until now + ARGV[3] ms, and give the
-- inbox the queue's settings. ARGV[4] (optional): most devices the queue may have (0 = no
-- limit; the shared inbox '~' does not count); a new device beyond it is refused and nothing is
-- written.
-- A new device also registers the plain subscribers' shared inbox '~' (last seen now) when it
-- is missing, in the same step: the messages the first fan-out moves reach the plain
-- subscribers too (ARGV[1] may be '~' itself: a plain consumer joining the shared inbox).
-- KEYS[1] devices zset, KEYS[2] leases zset, KEYS[3] queue hash, KEYS[4] inbox hash,
-- KEYS[5] the shared inbox's hash, KEYS[6] (optional) the queue's parked-nodes hash: dropped, so
-- no send hands a message of a fan-out queue to a plain consumer (docs/delivery.md, "Hand-off")
-- Returns 1 when the device was new, 0 when it was registered already, -1 when refused.
local cap = tonumber(ARGV[4] or '0') or 0
if cap > 0 and ARGV[1] ~= '~' and not redis.call('ZSCORE', KEYS[1], ARGV[1]) then
  local n = redis.call('ZCARD', KEYS[1])
  if redis.call('ZSCORE', KEYS[1], '~') then n = n - 1 end
  if n >= cap then
    return -1
  end
end
if KEYS[6] then redis.call('DEL', KEYS[6]) end
local _, _, ms = wsmq_now()
local new = redis.call('ZADD', KEYS[1], wsmq_fmt(ms), ARGV[1])
redis.call('ZADD', KEYS[2], wsmq_fmt(ms + tonumber(ARGV[3])), ARGV[1] .. '/' .. ARGV[2])
wsmq_sync_inbox(KEYS[3], KEYS[4])
if new == 1 and redis.call('ZADD', KEYS[1], 'NX', wsmq_fmt(ms), '~') == 1 then
  wsmq_sync_inbox(KEYS[3], KEYS[5])
end
return new
