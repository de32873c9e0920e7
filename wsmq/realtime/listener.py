"""Realtime notifications: one listener for many queues, reconnecting on loss.

With RSMQ's realtime option (and in wsmq always, see ``Queues(realtime=True)``) every send
publishes the queue size on ``{ns}:rt:{qname}``.  :class:`RealtimeListener` turns those into
"queue X may have messages" events.  Pub/sub is fire-and-forget: a notification sent while the
connection is down is lost, so after every (re)connect the listener reports every subscribed
queue once and consumers re-check them.

The listener owns the queue set, the callback, the reconnect loop and its backoff; how channels
reach Redis is its transport's job (:mod:`wsmq.realtime.pubsub` for one server or Sentinel,
:mod:`wsmq.realtime.sharded` for a Cluster), chosen from the URL or client.
"""

from __future__ import annotations

import asyncio
import contextlib
import inspect
import logging
from collections.abc import Awaitable, Callable

from redis.asyncio import Redis
from redis.asyncio.client import PubSub
from redis.asyncio.cluster import RedisCluster
from redis.exceptions import ConnectionError as RedisConnectionError

from wsmq.backoff import Backoff
from wsmq.connections import parse_redis_url
from wsmq.logs import OutageLog
from wsmq.queue.keys import KeyLayout
from wsmq.queue.validation import validate_qname
from wsmq.realtime.pubsub import PubSubTransport, listener_client
from wsmq.realtime.pubsub_reader import PubSubReader
from wsmq.realtime.sharded import ShardedTransport, cluster_client
from wsmq.realtime.transport import LOST, ReadLoop, TopologyChanged, Transport, log

__all__ = ["Callback", "HandOffCallback", "RealtimeListener"]

Callback = Callable[[str], Awaitable[None] | None]
#: Called with each payload published on this node's hand-off channel.
HandOffCallback = Callable[[str], None]


