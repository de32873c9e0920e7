"""The one queue-name rule and the one message-id rule, shared by the queue layer, the
protocol, the engine, the user store and the CLI.

RSMQ's pattern ``^[A-Za-z0-9_-]{1,160}$``, minus the names that would collide with the key
layout (:mod:`wsmq.queue.keys`): a queue's sorted set is ``{ns}:{qname}``, so a queue named
``QUEUES`` would be the registry ``{ns}:QUEUES`` itself (and its fallback poll would fail with
WRONGTYPE). Every other key and channel wsmq adds (``{ns}:{q}:Q``, ``{ns}:{q}:I:...``,
``{ns}:rt:{q}``, ``{ns}:wsmq:revoke``) has a ``:`` after the first part, which a name cannot hold.
"""

from __future__ import annotations

import re
from typing import Final

__all__ = [
    "DEVICE_PATTERN",
    "DEVICE_RULE",
    "GENERATED_ID_PATTERN",
    "GROUP",
    "ID_PATTERN",
    "QNAME_PATTERN",
    "QNAME_RULE",
    "RESERVED_QNAMES",
    "inbox_name",
    "is_valid_device",
    "is_valid_id",
    "is_valid_qname",
    "is_valid_source",
    "reserved_detail",
    "split_source",
]

QNAME_PATTERN: Final = re.compile(r"[A-Za-z0-9_-]{1,160}")
RESERVED_QNAMES: Final = frozenset({"QUEUES"})
QNAME_RULE: Final = (
    "a queue name is 1-160 characters of A-Z a-z 0-9 _ - and not a reserved name ("
    + ", ".join(sorted(RESERVED_QNAMES))
    + ")"
)

#: RSMQ's message-id rule ``^[A-Za-z0-9:]{32}$``: what an ack or a queue call accepts.
ID_PATTERN: Final = re.compile(r"[A-Za-z0-9:]{32}")
#: The ids wsmq (like RSMQ) generates, a subset of :data:`ID_PATTERN`: 10 base36 characters of
#: Redis time in microseconds, then 22 random ``[A-Za-z0-9]`` (:mod:`wsmq.queue.ids`).
GENERATED_ID_PATTERN: Final = re.compile(r"^[0-9a-z]{10}[A-Za-z0-9]{22}$")


def is_valid_qname(qname: object) -> bool:
    """Whether ``qname`` is a string that follows :data:`QNAME_RULE`."""
    return (
        isinstance(qname, str)
        and QNAME_PATTERN.fullmatch(qname) is not None
        and qname not in RESERVED_QNAMES
    )


def reserved_detail(qname: str) -> str:
    """Why a reserved name is refused, stating the rule."""
    return f"{qname} is reserved: {QNAME_RULE}"


def is_valid_id(msg_id: object) -> bool:
    """Whether ``msg_id`` is a string that follows :data:`ID_PATTERN`."""
    return isinstance(msg_id, str) and ID_PATTERN.fullmatch(msg_id) is not None


#: A device id (``/subscribe/<q> device=<id>``): chosen by the client, stable across its
#: connections. No ``:`` (it becomes part of the inbox's Redis keys) and no ``@`` (the separator
#: of :func:`inbox_name`).
DEVICE_PATTERN: Final = re.compile(r"[A-Za-z0-9_-]{1,64}")
DEVICE_RULE: Final = "a device id is 1-64 characters of A-Z a-z 0-9 _ -"


#: The plain subscribers' shared inbox of a fan-out queue, a pseudo-device no client can name
#: (``~`` is outside :data:`DEVICE_PATTERN`): its inbox ``q@~`` is one more recipient of the
#: fan-out, which the queue's plain subscribers compete on (docs/delivery.md, Devices).
GROUP: Final = "~"


def is_valid_device(device: object) -> bool:
    """Whether ``device`` is a string that follows :data:`DEVICE_RULE`."""
    return isinstance(device, str) and DEVICE_PATTERN.fullmatch(device) is not None


def inbox_name(qname: str, device: str) -> str:
    """The name the engine and the queue layer use for ``device``'s inbox of ``qname``:
    ``"<qname>@<device>"`` (``@`` is in neither rule, so it never names a queue)."""
    return f"{qname}@{device}"


def split_source(name: str) -> tuple[str, str | None]:
    """``(qname, device)`` of an inbox name, ``(qname, None)`` of a queue name (unchecked)."""
    qname, sep, device = name.partition("@")
    return (qname, device) if sep else (name, None)


def is_valid_source(name: object) -> bool:
    """Whether ``name`` is a valid queue name or a valid :func:`inbox_name`."""
    if not isinstance(name, str):
        return False
    qname, device = split_source(name)
    return is_valid_qname(qname) and (device is None or device == GROUP or is_valid_device(device))
