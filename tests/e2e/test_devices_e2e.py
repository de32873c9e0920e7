"""Devices end to end (docs/delivery.md, Devices): real nodes (in-process and ``wsmq serve``
subprocesses), real Redis on every backend, real WebSocket clients subscribing with
``/subscribe/<q> device=<id>``."""

from __future__ import annotations

import asyncio
import json
import signal
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from tests.e2e.conftest import (
    V1,
    Cred,
    MakeUser,
    StartNode,
    recv,
    recv_type,
    wait_for,
)
from tests.interop.test_rsmq_interop import NodeRsmq
from wsmq.protocol.names import GROUP, inbox_name
from wsmq.queue import Queues


class Device:
    """One WebSocket subscribed as a device: records what it gets, acks on demand."""

    def __init__(
        self,
        ws: aiohttp.ClientWebSocketResponse,
        qname: str,
        device: str | None,
        *,
        v1: bool = True,
    ) -> None:
        self.ws, self.qname, self.device, self.v1 = ws, qname, device, v1
        self.got: list[dict[str, Any]] = []
        self.acked = 0

    @classmethod
    async def open(
        cls,
        http: aiohttp.ClientSession,
        url: str,
        cred: Cred,
        qname: str,
        device: str | None,
        *,
        v1: bool = True,
    ) -> Device:
        """``device=None``: a plain subscription (same reading and acking)."""
        async with asyncio.timeout(10):
            ws = await http.ws_connect(url, headers=cred.headers, protocols=V1 if v1 else ())
        self = cls(ws, qname, device, v1=v1)
        if device is None:
            await ws.send_str(f"/subscribe/{qname}")
            if v1:
                assert await recv(ws) == {"type": "subscribed", "queue": qname}
            return self
        await ws.send_str(f"/subscribe/{qname} device={device}")
        if v1:
            assert await recv(ws) == {"type": "subscribed", "queue": qname, "device": device}
        return self

    async def _next(self, timeout: float) -> dict[str, Any]:
        """The next frame that is not an ``acked`` reply (those are counted)."""
        while True:
            frame = await recv(self.ws, timeout)
            if frame.get("type") != "acked":
                return frame
            assert frame["queue"] == self.qname
            self.acked += 1

    async def take(self, n: int, *, ack: bool = True, timeout: float = 15.0) -> list[str]:
        """Read until ``n`` more messages arrived; ack them (v1) unless told not to."""
        new: list[dict[str, Any]] = []
        async with asyncio.timeout(timeout):
            while len(new) < n:
                frame = await self._next(timeout)
                if self.v1:
                    assert frame["type"] == "message", frame
                new.append(frame)
                self.got.append(frame)
        if ack and self.v1:
            await self.ws.send_str(f"/ack/{self.qname}/{','.join(f['id'] for f in new)}")
        return [f["message"] for f in new]

    async def nothing_more(self, seconds: float = 0.5) -> None:
        """No message within ``seconds`` (a bounded negative check)."""
        with pytest.raises(TimeoutError):
            await self._next(seconds)

    def bodies(self) -> list[str]:
        return [f["message"] for f in self.got]


async def inbox_size(queues: Queues, qname: str, device: str) -> int:
    return (await queues.get_queue_attributes(inbox_name(qname, device))).msgs


def url_of(node: Any) -> str:
    url: str | None = node.url
    assert url is not None
    return url


async def test_three_devices_on_two_nodes_each_get_every_message(
    start_node: StartNode, make_user: MakeUser, http: aiohttp.ClientSession, queues: Queues
) -> None:
    alice = await make_user()
    q = alice.user_id
    await queues.create_queue(q)
    a, b = await start_node(), await start_node()
    laptop = await Device.open(http, url_of(a), alice, q, "laptop")
    phone = await Device.open(http, url_of(b), alice, q, "phone")
    tablet = await Device.open(http, url_of(b), alice, q, "tablet")
    want = [f"m{i}" for i in range(40)]
    for body in want:
        await queues.send_message(q, body)
    for device in (laptop, phone, tablet):
        assert sorted(await device.take(40)) == sorted(want)
    # Everything acked in every inbox, nothing left in the queue.
    assert (await queues.get_queue_attributes(q)).msgs == 0

    async def all_acked() -> bool:
        sizes = [await inbox_size(queues, q, name) for name in ("laptop", "phone", "tablet")]
        return sizes == [0, 0, 0]

    await wait_for(all_acked)


async def _is(coro: Any, value: Any) -> bool:
    return bool(await coro == value)


