"""The reconnecting WebSocket client: nodes, close-code policy, resubscribe, acks, refresh."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
from collections import OrderedDict, deque
from collections.abc import Awaitable, Callable, Sequence
from types import TracebackType

import aiohttp

from wsmq.backoff import Backoff
from wsmq.client.delivery import Delivery, Subscription
from wsmq.client.errors import ClientClosed, ClientError, CommandFailed, ConnectionClosed
from wsmq.client.events import Event, TokenRefreshed, TransientError
from wsmq.client.events import Subscribed as SubscribedEvent
from wsmq.client.reconnect import Reconnector, TokenSource
from wsmq.client.refresh import Refresher
from wsmq.client.settle import Settler, Verb
from wsmq.client.stream import DEFAULT_EVENTS_BUFFER, EventStream
from wsmq.protocol.names import is_valid_device, is_valid_qname
from wsmq.protocol.server_frames import (
    Acked,
    ErrorFrame,
    Expiring,
    Extended,
    FrameDecodeError,
    Left,
    LegacyMessage,
    Message,
    Nacked,
    Refreshed,
    Sent,
    Subscribed,
    decode_server_frame,
)
from wsmq.protocol.wire import MAX_VT

__all__ = ["Client", "TokenSource", "connect"]

log = logging.getLogger(__name__)

ACKED = -1  # dedupe state of an id the application acked
FLUSH_ON_CLOSE = 2.0  # seconds close() waits for acks queued just before it
MAX_EXTEND = 43_200  # the server's default max_extend (seconds)
_Pending = tuple[str, "asyncio.Future[str] | None"]  # ("send" | "subscribe" | "leave", reply)
#: Subscribe refusals that say "not now" (Redis down, the node stopping): retried with backoff
#: on the same connection. Every other code (forbidden, invalid_queue, too_many_subscriptions,
#: queue_not_found, ...) would be refused again: it ends the subscription.
TRANSIENT_SUBSCRIBE_ERRORS = frozenset({"unavailable"})


def _seconds(name: str, value: float, low: int, high: int) -> int:
    """``value`` as the integer the protocol wants, or a ClientError saying what is wrong."""
    integral = isinstance(value, int) or (isinstance(value, float) and value.is_integer())
    if isinstance(value, bool) or not integral or not low <= value <= high:
        raise ClientError(f"{name} must be a whole number of seconds {low}..{high}, not {value!r}")
    return int(value)


class Client:
    """A client of the nodes ``urls``: ``async with`` it to connect, leave the block to close.

    ``tokens()`` returns ``(x-token, x-access-token)``. ``legacy``: no subprotocol, receive
    only. ``dedupe``: ids remembered per queue to drop redeliveries after a reconnect (0 = off).
    ``on_event``: called with :class:`Connecting`, :class:`Connected`, :class:`Disconnected`.
    ``heartbeat``: WebSocket ping interval in seconds (``None`` = off). ``shuffle``: try the
    nodes in random order. ``session``: an aiohttp session to use (else one of its own).
    ``max_extend``: the largest ``extend()`` the client lets through (the server's
    ``max_extend``).
    """

    def __init__(
        self,
        urls: Sequence[str],
        *,
        tokens: TokenSource,
        legacy: bool = False,
        dedupe: int = 0,
        backoff: Backoff | None = None,
        on_event: Callable[[Event], None] | None = None,
        heartbeat: float | None = 30.0,
        shuffle: bool = True,
        session: aiohttp.ClientSession | None = None,
        max_extend: int = MAX_EXTEND,
    ) -> None:
        if not urls:
            raise ClientError("connect() needs at least one node URL")
        nodes = list(urls)
        if shuffle:
            random.shuffle(nodes)
        self._legacy = legacy
        self._dedupe = dedupe
        self._max_extend = _seconds("max_extend", max_extend, 1, MAX_VT)
        self._on_event = on_event
        self._streams: list[EventStream] = []
        self._session = session
        self._own_session = session is None
        backoff = backoff if backoff is not None else Backoff(base=0.1, cap=10.0)
        self._backoff_range = (backoff.base, backoff.cap)  # for the retries of their own
        self._reconnect = Reconnector(
            nodes, tokens, legacy=legacy, heartbeat=heartbeat, on_event=self._emit,
            backoff=backoff,
        )  # fmt: skip
        self._refresher = Refresher(self._reconnect, self._new_backoff(), self._emit, self._fail)
        self._subscribe_retries: dict[str, Backoff] = {}  # queue -> its retry delays
        self._ws: aiohttp.ClientWebSocketResponse | None = None
        self._connected = asyncio.Event()
        self._run_task: asyncio.Task[None] | None = None
        self._fatal: BaseException | None = None
        self._closed = False
        self._subs: dict[str, Subscription] = {}
        self._pending: dict[str, deque[_Pending]] = {}
        self._settler = Settler(self._send_frame)
        # dedupe: id -> the connection that holds it in flight now, or ACKED.
        self._seen: dict[str, OrderedDict[str, int]] = {}
        self._generation = 0  # counts connections: a delivery belongs to one
        self._tasks: set[asyncio.Task[None]] = set()

    # --- lifecycle ---------------------------------------------------------------------------

    async def __aenter__(self) -> Client:
        if self._session is None:
            self._session = aiohttp.ClientSession()
        self._reconnect.session = self._session
        self._run_task = asyncio.create_task(self._run(), name="wsmq-client")
        try:
            await self._wait_connected()
        except BaseException:
            await self.close()
            raise
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.close()

    async def close(self) -> None:
        """Close the connection and end every subscription's iteration."""
        self._closed = True
        # Settles queued in the last loop turn still go out before the socket closes.
        with contextlib.suppress(Exception):
            await self._settler.drain(FLUSH_ON_CLOSE)
        await self._refresher.cancel()
        for task in [self._run_task, self._settler.cancel(), *self._tasks]:
            if task is not None and not task.done():
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await task
        for sub in self._subs.values():
            sub.finish()
        self._end_streams()
        if self._own_session and self._session is not None:
            await self._session.close()

    @property
    def connected(self) -> bool:
        """Whether a connection is open right now."""
        return self._ws is not None

    def events(self, maxsize: int = DEFAULT_EVENTS_BUFFER) -> EventStream:
        """The client's events from now on, as an async iterator (see :class:`EventStream`).

        Call it before ``async with`` to see the first connection's events too. A reader slower
        than the events loses the oldest unread ones (counted in ``dropped``); the client never
        waits for it. The iteration ends when the client closes or fails.
        """
        stream = EventStream(maxsize)
        if self._closed or (self._run_task is not None and self._run_task.done()):
            stream.finish()
        else:
            self._streams.append(stream)
        return stream

    def _emit(self, event: Event) -> None:
        if self._on_event is not None:
            self._on_event(event)
        for stream in self._streams:
            stream.feed(event)

    def _new_backoff(self) -> Backoff:
        base, cap = self._backoff_range
        return Backoff(base=base, cap=cap)

    def _end_streams(self) -> None:
        streams, self._streams = self._streams, []
        for stream in streams:
            stream.finish()

    # --- commands ----------------------------------------------------------------------------

    def subscribe(self, queue: str, *, device: str | None = None) -> Subscription:
        """Start receiving ``queue`` (renewed after every reconnect); iterate the result.

        ``device``: subscribe as that device (a stable id the app keeps, e.g. per install):
        every message of the queue reaches every device, acked independently (docs/protocol.md,
        Devices). ``await sub.ready()`` waits for the first ``subscribed``; a refusal with
        ``unavailable`` is retried with backoff, any other ends the subscription with
        :class:`CommandFailed`."""
        if self._fatal is not None:
            raise self._fatal
        if self._closed:
            raise ClientClosed()
        if not is_valid_qname(queue):
            raise ClientError(f"invalid queue name {queue!r}")
        if device is not None and not is_valid_device(device):
            raise ClientError(f"invalid device id {device!r}")
        if queue in self._subs:
            raise ClientError(f"already subscribed to {queue!r}")
        if self._legacy and self._subs:
            raise ClientError("legacy deliveries carry no queue name: one subscription only")
        sub = self._subs[queue] = Subscription(queue, device)
        if self._ws is not None:
            self._spawn(self._send_subscribe(self._ws, queue))
        return sub

    async def unsubscribe(self, queue: str) -> None:
        """Stop receiving ``queue``: its iteration ends, and it is not renewed after reconnects.

        Messages delivered but not acked become visible to other consumers at once (the
        server releases them); deliveries still on the way are dropped.
        """
        sub = self._subs.pop(queue, None)
        if sub is None:
            return
        await self._drop(sub)
        if self._ws is not None:
            with contextlib.suppress(ConnectionError, aiohttp.ClientError):
                await self._ws.send_str(f"/unsubscribe/{queue}")

    async def _drop(self, sub: Subscription) -> None:
        """End ``sub`` here (already out of ``_subs``); its settles queued so far go out."""
        sub.finish()
        self._seen.pop(sub.queue, None)
        self._subscribe_retries.pop(sub.queue, None)
        # Settles of this queue queued before the unsubscribe go out before it.
        await self._settler.flush()

    async def leave(self, queue: str, device: str) -> bool:
        """Remove ``device``'s inbox of ``queue`` now, its messages with it (``/leave``):
        ``True`` if there was one. A subscription of this client to ``queue`` as that device
        ends first (the server unsubscribes it), and is not renewed.

        Raises:
            CommandFailed: ``device_in_use`` (another connection is subscribed as it),
                ``forbidden``, ...
            ConnectionClosed: the connection closed before the reply.
        """
        self._require_v1("leave")
        if not is_valid_qname(queue):
            raise ClientError(f"invalid queue name {queue!r}")
        if not is_valid_device(device):
            raise ClientError(f"invalid device id {device!r}")
        sub = self._subs.get(queue)
        if sub is not None and sub.device == device:
            del self._subs[queue]
            await self._drop(sub)
        removed = await self._command(queue, "leave", f"/leave/{queue} device={device}")
        return removed == "removed"

    async def send(self, queue: str, message: str) -> str:
        """Put ``message`` into ``queue``; returns the new message's id.

        Raises:
            CommandFailed: the server refused it (``forbidden``, ``message_too_long``, ...).
            ConnectionClosed: the connection closed before the reply (it may have been queued).
        """
        if self._legacy:
            raise ClientError("send needs the wsmq.v1 protocol (legacy mode is read-only)")
        if not is_valid_qname(queue):
            raise ClientError(f"invalid queue name {queue!r}")
        return await self._command(queue, "send", f"/send/{queue} {message}")

    async def _command(self, queue: str, kind: str, frame: str) -> str:
        """Send ``frame`` once connected; its reply (matched by ``queue`` and ``kind``)."""
        ws = await self._wait_connected()
        reply: asyncio.Future[str] = asyncio.get_running_loop().create_future()
        self._pending.setdefault(queue, deque()).append((kind, reply))
        try:
            await ws.send_str(frame)
        except (ConnectionError, aiohttp.ClientError) as exc:
            raise ConnectionClosed(f"{kind} failed: {exc}") from None
        return await reply

    async def ack(self, delivery: Delivery, *, confirm: bool = False) -> bool:
        """:meth:`Delivery.ack` (the same call)."""
        if self._legacy:
            return True
        return await self._settle(delivery, "ack", "", confirm)

    async def nack(
        self, delivery: Delivery, delay: float | None = None, *, confirm: bool = False
    ) -> bool:
        """:meth:`Delivery.nack` (the same call)."""
        self._require_v1("nack")
        arg = "" if delay is None else f" {_seconds('nack delay', delay, 0, MAX_VT)}"
        return await self._settle(delivery, "nack", arg, confirm)

    async def extend(self, delivery: Delivery, seconds: float, *, confirm: bool = False) -> bool:
        """:meth:`Delivery.extend` (the same call)."""
        self._require_v1("extend")
        arg = f" {_seconds('extend seconds', seconds, 1, self._max_extend)}"
        return await self._settle(delivery, "extend", arg, confirm)

    async def _settle(self, delivery: Delivery, verb: Verb, arg: str, confirm: bool) -> bool:
        queue, msg_id = delivery.queue, delivery.id
        seen = self._seen.get(queue)
        holder = seen.get(msg_id) if seen is not None else None
        if seen is not None and holder is not None:
            if verb == "ack":
                seen[msg_id] = ACKED
            elif verb == "nack":
                del seen[msg_id]  # its redelivery is wanted
        if delivery.generation != self._generation and holder != self._generation:
            # Delivered on a connection that is gone and not (yet) redelivered on this one:
            # the server would answer unknown_message. Its redelivery is acked (dedupe) or
            # handed to the application again.
            return False
        if queue not in self._subs:  # unsubscribed: the server released it
            return False
        waiter = self._settler.add(verb, queue, msg_id, arg, confirm)
        return await waiter if waiter is not None else True

    async def _send_frame(self, text: str) -> None:
        ws = self._ws
        if ws is None:
            raise ConnectionResetError("not connected")
        await ws.send_str(text)

    def _require_v1(self, what: str) -> None:
        if self._legacy:
            raise ClientError(f"{what} needs the wsmq.v1 protocol (legacy mode is read-only)")

    # --- the connection loop -----------------------------------------------------------------

    async def _run(self) -> None:
        try:
            await self._reconnect.run(self._serve)
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            self._fatal = exc
            for sub in self._subs.values():
                sub.finish(exc)
            self._end_streams()

    async def _serve(self, ws: aiohttp.ClientWebSocketResponse) -> tuple[int | None, str, bool]:
        """Run one connection until it closes: (close code, reason, whether it worked)."""
        healthy = False
        reason = ""
        try:
            self._generation += 1
            self._ws = ws  # from here subscribe() sends on ws itself
            for queue in list(self._subs):
                await self._send_subscribe(ws, queue)
            self._connected.set()
            while True:
                msg = await ws.receive()
                if msg.type is aiohttp.WSMsgType.TEXT:
                    healthy = self._on_frame(ws, msg.data) or healthy
                elif msg.type is aiohttp.WSMsgType.CLOSE:
                    reason = msg.extra or ""
                    break
                elif msg.type in (aiohttp.WSMsgType.CLOSING, aiohttp.WSMsgType.CLOSED):
                    break
                elif msg.type is aiohttp.WSMsgType.ERROR:
                    reason = str(msg.data)
                    break
        except (ConnectionError, aiohttp.ClientError) as exc:  # a send on a dying socket
            reason = str(exc) or type(exc).__name__
        finally:
            self._ws = None
            self._connected.clear()
            self._connection_lost()
            await ws.close()
        return ws.close_code, reason, healthy

    def _connection_lost(self) -> None:
        lost = (
            ClientClosed("the client closed before the reply")
            if self._closed
            else ConnectionClosed("the connection closed before the reply")
        )
        for pending in self._pending.values():
            for _kind, reply in pending:
                if reply is not None and not reply.done():
                    reply.set_exception(lost)
        self._pending.clear()
        self._settler.connection_lost()

    async def _send_subscribe(self, ws: aiohttp.ClientWebSocketResponse, queue: str) -> None:
        self._pending.setdefault(queue, deque()).append(("subscribe", None))
        sub = self._subs.get(queue)
        device = sub.device if sub is not None else None
        await ws.send_str(f"/subscribe/{queue}" + (f" device={device}" if device else ""))
        if self._legacy and sub is not None:  # legacy answers no `subscribed`
            self._subscribed(queue, device)

    def _subscribed(self, queue: str, device: str | None) -> None:
        sub = self._subs.get(queue)
        if sub is None:
            return
        self._subscribe_retries.pop(queue, None)
        sub.mark_subscribed()
        self._emit(SubscribedEvent(self._reconnect.node, queue, device))

    async def _subscribe_later(
        self, ws: aiohttp.ClientWebSocketResponse, sub: Subscription
    ) -> None:
        """Retry a subscribe refused with a transient error, on the same connection (a new
        one renews every subscription anyway)."""
        retries = self._subscribe_retries.setdefault(sub.queue, self._new_backoff())
        await retries.sleep()
        if self._ws is ws and self._subs.get(sub.queue) is sub:
            await self._send_subscribe(ws, sub.queue)

    def _fail(self, ws: aiohttp.ClientWebSocketResponse, error: BaseException) -> None:
        """End the client with ``error``: recorded, then the connection closes."""
        self._reconnect.fail(error)

        async def close() -> None:
            await ws.close()

        self._spawn(close())

    async def _wait_connected(self) -> aiohttp.ClientWebSocketResponse:
        while self._ws is None:
            if self._fatal is not None:
                raise self._fatal
            if self._closed or self._run_task is None or self._run_task.done():
                raise ClientClosed()
            waiter = asyncio.ensure_future(self._connected.wait())
            await asyncio.wait({waiter, self._run_task}, return_when=asyncio.FIRST_COMPLETED)
            waiter.cancel()
        return self._ws

    # --- server frames -----------------------------------------------------------------------

    def _on_frame(self, ws: aiohttp.ClientWebSocketResponse, text: str) -> bool:
        """Handle one server frame; ``True`` if it shows the connection works."""
        try:
            frame = decode_server_frame(text)
        except FrameDecodeError:
            # Frames of newer servers: nothing to do for them here.
            log.debug("ignored a server frame the decoder does not know")
            return True
        match frame:
            case Message(queue, msg_id, rc, sent, body):
                self._on_message(queue, msg_id, rc, sent, body)
            case LegacyMessage(body):
                for sub in self._subs.values():
                    sub.feed(Delivery(sub.queue, "", 0, 0.0, body, self, self._generation))
            case Acked(queue, msg_id):
                self._settler.answered(queue, msg_id, "ack", True)
            case Nacked(queue, msg_id):
                self._settler.answered(queue, msg_id, "nack", True)
            case Extended(queue, msg_id):
                self._settler.answered(queue, msg_id, "extend", True)
            case Refreshed(exp):
                self._emit(TokenRefreshed(self._reconnect.node, exp))
            case Sent(queue, msg_id):
                self._reply(queue, "send", msg_id)
            case Subscribed(queue, device):
                self._reply(queue, "subscribe", queue)
                self._subscribed(queue, device)
            case Left(queue, _device, removed):
                self._reply(queue, "leave", "removed" if removed else "")
            case ErrorFrame(code, detail, queue, msg_id):
                self._on_error(ws, code, detail, queue, msg_id)
                return False
            case Expiring():
                self._refresher.expiring(ws)
        return True

    def _on_message(self, queue: str, msg_id: str, rc: int, sent: float, body: str) -> None:
        sub = self._subs.get(queue)
        if sub is None:
            return
        if self._dedupe > 0:
            seen = self._seen.setdefault(queue, OrderedDict())
            holder = seen.get(msg_id)
            if holder == ACKED:  # the app acked it, the ack was lost with the connection
                self._settler.add("ack", queue, msg_id, "", confirm=False)
            if holder is not None:
                seen[msg_id] = self._generation if holder != ACKED else ACKED
                return
            seen[msg_id] = self._generation
            if len(seen) > self._dedupe:
                seen.popitem(last=False)
        sub.feed(Delivery(queue, msg_id, rc, sent, body, self, self._generation))

    def _on_error(
        self,
        ws: aiohttp.ClientWebSocketResponse,
        code: str,
        detail: str,
        queue: str | None,
        msg_id: str | None,
    ) -> None:
        if queue is None:
            log.warning("wsmq server error %s: %s", code, detail)
        elif msg_id is not None:
            self._settler.answered(queue, msg_id, None, False)
        else:
            pending = self._pending.get(queue)
            if pending:  # the oldest command on that queue is the one answered
                kind, reply = pending.popleft()
                error = CommandFailed(code, detail)
                if reply is not None:
                    reply.set_exception(error)
                elif kind == "subscribe" and (sub := self._subs.get(queue)) is not None:
                    if code in TRANSIENT_SUBSCRIBE_ERRORS:
                        self._emit(TransientError(self._reconnect.node, error))
                        self._spawn(self._subscribe_later(ws, sub))
                    else:
                        del self._subs[queue]
                        self._subscribe_retries.pop(queue, None)
                        sub.finish(error)

    def _reply(self, queue: str, kind: str, value: str) -> None:
        pending = self._pending.get(queue)
        if not pending:
            return
        for index, (pending_kind, reply) in enumerate(pending):
            if pending_kind == kind:
                del pending[index]
                if reply is not None and not reply.done():
                    reply.set_result(value)
                return

    def _spawn(self, coro: Awaitable[None]) -> None:
        async def run() -> None:
            try:
                await coro
            except (ConnectionError, aiohttp.ClientError) as exc:
                log.debug("wsmq client: %s", exc)  # the read loop sees the close too
            except Exception:  # a bug: logged, the connection goes on
                log.warning("wsmq client: background step failed", exc_info=True)

        task = asyncio.create_task(run())
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)


#: ``async with connect(urls, tokens=...) as client:`` connects (see :class:`Client`).
connect = Client
