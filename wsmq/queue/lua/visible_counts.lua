-- Number of receivable messages (score <= now) in each given queue, in one round trip.
-- KEYS messages zsets
-- A key that is not a sorted set (written by something else) counts -1 instead of failing the
-- whole call: one broken queue must not hide the others' messages from the poll.
local _, _, ms = wsmq_now()
local now = wsmq_fmt(ms)
local out = {}
for i = 1, #KEYS do
  local n = redis.pcall('ZCOUNT', KEYS[i], '-inf', now)
  if type(n) == 'table' and n.err then
    out[i] = -1
  else
    out[i] = n
  end
end
return out