async def test_offline_device_receives_its_backlog_on_return(
    start_node: StartNode, make_user: MakeUser, http: aiohttp.ClientSession, queues: Queues
) -> None:
    bob = await make_user()
    q = bob.user_id
    await queues.create_queue(q)
    a, b = await start_node(), await start_node()
    laptop = await Device.open(http, url_of(a), bob, q, "laptop")
    phone = await Device.open(http, url_of(b), bob, q, "phone")
    await queues.send_message(q, "both")
    assert await laptop.take(1) == ["both"]
    assert await phone.take(1) == ["both"]
    await phone.ws.close()  # the phone goes offline for a while
    backlog = [f"while-away-{i}" for i in range(10)]
    for body in backlog:
        await queues.send_message(q, body)
    assert await laptop.take(10) == backlog
    await wait_for(lambda: _is(inbox_size(queues, q, "phone"), 10))
    back = await Device.open(http, url_of(a), bob, q, "phone")  # returns on the other node
    assert await back.take(10) == backlog
    await back.nothing_more(0.3)


async def test_same_device_id_on_two_sockets_splits_the_messages(
    start_node: StartNode, make_user: MakeUser, http: aiohttp.ClientSession, queues: Queues
) -> None:
    carol = await make_user()
    q = carol.user_id
    await queues.create_queue(q)
    a, b = await start_node(window=10), await start_node(window=10)
    first = await Device.open(http, url_of(a), carol, q, "desk")
    second = await Device.open(http, url_of(b), carol, q, "desk")
    other = await Device.open(http, url_of(a), carol, q, "phone")
    want = [f"m{i}" for i in range(20)]
    await queues.send_messages(q, want)
    # (window 10: the other device acks each 10 to get the next)
    assert sorted(await other.take(10) + await other.take(10)) == sorted(want)
    # Each holds up to its window of 10 unacked: together they must take all 20, each some.
    got_first = await first.take(10, ack=False)
    got_second = await second.take(10, ack=False)
    assert sorted(got_first + got_second) == sorted(want)


async def test_legacy_device_deletes_from_its_inbox_only(
    start_node: StartNode, make_user: MakeUser, http: aiohttp.ClientSession, queues: Queues
) -> None:
    dave = await make_user()
    q = dave.user_id
    await queues.create_queue(q)
    node = await start_node()
    tv = await Device.open(http, url_of(node), dave, q, "tv", v1=False)
    watch = await Device.open(http, url_of(node), dave, q, "watch")
    await queues.send_messages(q, ["one", "two"])
    assert await tv.take(2) == ["one", "two"]  # legacy frames: {"message": ...}
    assert all(set(f) == {"message"} for f in tv.got)
    await wait_for(lambda: _is(inbox_size(queues, q, "tv"), 0))
    # The other device's copies are untouched until it acks them itself.
    assert await watch.take(2, ack=False) == ["one", "two"]
    assert await inbox_size(queues, q, "watch") == 2


async def test_plain_subscriber_of_a_device_queue_gets_every_message_and_leave(
    start_node: StartNode, make_user: MakeUser, http: aiohttp.ClientSession, queues: Queues
) -> None:
    erin = await make_user()
    q = erin.user_id
    await queues.create_queue(q)
    node = await start_node()
    plain = await Device.open(http, url_of(node), erin, q, None)
    phone = await Device.open(http, url_of(node), erin, q, "phone")
    await queues.send_message(q, "for devices")
    assert await phone.take(1) == ["for devices"]
    # The plain subscribers share one more copy, the inbox q@~ (docs/delivery.md, Devices).
    assert await plain.take(1) == ["for devices"]
    # A device in use cannot be removed from another socket...
    await plain.ws.send_str(f"/leave/{q} device=phone")
    err = await recv_type(plain.ws, "error")  # (after the "acked" of its ack)
    assert (err["type"], err["code"]) == ("error", "device_in_use")
    # ...but its own socket can leave: unsubscribed, inbox gone; the drained shared inbox goes
    # with the next fan-out, and the plain subscription receives from the queue again.
    await phone.ws.send_str(f"/leave/{q} device=phone")
    assert await recv_type(phone.ws, "left") == {
        "type": "left", "queue": q, "device": "phone", "removed": True,
    }  # fmt: skip
    await queues.send_message(q, "for everyone")
    assert await plain.take(1) == ["for everyone"]
    await wait_for(lambda: _is(queues.redis.exists(queues.keys.devices(q)), 0))
    await queues.send_message(q, "plain again")
    assert await plain.take(1) == ["plain again"]
    await phone.nothing_more(0.2)


