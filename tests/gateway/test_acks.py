"""``AckPipeline``: one ``DoAck`` per frame, grouped across frames, answered per id, bounded."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Coroutine
from typing import Any

from wsmq.gateway.acks import AckPipeline
from wsmq.gateway.app import HookUser
from wsmq.protocol import wire as p
from wsmq.protocol.actions import Action, DoAck, Reply
from wsmq.protocol.session import Session

ID = [f"{i:032d}" for i in range(20)]


class Target:
    """The connection's side: a real session, an engine that records its calls."""

    def __init__(self) -> None:
        self.session = Session(p.Mode.V1, now=0.0, user=HookUser("u", queues=("a", "b")))
        for q in ("a", "b"):
            self.session.receive(f"/subscribe/{q}", 0.0)
            self.session.subscribe_done(q)
        self.calls: list[tuple[object, list[str]]] = []
        self.replies: list[tuple[str, str, str]] = []
        self.gate = asyncio.Event()
        self.gate.set()
        self.tasks: set[asyncio.Task[None]] = set()

    def subscription(self, qname: str) -> Any:  # the queue name stands for the engine's handle
        return qname if qname in ("a", "b") else None

    async def ack_many(self, handle: Any, ids: list[str]) -> list[bool]:
        self.calls.append((handle, list(ids)))
        await self.gate.wait()
        return [msg_id != ID[19] for msg_id in ids]

    def count_acked(self, n: int) -> None:
        pass

    def count_redis_error(self) -> None:
        pass

    async def execute(self, actions: list[Action]) -> None:
        for action in actions:
            assert isinstance(action, Reply)
            frame = json.loads(action.text)
            self.replies.append((frame["type"], frame["queue"], frame["id"]))

    def spawn(self, coro: Coroutine[Any, Any, None]) -> asyncio.Task[None]:
        task = asyncio.get_running_loop().create_task(coro)
        self.tasks.add(task)
        return task


async def test_frames_are_taken_whole_grouped_per_queue_and_answered_per_id() -> None:
    target = Target()
    acks = AckPipeline(target, 100, target.spawn)
    await acks.put(DoAck("a", (ID[0], ID[1])))
    await acks.put(DoAck("b", (ID[2],)))
    await acks.put(DoAck("a", (ID[3], ID[19])))
    assert acks.pending == 5
    async with asyncio.timeout(5):
        await acks.drained()
    # One engine call per queue for everything read meanwhile, ids in the order read.
    assert target.calls == [("a", [ID[0], ID[1], ID[3], ID[19]]), ("b", [ID[2]])]
    assert target.replies == [
        ("acked", "a", ID[0]),
        ("acked", "a", ID[1]),
        ("acked", "a", ID[3]),
        ("error", "a", ID[19]),  # unknown_message: not in flight
        ("acked", "b", ID[2]),
    ]
    assert acks.pending == 0


async def test_put_waits_while_the_frame_would_pass_the_bound() -> None:
    target = Target()
    target.gate.clear()
    acks = AckPipeline(target, 4, target.spawn)
    await acks.put(DoAck("a", tuple(ID[0:3])))
    second = asyncio.ensure_future(acks.put(DoAck("a", tuple(ID[3:5]))))  # 3 + 2 > 4
    await asyncio.sleep(0)
    await asyncio.sleep(0)
    assert not second.done() and acks.pending == 3
    target.gate.set()
    async with asyncio.timeout(5):
        await second
        # A frame of more ids than the bound goes once nothing is pending.
        await acks.put(DoAck("b", tuple(ID[5:15])))
        assert acks.pending >= 10
        await acks.drained()
    assert [len(ids) for _, ids in target.calls] == [3, 2, 10]
    assert len(target.replies) == 15
