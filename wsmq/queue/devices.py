"""Device inboxes of a queue: per-device durable fan-out (docs/delivery.md, Devices).

A queue with registered devices *fans out*: :func:`fan_out` (one Lua script in the queue's slot)
moves its visible messages into every device's inbox, an RSMQ-shaped sorted set and hash under
the queue's hash tag (``{ns}:{q}:dev:{d}``, ``{ns}:{q}:dev:{d}:Q``). Each inbox is then received,
acked, released and dead-lettered exactly like a queue, under its name ``q@d``
(:func:`wsmq.protocol.names.inbox_name`), which every consuming call of
:class:`~wsmq.queue.Queues` accepts.

The registry ``{ns}:{q}:devices`` (device -> last seen, epoch ms) and the leases
``{ns}:{q}:devices:use`` (``device/holder`` -> lease expiry) decide which inboxes exist: a
device in use (an unexpired lease) is never removed; one unused for longer than the retention
is removed, inbox and all, by the next fan-out or sweep of its queue.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

from wsmq.errors import WsmqError
from wsmq.protocol.names import GROUP, inbox_name

from . import validation as v
from .models import text
from .scripts import run_script

if TYPE_CHECKING:
    from .queues import Queues

__all__ = [
    "DeviceInUse",
    "DevicesChanging",
    "FanOut",
    "QueueFansOut",
    "TooManyDevices",
    "fan_out",
    "leave_device",
    "register_device",
    "release_device",
    "touch_devices",
]

#: Most messages one fan-out call moves (each is written to every inbox).
FAN_OUT_BUDGET = 500
#: ``retention_ms`` of a :func:`fan_out` that removes every device not in use, whenever it was
#: last seen (the queue was deleted).
DROP_IDLE = -1
#: Calls of the script one :func:`fan_out` makes while the registry keeps changing.
FAN_OUT_ATTEMPTS = 5


class QueueFansOut(WsmqError, code="queue_fans_out"):
    """A consumer's receive found devices registered on the queue: run :func:`fan_out`
    instead (the queue's messages go to the device inboxes)."""


class DeviceInUse(WsmqError, RuntimeError, code="device_in_use"):
    """An explicit leave of a device that a connection still uses."""


class TooManyDevices(WsmqError, code="too_many_devices"):
    """A new device would exceed the queue's device cap (setting ``max_devices_per_queue``):
    nothing was registered. Registered devices free their place by ``/leave`` or retention."""


class DevicesChanging(WsmqError, code="devices_changing"):
    """The registry of a queue changed on every attempt of one :func:`fan_out` call (devices
    subscribing in a burst): nothing was copied; try again a little later."""


@dataclass(frozen=True, slots=True)
class FanOut:
    """What one :func:`fan_out` call did."""

    #: Devices removed (retention), with their inboxes (not the shared inbox: see ``group``).
    removed: tuple[str, ...]
    #: Messages moved from the queue into every live inbox.
    moved: int
    #: Lowest score left in the queue (epoch ms, maybe in the past); ``None``: empty.
    next_visible: float | None
    #: Devices left (not counting the shared inbox); ``-1`` when the queue does not exist.
    live: int
    #: The plain subscribers' shared inbox (:data:`~wsmq.protocol.names.GROUP`) is registered:
    #: its consumers receive from it, not from the queue.
    group: bool = False
    #: Inbox entries dropped by the queue's message TTL (a sweep, ``budget=0``, only).
    expired: int = 0


def _registry_keys(queues: Queues, qname: str) -> list[str]:
    return [queues.keys.devices(qname), queues.keys.device_leases(qname)]


async def register_device(
    queues: Queues,
    qname: str,
    device: str,
    holder: str,
    lease_ms: int,
    *,
    max_devices: int = 0,
) -> bool:
    """Register ``device`` (last seen now) and take ``holder``'s lease; ``True`` if new.

    ``max_devices`` (0: no limit) caps the devices of the queue: a new device beyond it raises
    :class:`TooManyDevices` and registers nothing (each device stores its own copy of every
    message, so an unbounded registry would let one client multiply every publish).
    ``device`` may be :data:`~wsmq.protocol.names.GROUP` (a plain consumer joins the shared
    inbox; never refused by the cap); a new device also registers the shared inbox if it is
    missing. Also adds the queue to the sweep's set (a separate slot, so not in the script)."""
    qname = v.validate_qname(qname)
    device = device if device == GROUP else v.validate_device(device)
    keys = queues.keys
    inbox = inbox_name(qname, device)
    new = await run_script(
        queues.redis,
        "device_register",
        [
            *_registry_keys(queues, qname),
            keys.attributes(qname),
            keys.attributes(inbox),
            keys.attributes(inbox_name(qname, GROUP)),
            keys.parked(qname),
        ],
        [device, holder, lease_ms, max_devices],
    )
    if int(new) < 0:
        raise TooManyDevices(
            f"queue {qname} has {max_devices} devices already (max_devices_per_queue): "
            f"device {device} was not registered"
        )
    await queues.redis.sadd(keys.device_queues(), qname)
    return bool(int(new))


async def touch_devices(
    queues: Queues, qname: str, devices: list[str], holder: str, lease_ms: int
) -> None:
    """Renew ``holder``'s leases of ``devices`` (all of one queue)."""
    if devices:
        await run_script(
            queues.redis,
            "device_touch",
            _registry_keys(queues, qname),
            [holder, lease_ms, *devices],
        )
        await queues.redis.sadd(queues.keys.device_queues(), qname)


async def release_device(queues: Queues, qname: str, device: str, holder: str) -> None:
    """``holder`` no longer uses ``device``: drop its lease, last seen = now."""
    await run_script(
        queues.redis, "device_release", _registry_keys(queues, qname), [device, holder]
    )


async def leave_device(
    queues: Queues, qname: str, device: str, holder: str = "", *, holding: bool = False
) -> bool:
    """Remove ``device`` and its inbox now; ``False`` if it was not registered.

    Raises :class:`DeviceInUse` while a lease of another holder is current (or ``holder``'s own
    when ``holding``): a device in use is never removed."""
    qname, device = v.validate_qname(qname), v.validate_device(device)
    inbox = inbox_name(qname, device)
    keys = [
        *_registry_keys(queues, qname),
        queues.keys.messages(inbox),
        queues.keys.attributes(inbox),
    ]
    reply = int(
        await run_script(
            queues.redis, "device_leave", keys, [device, holder, "1" if holding else "0"]
        )
    )
    if reply < 0:
        raise DeviceInUse(f"device {device} of queue {qname} is in use")
    return reply == 1


async def fan_out(
    queues: Queues, qname: str, retention_ms: int, *, budget: int = FAN_OUT_BUDGET
) -> FanOut:
    """Run the fan-out script of ``qname`` (see the module doc); ``budget=0`` only prunes;
    ``retention_ms`` :data:`DROP_IDLE` removes every device not in use.

    The script checks the inbox keys it was given against the registry and answers with the
    registered devices when they differ: up to :data:`FAN_OUT_ATTEMPTS` calls, then
    :class:`DevicesChanging`."""
    qname = v.validate_qname(qname)
    keys = queues.keys
    devices = queues.device_hint.get(qname, [])
    for _ in range(FAN_OUT_ATTEMPTS):
        inbox_keys: list[str] = []
        for device in devices:
            inbox = inbox_name(qname, device)
            inbox_keys += [keys.messages(inbox), keys.attributes(inbox)]
        reply = await run_script(
            queues.redis,
            "fanout",
            [
                keys.messages(qname),
                keys.attributes(qname),
                *_registry_keys(queues, qname),
                *inbox_keys,
            ],
            [retention_ms, budget, *devices],
        )
        if int(reply[0]) == 1:  # the registry changed: retry with its devices
            devices = sorted(text(d) for d in reply[1:])
            queues.device_hint[qname] = devices
            continue
        gone = {text(d) for d in reply[7:]}
        live, group = int(reply[4]), int(reply[5]) == 1
        if not group:
            gone.add(GROUP)
        if gone.intersection(devices):
            queues.device_hint[qname] = [d for d in devices if d not in gone]
        # (the shared inbox is no device: its removal is not reported, ``group`` says it)
        removed = tuple(d for d in devices if d in gone and d != GROUP)
        nxt = text(reply[3])
        return FanOut(
            removed, int(reply[2]), float(nxt) if nxt else None, live, group, int(reply[6])
        )
    raise DevicesChanging(f"the devices of queue {qname} kept changing during the fan-out")


async def device_queue_names(queues: Queues) -> list[str]:
    """The queues that have (or had) devices: what the retention sweep visits."""
    return sorted(text(q) for q in await queues.redis.smembers(queues.keys.device_queues()))


async def forget_device_queue(queues: Queues, qname: str) -> None:
    """Take ``qname`` out of the sweep's set (its registry came back empty; a new device
    puts it back).

    A device may have registered, and put the queue back, between the sweep's fan-out and this
    removal (the set is in another slot: no script spans both): the registry is read again
    after the removal and the queue put back if it has devices, else their inboxes would be
    left to no sweep."""
    key = queues.keys.device_queues()
    await queues.redis.srem(key, qname)
    if await queues.redis.zcard(queues.keys.devices(qname)) > 0:
        await queues.redis.sadd(key, qname)