async def test_plain_subscribers_on_two_nodes_compete_while_devices_get_all(
    start_node: StartNode, make_user: MakeUser, http: aiohttp.ClientSession, queues: Queues
) -> None:
    gus = await make_user()
    q = gus.user_id
    await queues.create_queue(q)
    a, b = await start_node(window=5), await start_node(window=5)
    p1 = await Device.open(http, url_of(a), gus, q, None)
    p2 = await Device.open(http, url_of(b), gus, q, None)
    await queues.send_messages(q, ["early0", "early1"])  # a plain queue still: one each or both
    early = await _take_split(p1, p2, 2)
    laptop = await Device.open(http, url_of(a), gus, q, "laptop")
    phone = await Device.open(http, url_of(b), gus, q, "phone")
    want = [f"m{i}" for i in range(10)]
    await queues.send_messages(q, want)
    for device in (laptop, phone):
        assert sorted(await device.take(5) + await device.take(5)) == sorted(want)
    assert sorted(await _take_split(p1, p2, 10)) == sorted(want)  # split, none twice
    assert sorted(early) == ["early0", "early1"]
    for sub in (p1, p2):
        await sub.nothing_more(0.2)

    async def drained() -> bool:
        return await queues.redis.zcard(queues.keys.messages(inbox_name(q, GROUP))) == 0

    await wait_for(drained)


async def _take_split(p1: Device, p2: Device, n: int) -> list[str]:
    """Read from both subscriptions (acking) until ``n`` messages arrived between them."""
    got: list[str] = []
    async with asyncio.timeout(15):
        while len(got) < n:
            for sub in (p1, p2):
                try:
                    got += await sub.take(1, timeout=0.2)
                except TimeoutError:
                    pass
    return got


async def test_idle_inbox_is_removed_after_the_retention_one_in_use_never(
    start_node: StartNode, make_user: MakeUser, http: aiohttp.ClientSession, queues: Queues
) -> None:
    frank = await make_user()
    q = frank.user_id
    await queues.create_queue(q)
    node = await start_node(device_retention=0.5)
    idle = await Device.open(http, url_of(node), frank, q, "idle")
    busy = await Device.open(http, url_of(node), frank, q, "busy")
    await queues.send_message(q, "m")
    assert await idle.take(1, ack=False) == ["m"]
    assert await busy.take(1) == ["m"]
    await idle.ws.close()

    async def idle_gone() -> bool:
        return not await queues.redis.exists(queues.keys.attributes(inbox_name(q, "idle")))

    await wait_for(idle_gone, timeout=10)

    # The node counts the removal when the script's reply comes back, which may be a moment
    # after the key is gone in Redis.
    async def counted() -> bool:
        metrics = node.state.metrics.render().decode()
        return 'wsmq_device_inboxes_removed_total{reason="retention"} 1.0' in metrics

    await wait_for(counted, timeout=10)
    # "busy" has been connected for longer than the retention: still there, still served.
    assert await queues.redis.zrange(queues.keys.devices(q), 0, -1) == ["busy"]
    await queues.send_message(q, "n")
    assert await busy.take(1) == ["n"]


async def test_sigkilled_node_device_gets_its_unacked_again_others_unaffected(
    spawn_node: Callable[..., Any],
    start_node: StartNode,
    make_user: MakeUser,
    http: aiohttp.ClientSession,
    queues: Queues,
    redis_url: str,
) -> None:
    gina = await make_user()
    q = gina.user_id
    await queues.create_queue(q, vt=1)
    doomed = await spawn_node(redis_url)
    survivor = await start_node()
    killed = await Device.open(http, doomed.url, gina, q, "phone")
    laptop = await Device.open(http, url_of(survivor), gina, q, "laptop")
    tablet = await Device.open(http, url_of(survivor), gina, q, "tablet")
    first = [f"a{i}" for i in range(10)]
    await queues.send_messages(q, first)
    assert await killed.take(10, ack=False) == first  # held, never acked
    doomed.proc.send_signal(signal.SIGKILL)
    rest = [f"b{i}" for i in range(10)]
    await queues.send_messages(q, rest)  # mid-stream: the phone's node is dead
    assert sorted(await laptop.take(20)) == sorted(first + rest)
    assert sorted(await tablet.take(20)) == sorted(first + rest)
    # The phone comes back on the survivor: its unacked copies again (after their vt), then
    # what arrived while it was gone; the other devices get nothing twice.
    back = await Device.open(http, url_of(survivor), gina, q, "phone")
    await back.take(20)
    assert sorted(back.bodies()) == sorted(first + rest)
    assert {f["rc"] for f in back.got if f["message"] in first} == {2}
    await laptop.nothing_more(0.3)
    await tablet.nothing_more(0.01)


