"""One heartbeat for every WebSocket of a node, instead of loop timers per socket.

aiohttp's ``heartbeat=`` arms a loop timer per socket for its whole life, and another one for
each ping it waits an answer to (memory every idle socket pays).
:class:`HeartbeatSweeper` visits every socket of the node once per half interval instead, and
each socket keeps a counter of sweeps that found it silent:

- any frame the read loop gets from the peer (a pong, a ping, data) resets the counter;
- the second silent sweep pings the peer (a socket silent for ``interval``, give or take half);
- the third, half an interval after that ping, finds it unanswered: the peer is dead or
  behind a black hole, and the socket is dropped (aborted: a dead peer cannot take a close
  frame, and what is buffered for it would never drain).

A socket whose read loop is busy with a frame (a subscribe waiting for Redis, acks waiting for
room) is not judged while the peer takes what is written to it: its answer may be sitting
unread in the socket, so the counter restarts. But a busy socket whose transport is paused
(the peer has not taken our bytes: a dead peer, a black hole) is judged like an idle one: its
read loop may be waiting, through the ack queue, for a drain that never comes. Detection takes
between 1 and 1.5 ``interval`` after the last frame read, as with aiohttp's own heartbeat (a
ping after ``interval`` of silence, half of it for the pong).

:func:`sweep` is the whole decision and does no I/O; the members do it (a 2-byte ping written
straight to the transport, an abort).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Collection, Iterable
from typing import Protocol

__all__ = ["HeartbeatMember", "HeartbeatSweeper", "sweep"]

log = logging.getLogger("wsmq.gateway")

#: The sweep that pings a silent peer, and the one that drops it when it did not answer.
PING_AT_MISS = 2
LOST_AT_MISS = 3


class HeartbeatMember(Protocol):
    """A socket as the sweeper sees it (:class:`~wsmq.gateway.connection.Connection`)."""

    #: Sweeps that found the peer silent since its last frame (the read loop resets it).
    heartbeat_misses: int

    @property
    def awaiting_frame(self) -> bool:
        """Whether the read loop waits for the next frame (then silence can be judged)."""

    @property
    def send_stalled(self) -> bool:
        """Whether the peer stopped taking our bytes (the transport is paused): then silence
        is judged even while the read loop is busy."""

    def send_ping(self) -> None:
        """Ping the peer (without waiting)."""

    def heartbeat_lost(self) -> None:
        """The peer did not answer the ping: drop the socket (idempotent)."""


def sweep(members: Iterable[HeartbeatMember]) -> None:
    """One visit of every socket: count silence, ping on the second miss, drop on the third."""
    for member in members:
        if not member.awaiting_frame and not member.send_stalled:
            member.heartbeat_misses = 0
            continue
        misses = member.heartbeat_misses + 1
        member.heartbeat_misses = misses
        try:
            if misses == PING_AT_MISS:
                member.send_ping()
            elif misses >= LOST_AT_MISS:
                member.heartbeat_lost()
        except Exception:  # one socket's failure must not skip the others
            log.exception("heartbeat of one socket failed", extra={"event": "heartbeat_fail"})


class HeartbeatSweeper:
    """Runs :func:`sweep` every ``interval / 2`` seconds while the node holds sockets.

    ``members`` returns the node's sockets now. :meth:`start` arms the loop timer (call it when
    a socket is admitted); the sweeper disarms itself when it finds no socket left, so an idle
    node has no timer either. ``interval`` 0 disables it.
    """

    __slots__ = ("_handle", "_members", "interval")

    def __init__(self, interval: float, members: Callable[[], Collection[HeartbeatMember]]):
        self.interval = interval
        self._members = members
        self._handle: asyncio.TimerHandle | asyncio.Handle | None = None

    @property
    def running(self) -> bool:
        return self._handle is not None

    def start(self) -> None:
        """Arm the next sweep unless armed (idempotent)."""
        if self._handle is None and self.interval > 0:
            self._handle = asyncio.get_running_loop().call_later(self.interval / 2, self._tick)

    def close(self) -> None:
        if self._handle is not None:
            self._handle.cancel()
            self._handle = None

    def _tick(self) -> None:
        self._handle = None
        members = self._members()
        if not members:
            return
        sweep(list(members))  # a copy: a dropped socket may leave the node's set
        self.start()
