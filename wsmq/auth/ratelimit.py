"""Rate counters as a "theoretical arrival time" (GCRA): one number per key, pure, no I/O.

A counter holds a backlog of milliseconds that drains in real time. Each counted event adds
``cost`` ms; ``capacity`` ms is the most the backlog may hold. With ``cost = window / limit``
and ``capacity = window``, ``limit`` events pass at once and then one more every
``window / limit``: a sliding limit of ``limit`` per ``window``, exact to the millisecond,
with no list of timestamps. :func:`gcra_step` is the rule; :data:`GCRA_LUA` is the same rule
for Redis (one key per call, so it runs on a cluster too); :class:`LocalCounters` keeps the
numbers in this process.
"""

from __future__ import annotations

from collections import OrderedDict
from typing import Literal, NamedTuple

Mode = Literal["take", "add", "peek"]


class Step(NamedTuple):
    """The outcome of one :func:`gcra_step`.

    Attributes:
        backlog: ms still queued on the key after the step (0 when idle).
        retry: for a refused ``take``, ms until it would pass; else 0.
        tat: the key's new arrival time (epoch ms), what is stored.
    """

    backlog: int
    retry: int
    tat: int


def gcra_step(tat: int | None, now: int, cost: int, capacity: int, mode: Mode) -> Step:
    """One step of a counter whose stored arrival time is ``tat`` (None: unknown key).

    ``take`` adds ``cost`` if the backlog stays within ``capacity``, else refuses (``retry``);
    ``add`` always adds, capping the backlog at ``capacity``; ``peek`` changes nothing.
    """
    start = max(tat or 0, now)
    if mode == "peek":
        return Step(start - now, 0, start)
    new = start + cost
    if new - now > capacity:
        if mode == "take":
            return Step(start - now, new - now - capacity, start)
        new = now + capacity
    return Step(new - now, 0, new)


#: :func:`gcra_step` in Redis: KEYS[1]; ARGV now_ms, cost_ms, capacity_ms, mode.
#: Replies ``{backlog, retry}``; the key expires when its backlog has drained.
GCRA_LUA = """
local now = tonumber(ARGV[1])
local cost = tonumber(ARGV[2])
local capacity = tonumber(ARGV[3])
local mode = ARGV[4]
local start = tonumber(redis.call('GET', KEYS[1]) or '0')
if start < now then start = now end
if mode == 'peek' then return {start - now, 0} end
local new = start + cost
if new - now > capacity then
  if mode == 'take' then return {start - now, new - now - capacity} end
  new = now + capacity
end
redis.call('SET', KEYS[1], string.format('%d', new), 'PX', new - now)
return {new - now, 0}
"""


class LocalCounters:
    """GCRA counters in this process's memory, at most ``max_keys`` of them (LRU evicted)."""

    def __init__(self, max_keys: int = 100_000) -> None:
        if max_keys < 1:
            raise ValueError("max_keys must be >= 1")
        self.max_keys = max_keys
        self._tat: OrderedDict[str, int] = OrderedDict()

    def __len__(self) -> int:
        return len(self._tat)

    def step(self, key: str, now: int, cost: int, capacity: int, mode: Mode) -> Step:
        """:func:`gcra_step` on ``key``'s stored value, stored back."""
        result = gcra_step(self._tat.get(key), now, cost, capacity, mode)
        if result.backlog <= 0:
            self._tat.pop(key, None)  # drained: nothing worth remembering
        elif mode != "peek":
            self._tat[key] = result.tat
            self._tat.move_to_end(key)
            while len(self._tat) > self.max_keys:
                self._tat.popitem(last=False)
        return result
