"""Realtime notifications: one pub/sub connection for many queues, reconnecting on loss.

With RSMQ's realtime option (and in wsmq always, see ``Queues(realtime=True)``) every send
publishes the queue size on ``{ns}:rt:{qname}``.  :class:`RealtimeListener` turns those into
"queue X may have messages" events.  Pub/sub is fire-and-forget: a notification sent while the
connection is down is lost, so after every (re)connect the listener reports every subscribed
queue once and consumers re-check them.
"""

from __future__ import annotations

import asyncio
import contextlib
import inspect
import logging
import random
from collections.abc import Awaitable, Callable
from typing import Any

from redis.asyncio import ConnectionPool, Redis
from redis.asyncio.client import PubSub
from redis.asyncio.cluster import RedisCluster
from redis.asyncio.retry import Retry
from redis.asyncio.sentinel import SentinelConnectionPool
from redis.backoff import NoBackoff
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import TimeoutError as RedisTimeoutError

from wsmq.connections import parse_redis_url, redis_from_url
from wsmq.outage_log import OutageLog
from wsmq.queue.keys import KeyLayout
from wsmq.queue.validation import validate_qname
from wsmq.realtime.pubsub_reader import PubSubReader

__all__ = ["Callback", "RealtimeListener"]

log = logging.getLogger(__name__)

Callback = Callable[[str], Awaitable[None] | None]
_LOST = (RedisConnectionError, RedisTimeoutError, OSError)