class RealtimeListener:
    """Listen for new-message notifications of many queues.

    Use either ``listener.set_callback(fn)`` (``fn(qname)``, sync or async; keep it short, it
    runs on the reader task) or ``async for qname in listener``.  Iteration coalesces: a queue
    notified many times before it is consumed is yielded once.

    The listener has its own connections, with no socket read timeout (an idle subscription
    must not time out) and no automatic retries; it reconnects itself with exponential backoff
    (``backoff_min``..``backoff_max`` seconds) and detects a silent dead peer with a PING every
    ``ping_interval`` seconds.

    ``redis`` is any URL :func:`wsmq.connections.redis_from_url` accepts or a client.  A Redis
    Cluster URL or client listens with sharded pub/sub (``SSUBSCRIBE``, one connection per
    master; a client passed in only serves the slot map and is not closed); anything else with
    one pub/sub connection.  ``layout="cluster"`` on a single server listens with
    ``SSUBSCRIBE`` to the cluster layout's channels.
    """

    def __init__(
        self,
        redis: str | Redis | RedisCluster,
        ns: str = "rsmq",
        *,
        layout: str | None = None,
        callback: Callback | None = None,
        backoff_min: float = 0.1,
        backoff_max: float = 5.0,
        ping_interval: float = 10.0,
        connect_timeout: float = 3.0,
        confirm_timeout: float = 5.0,
    ) -> None:
        on_cluster = _is_cluster(redis)
        if on_cluster and layout not in (None, "cluster"):
            raise ValueError("a Redis Cluster only supports the cluster key layout")
        if layout not in (None, "rsmq", "cluster"):
            raise ValueError(f"layout must be 'rsmq' or 'cluster', not {layout!r}")
        self.keys = KeyLayout(ns, cluster=on_cluster or layout == "cluster")
        self._callback = callback
        self.backoff_min = backoff_min
        self.backoff_max = backoff_max
        self.ping_interval = ping_interval
        self.confirm_timeout = confirm_timeout
        self._queues: set[str] = set()
        self._task: asyncio.Task[None] | None = None
        self._confirms: dict[str, list[asyncio.Future[bool]]] = {}
        self._report_on_ack: set[str] = set()
        self._pending: dict[str, None] = {}  # ordered set of notified, not yet iterated queues
        # This node's hand-off channel and what takes its payloads (listen_handoffs).
        self._handoff_channel: str | None = None
        self._on_handoff: HandOffCallback | None = None
        self._handoff_listening = False  # subscribed on (re)connect
        self._wakeup = asyncio.Event()
        self._closed = False
        self.connected = asyncio.Event()
        #: Number of successful connections so far (1 + reconnects).
        self.connections = 0
        self._transport = _transport_for(
            redis, self._read_until_lost, layout=layout, connect_timeout=connect_timeout
        )

    # -- public API ----------------------------------------------------------------------------

    def set_callback(self, fn: Callback | None) -> None:
        """Call ``fn(qname)`` on every notification (instead of queueing it for iteration)."""
        self._callback = fn

    def listen_handoffs(self, token: str, fn: HandOffCallback) -> None:
        """Also listen on node ``token``'s hand-off channel (docs/delivery.md, "Hand-off"):
        ``fn(payload)`` for every message a send hands to this node. Call before
        :meth:`start`; only on a single server or Sentinel (plain pub/sub)."""
        if isinstance(self._transport, ShardedTransport) or self.keys.cluster:
            raise ValueError("hand-offs need RSMQ's key layout on one server or Sentinel")
        self._handoff_channel = self.keys.handoff_channel(token)
        self._on_handoff = fn
        self._handoff_listening = True

    async def stop_handoffs(self) -> None:
        """Stop listening on the hand-off channel (a node shutting down): sends no longer
        choose this node (``PUBLISH`` counts no listener). Hand-offs Redis published before
        the ``UNSUBSCRIBE`` still reach the callback."""
        channel = self._handoff_channel
        if channel is not None and self._handoff_listening:
            self._handoff_listening = False
            await self._transport.unsubscribe(channel)

    @property
    def queues(self) -> frozenset[str]:
        """The subscribed queue names."""
        return frozenset(self._queues)

    @property
    def transport(self) -> Transport:
        """How the channels reach Redis: a ``PubSubTransport`` or a ``ShardedTransport``."""
        return self._transport

    def channel(self, qname: str) -> str:
        """The notification channel of ``qname``."""
        return self.keys.realtime(qname)

    async def start(self) -> None:
        """Start the reader task (``subscribe`` does this on first use)."""
        if self._closed:
            raise RuntimeError("RealtimeListener is closed")
        if self._task is None:
            self._task = asyncio.create_task(self._run(), name="wsmq-realtime-listener")

    async def subscribe(self, qname: str) -> bool:
        """Listen to ``qname``.

        Returns ``True`` once Redis confirmed the subscription: every later send is notified,
        and the caller should check the queue once for messages sent before.  Returns ``False``
        if Redis is unreachable right now: the queue is remembered, subscribed when the
        connection comes back and then reported once (as after every reconnect).
        """
        qname = validate_qname(qname)
        self._queues.add(qname)
        await self.start()
        channel = self.channel(qname)
        fut: asyncio.Future[bool] = asyncio.get_running_loop().create_future()
        self._confirms.setdefault(channel, []).append(fut)
        try:
            # Not connected yet: the reader subscribes every queue once it is and resolves us.
            await self._transport.subscribe(channel)
            try:
                async with asyncio.timeout(self.confirm_timeout):
                    return await fut
            except TimeoutError:
                return False
        finally:
            waiting = self._confirms.get(channel, [])
            if fut in waiting:
                waiting.remove(fut)
            if not waiting:
                self._confirms.pop(channel, None)

    async def unsubscribe(self, qname: str) -> None:
        """Stop listening to ``qname`` (no-op if not subscribed)."""
        if qname not in self._queues:
            return
        self._queues.discard(qname)
        self._pending.pop(qname, None)
        await self._transport.unsubscribe(self.channel(qname))

    async def aclose(self) -> None:
        """Stop the reader, close every connection; iteration ends."""
        self._closed = True
        self._wakeup.set()
        task, self._task = self._task, None
        if task is not None:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
        await self._transport.aclose()

    close = aclose

    async def __aenter__(self) -> RealtimeListener:
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()

    def __aiter__(self) -> RealtimeListener:
        return self

    async def __anext__(self) -> str:
        while not self._pending:
            if self._closed:
                raise StopAsyncIteration
            self._wakeup.clear()
            await self._wakeup.wait()
        qname = next(iter(self._pending))
        del self._pending[qname]
        return qname

    # -- reconnect loop ------------------------------------------------------------------------

    async def _run(self) -> None:
        transport = self._transport
        backoff = Backoff(base=self.backoff_min, cap=self.backoff_max)
        outage = OutageLog(log, "realtime listener")
        while not self._closed:
            try:
                await transport.open()
                channels = [self.channel(q) for q in self._queues]
                if self._handoff_channel is not None and self._handoff_listening:
                    channels.append(self._handoff_channel)
                # Every queue is reported once its subscription is confirmed: whatever was
                # published while we were away (or before we first listened) is not lost.
                self._report_on_ack = set(channels)
                await transport.subscribe_all(channels)
                self.connections += 1
                self.connected.set()
                outage.recovered()
                backoff.reset()
                await transport.run()
            except LOST as exc:
                outage.failed(f"Redis unreachable or connection lost ({exc})")
            except transport.expected_errors as exc:
                # e.g. a sharded subscription whose slot moved: the next attempt follows it.
                outage.failed(f"subscriptions moved ({exc})")
            except Exception as exc:
                # Never let the reader die: a dead reader would silently stop all notifications.
                outage.failed(f"unexpected error ({exc!r})", level=logging.ERROR, exc_info=True)
            finally:
                self.connected.clear()
                self._fail_confirms()
                await transport.disconnect()
            if self._closed:
                return
            await backoff.sleep()

    # -- reading (called by the transport for each of its connections) -------------------------

    async def _read_until_lost(
        self, pubsub: PubSub, write_lock: asyncio.Lock, peer: str, owned: set[str] | None
    ) -> None:
        """Read ``pubsub`` forever, PINGing when idle so a silently dead peer is noticed.

        Raises a redis-py ``ConnectionError`` when no PONG comes within ``ping_interval``, and
        :class:`TopologyChanged` when Redis unsubscribes one of ``owned`` on its own.
        """
        loop = asyncio.get_running_loop()
        last_ping = loop.time()
        ping_sent: float | None = None
        reader = PubSubReader(pubsub)
        while True:
            replies = await reader.read(1.0)
            if not replies:
                now = loop.time()
                if ping_sent is not None and now - ping_sent > self.ping_interval:
                    raise RedisConnectionError(f"no PONG from {peer}")
                if ping_sent is None and now - last_ping >= self.ping_interval:
                    async with write_lock:
                        await pubsub.ping()
                    ping_sent = last_ping = now
                continue
            # Any reply proves the link is alive. Not only "pong": with decode_responses=True
            # redis-py splits a subscribed-mode PONG into {'type': 'P', 'channel': 'O'}.
            ping_sent = None
            notified: set[str] = set()  # one wake-up per queue for what one read brought
            handoffs = self._handoff_channel
            for kind, channel, data in replies:
                if channel is None:
                    continue
                if kind in ("message", "smessage"):
                    if channel == handoffs:
                        self._handoff(data)
                    elif channel not in notified:
                        notified.add(channel)
                        await self._notify(channel)
                elif kind in ("subscribe", "ssubscribe"):
                    # A subscribe() call that gets this confirmation tells its caller to check
                    # the queue; every other (re)subscribed queue is reported here instead.
                    confirmed_to_caller = self._confirm(channel)
                    if channel in self._report_on_ack:
                        self._report_on_ack.discard(channel)
                        if not confirmed_to_caller:
                            await self._notify(channel)
                elif kind == "sunsubscribe" and owned is not None and channel in owned:
                    # Not asked for (unsubscribe() forgets the channel first): the slot moved.
                    raise TopologyChanged(f"{peer} dropped {channel} (slot moved)")

    def _handoff(self, payload: object) -> None:
        fn = self._on_handoff
        if fn is None or not isinstance(payload, str):
            return
        try:
            fn(payload)
        except Exception:
            log.exception("hand-off callback failed", extra={"event": "realtime.handoff_failed"})

    def _confirm(self, channel: str) -> bool:
        confirmed = False
        for fut in self._confirms.pop(channel, []):
            if not fut.done():
                fut.set_result(True)
                confirmed = True
        return confirmed

    def _fail_confirms(self) -> None:
        for waiting in self._confirms.values():
            for fut in waiting:
                if not fut.done():
                    fut.set_result(False)
        self._confirms.clear()

    async def _notify(self, channel: str) -> None:
        qname = self.keys.qname_of_channel(channel)
        if qname is None or qname not in self._queues:
            return
        callback = self._callback
        if callback is None:
            self._pending[qname] = None
            self._wakeup.set()
            return
        try:
            result = callback(qname)
            if result is not None and inspect.isawaitable(result):
                await result
        except Exception:
            log.exception(
                "realtime listener callback failed for queue %r",
                qname,
                extra={"event": "realtime.callback_failed", "qname": qname},
            )


def _transport_for(
    redis: str | Redis | RedisCluster,
    read_loop: ReadLoop,
    *,
    layout: str | None,
    connect_timeout: float,
) -> Transport:
    """Sharded pub/sub for a Redis Cluster, one pub/sub connection for anything else."""
    if isinstance(redis, RedisCluster):
        return ShardedTransport(
            redis, read_loop, owns_cluster=False, connect_timeout=connect_timeout
        )
    if isinstance(redis, str) and _is_cluster(redis):
        return ShardedTransport(
            cluster_client(redis, connect_timeout),
            read_loop,
            owns_cluster=True,
            connect_timeout=connect_timeout,
        )
    client = listener_client(redis, connect_timeout)
    return PubSubTransport(client, read_loop, sharded=layout == "cluster")


def _is_cluster(redis: object) -> bool:
    if isinstance(redis, RedisCluster):
        return True
    if isinstance(redis, str):
        with contextlib.suppress(ValueError):
            return parse_redis_url(redis).kind == "cluster"
    return False
