"""O(1) membership in a user's queue lists (``queues``, ``publish``) for authorization.

A user's lists are tuples (stored order, shared between its sockets). A service account may
be allowed on 10k queues: ``qname in tuple`` is then a scan of 10k strings per subscribe, and
a reconnect storm of 10k sockets does 10k of them. :func:`membership` answers from a frozenset
built once per list object.
"""

from __future__ import annotations

from collections.abc import Collection, Container

__all__ = ["membership"]

#: Below this length a scan is as fast as a set lookup and costs no memory.
SCAN_BELOW = 16
#: Distinct large lists remembered (LRU); each costs about 50 bytes per name (a 10k-queue list
#: ~0.5 MB), so the bound keeps the worst case near 32 MB.
MAX_SETS = 64

# id(list) -> (the list itself, so its id cannot be reused while cached; its set)
_sets: dict[int, tuple[tuple[str, ...], frozenset[str]]] = {}


def membership(names: Collection[str]) -> Container[str]:
    """Something to test ``qname in ...`` against, equal in answers to ``names`` itself.

    Only tuples are indexed: they cannot change behind the cached set (a set already answers in
    O(1); a list, which could, is scanned as given).
    """
    if type(names) is not tuple or len(names) < SCAN_BELOW:
        return names
    key = id(names)
    entry = _sets.pop(key, None)
    if entry is None or entry[0] is not names:
        entry = (names, frozenset(names))
        if len(_sets) >= MAX_SETS:
            del _sets[next(iter(_sets))]  # the least recently used
    _sets[key] = entry  # (re)inserted last: most recently used
    return entry[1]