@pytest.mark.interop
@pytest.mark.backends("single")  # the npm rsmq client speaks RSMQ's layout on a single server
@pytest.mark.parametrize("realtime", [True, False])
async def test_npm_rsmq_publisher_fans_out_to_every_device(
    node_modules: Path,
    redis_url: str,
    start_node: StartNode,
    make_user: MakeUser,
    http: aiohttp.ClientSession,
    queues: Queues,
    realtime: bool,
) -> None:
    hana = await make_user()
    q = hana.user_id
    await queues.create_queue(q)
    a, b = await start_node(), await start_node()
    devices = [
        await Device.open(http, url_of(a), hana, q, "laptop"),
        await Device.open(http, url_of(b), hana, q, "phone"),
        await Device.open(http, url_of(b), hana, q, "tv", v1=False),
    ]
    npm = await NodeRsmq.start(node_modules, redis_url)
    try:
        bodies = ["from node", "héllo 😀", json.dumps({"k": [1, 2]})]
        for body in bodies:
            await npm.call("sendMessage", qname=q, message=body, realtime=realtime)
    finally:
        await npm.close()
    for device in devices:
        assert await device.take(3) == bodies


# A device app in a process of its own: subscribes as a device, prints each message id, never
# acks; the test SIGKILLs it mid-stream.
_DEVICE_PROC = """
import asyncio, json, sys
import aiohttp

async def main() -> None:
    url, qname, device, headers = sys.argv[1], sys.argv[2], sys.argv[3], json.loads(sys.argv[4])
    async with aiohttp.ClientSession() as http:
        ws = await http.ws_connect(url, headers=headers, protocols=("wsmq.v1",))
        await ws.send_str(f"/subscribe/{qname} device={device}")
        async for msg in ws:
            frame = json.loads(msg.data)
            print(frame.get("type"), frame.get("message"), flush=True)

asyncio.run(main())
"""


async def test_sigkilled_device_process_gets_its_unacked_again_at_once(
    start_node: StartNode, make_user: MakeUser, http: aiohttp.ClientSession, queues: Queues
) -> None:
    ivan = await make_user()
    q = ivan.user_id
    await queues.create_queue(q, vt=3600)  # released at once by the node, not after the vt
    node = await start_node()
    other = await Device.open(http, url_of(node), ivan, q, "laptop")
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-c", _DEVICE_PROC, url_of(node), q, "phone", json.dumps(ivan.headers),
        stdout=asyncio.subprocess.PIPE,
    )  # fmt: skip
    try:
        assert proc.stdout is not None
        async with asyncio.timeout(15):
            assert (await proc.stdout.readline()).split()[0] == b"subscribed"
        first = [f"a{i}" for i in range(5)]
        await queues.send_messages(q, first)
        async with asyncio.timeout(15):
            for _ in first:
                assert (await proc.stdout.readline()).split()[0] == b"message"
        proc.send_signal(signal.SIGKILL)  # mid-stream: 5 held, unacked
        await proc.wait()
        rest = [f"b{i}" for i in range(5)]
        await queues.send_messages(q, rest)
        assert await other.take(10) == first + rest  # the laptop is not affected
        back = await Device.open(http, url_of(node), ivan, q, "phone")
        await back.take(10)
        assert sorted(back.bodies()) == sorted(first + rest)
        assert {f["rc"] for f in back.got if f["message"] in first} == {2}
        await other.nothing_more(0.3)
    finally:
        if proc.returncode is None:
            proc.kill()
            await proc.wait()


async def test_a_queue_takes_at_most_max_devices_per_queue(
    start_node: StartNode, make_user: MakeUser, http: aiohttp.ClientSession, queues: Queues
) -> None:
    gina = await make_user()
    q = gina.user_id
    await queues.create_queue(q)
    node = await start_node(max_devices_per_queue=2)
    first = await Device.open(http, url_of(node), gina, q, "d1")
    await Device.open(http, url_of(node), gina, q, "d2")
    async with asyncio.timeout(10):
        ws = await http.ws_connect(url_of(node), headers=gina.headers, protocols=V1)
    await ws.send_str(f"/subscribe/{q} device=d3")
    err = await recv(ws)
    assert (err["type"], err["code"], err["queue"]) == ("error", "too_many_devices", q)
    # ("~" is the plain subscribers' shared inbox: not a device, not counted.)
    assert sorted(await queues.redis.zrange(queues.keys.devices(q), 0, -1)) == ["d1", "d2", "~"]
    # A publish is still copied to each device, and a device that leaves frees its place.
    await queues.send_message(q, "m")
    assert await first.take(1) == ["m"]
    await first.ws.send_str(f"/leave/{q} device=d1")
    assert (await recv_type(first.ws, "left"))["removed"] is True
    await ws.send_str(f"/subscribe/{q} device=d3")
    assert await recv(ws) == {"type": "subscribed", "queue": q, "device": "d3"}