class RealtimeListener:
    """Listen for new-message notifications of many queues over one connection.

    Use either ``listener.set_callback(fn)`` (``fn(qname)``, sync or async; keep it short, it
    runs on the reader task) or ``async for qname in listener``.  Iteration coalesces: a queue
    notified many times before it is consumed is yielded once.

    The listener owns a dedicated client with no socket read timeout (an idle subscription must
    not time out) and no automatic retries; it reconnects itself with exponential backoff
    (``backoff_min``..``backoff_max`` seconds) and detects a silent dead peer with a PING every
    ``ping_interval`` seconds.

    ``redis`` is any URL :func:`wsmq.connections.redis_from_url` accepts (Sentinel included) or
    a client.  A Redis Cluster URL or client gives a
    :class:`~wsmq.realtime.sharded.ClusterRealtimeListener` (sharded pub/sub, one
    connection per master).  ``layout="cluster"`` on a single server listens with
    ``SSUBSCRIBE`` to the cluster layout's channels.
    """

    def __new__(cls, redis: str | Redis | RedisCluster, *args: Any, **kwargs: Any) -> Any:
        if cls is RealtimeListener and _is_cluster(redis):
            from wsmq.realtime.sharded import ClusterRealtimeListener

            return super().__new__(ClusterRealtimeListener)
        return super().__new__(cls)

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
        if layout not in (None, "rsmq", "cluster"):
            raise ValueError(f"layout must be 'rsmq' or 'cluster', not {layout!r}")
        if isinstance(redis, RedisCluster):
            raise TypeError("a RedisCluster client needs ClusterRealtimeListener")
        self._setup(
            ns,
            cluster=layout == "cluster",
            callback=callback,
            backoff_min=backoff_min,
            backoff_max=backoff_max,
            ping_interval=ping_interval,
            confirm_timeout=confirm_timeout,
        )
        self._client = self._make_client(redis, connect_timeout)

    def _setup(
        self,
        ns: str,
        *,
        cluster: bool,
        callback: Callback | None,
        backoff_min: float,
        backoff_max: float,
        ping_interval: float,
        confirm_timeout: float,
    ) -> None:
        """State shared with the cluster listener (everything but the connection)."""
        self.keys = KeyLayout(ns, cluster=cluster)
        # The cluster layout's channels are sharded: SSUBSCRIBE, "smessage" replies.
        self._sharded = cluster
        self._callback = callback
        self.backoff_min = backoff_min
        self.backoff_max = backoff_max
        self.ping_interval = ping_interval
        self.confirm_timeout = confirm_timeout
        self._queues: set[str] = set()
        self._pubsub: PubSub | None = None
        self._task: asyncio.Task[None] | None = None
        self._write_lock = asyncio.Lock()
        self._confirms: dict[str, list[asyncio.Future[bool]]] = {}
        self._report_on_ack: set[str] = set()
        self._pending: dict[str, None] = {}  # ordered set of notified, not yet iterated queues
        self._wakeup = asyncio.Event()
        self._closed = False
        self.connected = asyncio.Event()
        #: Number of successful connections so far (1 + reconnects).
        self.connections = 0

    @staticmethod
    def _make_client(redis: str | Redis, connect_timeout: float) -> Redis:
        overrides: dict[str, Any] = {
            "socket_timeout": None,
            "socket_connect_timeout": connect_timeout,
            "retry": Retry(NoBackoff(), 0),
            "health_check_interval": 0,  # the reader PINGs itself
            "decode_responses": True,
            "encoding_errors": "replace",
        }
        if isinstance(redis, str):
            client = redis_from_url(redis, role="pubsub", **overrides)
            assert isinstance(client, Redis)
            return client
        source = redis.connection_pool
        if isinstance(source, SentinelConnectionPool):
            # A new pool from the same sentinels, so failovers are followed on reconnect.
            kwargs = {
                k: v
                for k, v in source.connection_kwargs.items()
                if k not in ("connection_pool", "connection_class", "retry_on_error")
            }
            sentinel_client: Redis = source.sentinel_manager.master_for(
                source.service_name, **{**kwargs, **overrides}
            )
            return sentinel_client
        kwargs = {**source.connection_kwargs, **overrides}
        kwargs.pop("retry_on_error", None)
        pool = ConnectionPool(connection_class=source.connection_class, **kwargs)
        return Redis(connection_pool=pool)

    # -- public API ----------------------------------------------------------------------------

    def set_callback(self, fn: Callback | None) -> None:
        """Call ``fn(qname)`` on every notification (instead of queueing it for iteration)."""
        self._callback = fn

    @property
    def queues(self) -> frozenset[str]:
        """The subscribed queue names."""
        return frozenset(self._queues)

    def channel(self, qname: str) -> str:
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
        loop = asyncio.get_running_loop()
        fut: asyncio.Future[bool] = loop.create_future()
        self._confirms.setdefault(channel, []).append(fut)
        try:
            await self._send_subscribe(channel)
            # Not connected yet: the reader subscribes every queue once it is and resolves us.
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
        await self._send_unsubscribe(self.channel(qname))

    # Subclasses (the cluster listener) override these two: how a (un)subscribe goes on the wire.

    async def _send_subscribe(self, channel: str) -> None:
        pubsub = self._pubsub
        if pubsub is not None:
            with contextlib.suppress(*_LOST):
                async with self._write_lock:
                    await self._sub(pubsub, channel)

    async def _send_unsubscribe(self, channel: str) -> None:
        pubsub = self._pubsub
        if pubsub is not None:
            with contextlib.suppress(*_LOST):
                async with self._write_lock:
                    if self._sharded:
                        await pubsub.sunsubscribe(channel)
                    else:
                        await pubsub.unsubscribe(channel)

    async def aclose(self) -> None:
        """Stop the reader, close the connection; iteration ends."""
        await self._stop_reader()
        await self._client.aclose()

    async def _stop_reader(self) -> None:
        """Mark closed, wake iterators and end the reader task (shared with the cluster one)."""
        self._closed = True
        self._wakeup.set()
        task, self._task = self._task, None
        if task is not None:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task

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

    # -- reader task ---------------------------------------------------------------------------

    async def _run(self) -> None:
        delay = self.backoff_min
        outage = OutageLog(log, "realtime listener")
        while not self._closed:
            pubsub = self._client.pubsub()
            try:
                await pubsub.connect()  # type: ignore[no-untyped-call]
                self._pubsub = pubsub
                channels = [self.channel(q) for q in self._queues]
                # Every queue is reported once its subscription is confirmed: whatever was
                # published while we were away (or before we first listened) is not lost.
                self._report_on_ack = set(channels)
                if channels:
                    async with self._write_lock:
                        await self._sub(pubsub, *channels)
                self.connections += 1
                self.connected.set()
                outage.recovered()
                delay = self.backoff_min
                await self._read(pubsub)
            except _LOST as exc:
                outage.failed(f"Redis unreachable or connection lost ({exc})")
            except Exception as exc:
                # Never let the reader die: a dead reader would silently stop all notifications.
                outage.failed(f"unexpected error ({exc!r})", level=logging.ERROR, exc_info=True)
            finally:
                self._pubsub = None
                self.connected.clear()
                self._fail_confirms()
                with contextlib.suppress(Exception):
                    await pubsub.aclose()  # type: ignore[no-untyped-call, unused-ignore]
            if self._closed:
                return
            await asyncio.sleep(delay * random.uniform(0.8, 1.2))
            delay = min(delay * 2, self.backoff_max)

    async def _read(self, pubsub: PubSub) -> None:
        loop = asyncio.get_running_loop()
        last_ping = loop.time()
        ping_sent: float | None = None
        reader = PubSubReader(pubsub)
        while True:
            replies = await reader.read(1.0)
            now = loop.time()
            if not replies:
                if ping_sent is not None and now - ping_sent > self.ping_interval:
                    raise RedisConnectionError("no PONG from Redis")
                if ping_sent is None and now - last_ping >= self.ping_interval:
                    async with self._write_lock:
                        await pubsub.ping()
                    ping_sent = last_ping = now
                continue
            # Any reply proves the link is alive. Not only "pong": with decode_responses=True
            # redis-py 8.1 splits a subscribed-mode PONG into {'type': 'P', 'channel': 'O'}.
            ping_sent = None
            notified: set[str] = set()  # one wake-up per queue for what one read brought
            for kind, channel in replies:
                if channel is None:
                    continue
                if kind in ("subscribe", "ssubscribe"):
                    # A subscribe() call that gets this confirmation tells its caller to check
                    # the queue; every other (re)subscribed queue is reported here instead.
                    confirmed_to_caller = self._confirm(channel)
                    if channel in self._report_on_ack:
                        self._report_on_ack.discard(channel)
                        if not confirmed_to_caller:
                            await self._notify(channel)
                elif kind in ("message", "smessage") and channel not in notified:
                    notified.add(channel)
                    await self._notify(channel)

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

    async def _sub(self, pubsub: PubSub, *channels: str) -> None:
        if self._sharded:
            await pubsub.ssubscribe(*channels)
        else:
            await pubsub.subscribe(*channels)

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
            log.exception("realtime listener callback failed for queue %r", qname)


def _is_cluster(redis: object) -> bool:
    if isinstance(redis, RedisCluster):
        return True
    if isinstance(redis, str):
        with contextlib.suppress(ValueError):
            return parse_redis_url(redis).kind == "cluster"
    return False
