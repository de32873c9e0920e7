"""Redis Cluster slot rules for the cluster key layout (pure, no I/O).

A Lua script may only touch keys of one slot.  In the cluster layout every key of a queue
shares the queue's slot (hash tag ``{qname}``), so per-queue scripts are fine; what spans
queues (a dead-letter move, a batched count over many queues) has to respect slots.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable

from redis.crc import key_slot

from .errors import InvalidValue
from .keys import KeyLayout

__all__ = ["group_by_slot", "require_same_slot", "slot"]


def slot(key: str) -> int:
    """The Redis Cluster hash slot of ``key`` (honours ``{hash tags}``)."""
    return int(key_slot(key.encode()))


def group_by_slot(names: Iterable[str], key_of: Callable[[str], str]) -> list[list[str]]:
    """Distinct ``names`` grouped by the slot of ``key_of(name)``, first-seen order kept."""
    groups: dict[int, list[str]] = {}
    for name in dict.fromkeys(names):
        groups.setdefault(slot(key_of(name)), []).append(name)
    return list(groups.values())


def require_same_slot(keys: KeyLayout, qname: str, dlq: str) -> None:
    """Raise ``InvalidValue`` if, in the cluster layout, dead-letter queue ``dlq`` does not
    hash to ``qname``'s slot (moving a message there would be a cross-slot script)."""
    if keys.cluster and dlq and slot(keys.messages(qname)) != slot(keys.messages(dlq)):
        raise InvalidValue(
            "dead_letter_queue",
            0,
            0,
            "dead_letter_queue must hash to the same Redis Cluster slot as the queue "
            "in the cluster layout",
        )
