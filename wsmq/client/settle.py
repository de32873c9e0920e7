"""Acks, nacks and extends: coalesced per event-loop turn into bulk frames, replies matched by id.

Every ``/ack``, ``/nack`` and ``/extend`` queued in one loop turn goes out as one frame per
(verb, queue, argument) — ``/nack/q/a,b 5`` — with at most :data:`MAX_ACK_IDS` ids each. The
server answers each id (``acked`` / ``nacked`` / ``extended``, or an ``error`` naming queue and
id), so every queued id keeps an entry until its reply or the end of its connection.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import Literal

import aiohttp

from wsmq.protocol.wire import MAX_ACK_IDS

__all__ = ["Settler", "Verb"]

Verb = Literal["ack", "nack", "extend"]
#: Sends one text frame on the current connection (raises ConnectionError when there is none).
SendFrame = Callable[[str], Awaitable[None]]


class Settler:
    """The settle verbs of one client: batches, the flush task, and the reply waiters."""

    def __init__(self, send: SendFrame) -> None:
        self._send = send
        # (verb, queue, argument) -> ids, in the order the application settled them.
        self._batches: dict[tuple[Verb, str, str], list[str]] = {}
        # (queue, id) -> the verbs sent for it and not yet answered, oldest first; a future
        # only where the caller waits (confirm=True).
        self._waiting: dict[tuple[str, str], list[tuple[Verb, asyncio.Future[bool] | None]]] = {}
        self._flush_task: asyncio.Task[None] | None = None

    def add(
        self, verb: Verb, queue: str, msg_id: str, arg: str, confirm: bool
    ) -> asyncio.Future[bool] | None:
        """Queue ``verb`` of ``msg_id`` for this loop turn's frame; the reply's future if
        ``confirm`` (``True``: done; ``False``: an error or the connection closed first)."""
        key = (verb, queue, arg)
        batch = self._batches.get(key)
        if batch is None:
            self._batches[key] = [msg_id]
        else:
            batch.append(msg_id)
        waiter = asyncio.get_running_loop().create_future() if confirm else None
        entries = self._waiting.get((queue, msg_id))
        if entries is None:
            self._waiting[(queue, msg_id)] = [(verb, waiter)]
        else:
            entries.append((verb, waiter))
        if self._flush_task is None or self._flush_task.done():
            # A new task's first step runs after everything ready in this loop turn: every
            # settle of the turn joins the same frames.
            self._flush_task = asyncio.create_task(self.flush())
        return waiter

    async def flush(self) -> None:
        """Send every queued batch now (also what the per-turn task does)."""
        # A send that waits for the socket to drain lets the application queue more meanwhile:
        # the task is still running then, so no new one starts; this loop sends those too.
        while self._batches:
            batches, self._batches = self._batches, {}
            for (verb, queue, arg), ids in batches.items():
                try:
                    for start in range(0, len(ids), MAX_ACK_IDS):
                        chunk = ",".join(ids[start : start + MAX_ACK_IDS])
                        await self._send(f"/{verb}/{queue}/{chunk}{arg}")
                except (ConnectionError, aiohttp.ClientError):
                    for msg_id in ids:  # not sent: delivered again after a reconnect
                        self.answered(queue, msg_id, None, False)

    async def drain(self, within: float) -> None:
        """Wait (at most ``within`` s) for the flush of what was queued last (on close)."""
        task = self._flush_task
        if task is not None and not task.done():
            async with asyncio.timeout(within):
                await task

    def answered(self, queue: str, msg_id: str, verb: Verb | None, ok: bool) -> None:
        """A reply for ``msg_id``: ``verb``'s success, or (``verb=None``) an error, which
        answers the oldest verb of that id still waiting."""
        entries = self._waiting.get((queue, msg_id))
        if not entries:
            return
        index = 0
        if verb is not None:
            index = next((i for i, (v, _) in enumerate(entries) if v == verb), -1)
            if index < 0:
                return
        _verb, waiter = entries.pop(index)
        if not entries:
            del self._waiting[(queue, msg_id)]
        if waiter is not None and not waiter.done():
            waiter.set_result(ok)

    def connection_lost(self) -> None:
        """Nothing queued or waiting survives its connection: every waiter gets ``False``."""
        self._batches.clear()
        for entries in self._waiting.values():
            for _verb, waiter in entries:
                if waiter is not None and not waiter.done():
                    waiter.set_result(False)
        self._waiting.clear()

    def cancel(self) -> asyncio.Task[None] | None:
        """The flush task, cancelled (for close); the caller awaits it."""
        task = self._flush_task
        if task is not None and not task.done():
            task.cancel()
            return task
        return None
