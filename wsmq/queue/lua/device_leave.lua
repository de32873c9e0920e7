-- Remove device ARGV[1] and its inbox at once (an explicit leave), unless it is in use: a
-- lease of another node, or of node ARGV[2] while ARGV[3] is '1' (this node still holds it).
-- KEYS[1] devices zset, KEYS[2] leases zset, KEYS[3] inbox zset, KEYS[4] inbox hash
-- Returns -1 (in use), 0 (not registered: the inbox is removed anyway) or 1 (removed).
local _, _, ms = wsmq_now()
local prefix = ARGV[1] .. '/'
local leases = redis.call('ZRANGE', KEYS[2], 0, -1, 'WITHSCORES')
for i = 1, #leases, 2 do
  local m = leases[i]
  if string.sub(m, 1, #prefix) == prefix then
    local mine = m == prefix .. ARGV[2]
    if tonumber(leases[i + 1]) > ms and (not mine or ARGV[3] == '1') then
      return -1
    end
    redis.call('ZREM', KEYS[2], m)
  end
end
redis.call('DEL', KEYS[3], KEYS[4])
return redis.call('ZREM', KEYS[1], ARGV[1])
