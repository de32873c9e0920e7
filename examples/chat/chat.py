"""A two-person terminal chat over wsmq: each side on its own node, each reading its own queue.

Every user's queue is its id. Alice's lines go to Bob's queue with ``/send/<bob's id> ...``
through her node; Bob's node delivers them to him, and they wait in Redis while he is away.
Run it twice, in two terminals (the ids are printed by ``wsmq demo``)::

    python examples/chat/chat.py --url ws://127.0.0.1:8080/ --url ws://127.0.0.1:8081/ \\
        --user alice --password alice-demo --to <bob's id>
    python examples/chat/chat.py --url ws://127.0.0.1:8081/ --url ws://127.0.0.1:8080/ \\
        --user bob --password bob-demo --to <alice's id>

Type a line and press Enter to send it. ``--count N`` exits after N received lines (and once
everything typed, up to the end of input, has been sent).

Chat format (shared with the demo page): each message body is the JSON object
``{"from": "<user name>", "text": "<line>"}``; any other body is shown as plain text from an
unknown sender (``?: <body>``).

When the node goes away (close 1001/1012, or the connection is lost) the chat reconnects, to
the next ``--url`` in turn, with jittered backoff, giving up after ``--retries`` failed attempts
in a row (exit 1). An expired x-token is renewed with ``/auth/token``; it logs in again only when
its access token is refused. Bad credentials exit 1 at once with a clear message.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import json
import random
import sys
from collections import deque
from urllib.parse import urlsplit

import aiohttp

SUBPROTOCOL = "wsmq.v1"
NODE_LEAVING = (1001, 1012)  # shutting down / restarting: go to another node at once
AUTH_FAILED = 4401
BACKOFF_MIN = 0.25
BACKOFF_MAX = 8.0
SEEN_IDS = 1000  # ids already printed, so a redelivery after a reconnect is not shown twice


class CredentialsRefused(Exception):
    """The node refused the user name and password (or the tokens they gave): do not retry."""


class TokensRefused(Exception):
    """The WebSocket handshake refused the x-token (expired, or revoked): get a fresh one."""


def chat_body(user: str, text: str) -> str:
    """A message in the chat format the demo page also uses."""
    return json.dumps({"from": user, "text": text})


def chat_line(body: str) -> str:
    """How a received body is printed: ``sender: text``, or ``?: body`` for plain text."""
    try:
        data = json.loads(body)
    except ValueError:
        data = None
    if isinstance(data, dict) and isinstance(data.get("from"), str):
        if isinstance(data.get("text"), str):
            return f"{data['from']}: {data['text']}"
    return f"?: {body}"


def http_base(url: str) -> str:
    parts = urlsplit(url)
    return f"{'https' if parts.scheme == 'wss' else 'http'}://{parts.netloc}"


async def login(
    http: aiohttp.ClientSession, url: str, user: str, password: str
) -> tuple[dict[str, str], str]:
    """Log in on the node's ``/auth/login``: the token headers and the user's id."""
    body = {"userName": user, "password": password}
    async with http.post(f"{http_base(url)}/auth/login", json=body) as r:
        data = await r.json(content_type=None)
        error = data.get("error") if isinstance(data, dict) else None
        if r.status in (401, 403):
            raise CredentialsRefused(f"login refused for {user!r}: HTTP {r.status} {error}")
        if r.status != 200:  # 429, 503...: this node cannot log us in now
            raise aiohttp.ClientResponseError(
                r.request_info, (), status=r.status, message=str(error)
            )
        headers = {"x-token": data["token"], "x-access-token": data["accessToken"]}
        return headers, str(data.get("userId") or user_id_of(data["token"]))


async def fresh_x_token(
    http: aiohttp.ClientSession, url: str, headers: dict[str, str], user_id: str
) -> str | None:
    """A new x-token from ``/auth/token`` (the access token stays valid); None if refused."""
    access = {"x-access-token": headers["x-access-token"]}
    async with http.post(
        f"{http_base(url)}/auth/token", json={"userId": user_id}, headers=access
    ) as r:
        data = await r.json(content_type=None)
        if r.status in (401, 403):
            return None  # the access token was revoked: only a new login helps
        if r.status != 200:
            raise aiohttp.ClientResponseError(r.request_info, (), status=r.status)
        return str(data["token"])


def user_id_of(token: str) -> str:
    """The user id in an x-token's ``sub`` (``users/<id>``); no verification needed here."""
    payload = token.split(".")[1]
    claims = json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))
    return str(claims["sub"]).removeprefix("users/")


def say(text: str) -> None:
    print(f"# {text}", file=sys.stderr, flush=True)


class Chat:
    """One chat session across reconnects: typed lines wait in ``outbox`` until confirmed."""

    def __init__(self, args: argparse.Namespace) -> None:
        self.args = args
        self.outbox: deque[str] = deque()  # typed, not yet confirmed by a node, in order
        self.in_flight = 0  # the first in_flight lines of outbox went out on this socket
        self.unacked: set[str] = set()
        self.seen: deque[str] = deque(maxlen=SEEN_IDS)
        self.received = 0
        self.end_of_input = False
        self.finished = asyncio.Event()
        self.ws: aiohttp.ClientWebSocketResponse | None = None
        self.ready = False  # subscribed on the current socket
        # Kept across reconnects: each login issues a new access token and revokes the last
        # one, which would log this user out of the page or another terminal.
        self.headers: dict[str, str] | None = None
        self.my_id = ""

    def check_finished(self) -> None:
        count = self.args.count
        if count and self.received >= count and self.end_of_input:
            if not self.outbox and not self.unacked:
                self.finished.set()

    async def read_stdin(self) -> None:
        loop = asyncio.get_running_loop()
        reader = asyncio.StreamReader()
        await loop.connect_read_pipe(lambda: asyncio.StreamReaderProtocol(reader), sys.stdin)
        while line := await reader.readline():
            text = line.decode().rstrip("\n")
            if text:
                self.outbox.append(text)
                await self.flush()
        self.end_of_input = True
        self.check_finished()

    async def flush(self) -> None:
        """Send the typed lines not yet sent on this socket (all of them after a reconnect)."""
        while self.ws is not None and self.ready and self.in_flight < len(self.outbox):
            text = self.outbox[self.in_flight]
            self.in_flight += 1
            try:
                await self.ws.send_str(f"/send/{self.args.to} {chat_body(self.args.user, text)}")
            except (aiohttp.ClientError, ConnectionError):
                return  # the socket is closing: the line goes out on the next one

    def line_answered(self) -> None:
        if self.in_flight:
            self.outbox.popleft()
            self.in_flight -= 1
        self.check_finished()

    async def on_frame(self, msg: dict[str, object], url: str) -> bool:
        """Handle one frame; True once the socket is subscribed (a fresh start for retries)."""
        kind = msg.get("type")
        if kind == "subscribed":
            say(f"{self.args.user} is here (on {url}); type to chat")
            self.ready = True
            await self.flush()
            return True
        if kind == "message" and self.ws is not None:
            msg_id, queue = str(msg["id"]), str(msg["queue"])
            if msg_id not in self.seen:
                print(chat_line(str(msg["message"])), flush=True)
                self.seen.append(msg_id)
                self.received += 1
            self.unacked.add(msg_id)
            await self.ws.send_str(f"/ack/{queue}/{msg_id}")
        elif kind == "acked":
            self.unacked.discard(str(msg.get("id")))
            self.check_finished()
        elif kind == "sent" and msg.get("queue") == self.args.to:
            self.line_answered()
        elif kind == "error":
            say(f"error {msg.get('code')}: {msg.get('detail')}")
            if msg.get("id"):  # an ack that failed: the message comes back, unprinted
                self.unacked.discard(str(msg["id"]))
                self.check_finished()
            elif msg.get("queue") == self.args.to:
                self.line_answered()  # that line was refused (e.g. forbidden): dropped
        return False

    async def log_in(self, http: aiohttp.ClientSession, url: str) -> dict[str, str]:
        self.headers, self.my_id = await login(http, url, self.args.user, self.args.password)
        return self.headers

    async def open_socket(
        self, http: aiohttp.ClientSession, url: str, headers: dict[str, str]
    ) -> aiohttp.ClientWebSocketResponse:
        try:
            return await http.ws_connect(
                url, headers=headers, protocols=(SUBPROTOCOL,), heartbeat=20
            )
        except aiohttp.WSServerHandshakeError as exc:
            if exc.status in (401, 403):
                raise TokensRefused(f"{url} refused the tokens: HTTP {exc.status}") from exc
            raise

    async def connect(
        self, http: aiohttp.ClientSession, url: str
    ) -> aiohttp.ClientWebSocketResponse:
        """A socket with the tokens we have; when refused, a fresh x-token, else a new login."""
        headers = self.headers or await self.log_in(http, url)
        try:
            return await self.open_socket(http, url, headers)
        except TokensRefused:
            token = await fresh_x_token(http, url, headers, self.my_id)
            headers = {**headers, "x-token": token} if token else await self.log_in(http, url)
            self.headers = headers
        try:
            return await self.open_socket(http, url, headers)
        except TokensRefused as exc:
            raise CredentialsRefused(str(exc)) from exc

    async def connection(self, http: aiohttp.ClientSession, url: str) -> tuple[int | None, bool]:
        """One connection until it closes: its close code, and whether it got subscribed."""
        ws = await self.connect(http, url)
        subscribed = False
        self.ws, self.ready, self.in_flight = ws, False, 0
        try:
            await ws.send_str(f"/subscribe/{self.my_id}")  # my own queue: my id
            async for frame in ws:
                if frame.type != aiohttp.WSMsgType.TEXT:
                    break
                subscribed = await self.on_frame(json.loads(frame.data), url) or subscribed
        finally:
            # Lines without a reply are sent again on the next socket (at-least-once); an
            # unacked message comes back from Redis and is not printed twice.
            self.ws, self.ready, self.in_flight = None, False, 0
            self.unacked.clear()
            await ws.close()
        if ws.close_code == AUTH_FAILED:
            raise CredentialsRefused(f"{url} closed with {AUTH_FAILED}: authentication failed")
        return ws.close_code, subscribed

    async def connect_loop(self, http: aiohttp.ClientSession) -> int:
        urls: list[str] = self.args.url
        index, failures = 0, 0
        while True:
            url = urls[index % len(urls)]
            try:
                code, subscribed = await self.connection(http, url)
                why = f"closed with {code}"
            except (aiohttp.ClientError, OSError, TimeoutError, ValueError) as exc:
                code, subscribed, why = None, False, f"{type(exc).__name__}: {exc}"
            failures = 0 if subscribed else failures + 1
            if failures > self.args.retries:
                say(f"giving up after {failures} failed attempts in a row (last: {url} {why})")
                return 1
            index += 1
            leaving = code in NODE_LEAVING and failures == 0
            base = BACKOFF_MIN if leaving else min(BACKOFF_MAX, BACKOFF_MIN * 2**failures)
            delay = base * random.uniform(0.5, 1.0)  # jitter: clients do not return in step
            say(f"lost {url} ({why}); reconnecting to {urls[index % len(urls)]} in {delay:.1f} s")
            await asyncio.sleep(delay)

    async def run(self) -> int:
        timeout = aiohttp.ClientTimeout(total=None, sock_connect=10, sock_read=None)
        async with aiohttp.ClientSession(timeout=timeout) as http:
            typing = asyncio.create_task(self.read_stdin())
            connecting = asyncio.create_task(self.connect_loop(http))
            finished = asyncio.create_task(self.finished.wait())
            try:
                await asyncio.wait({connecting, finished}, return_when=asyncio.FIRST_COMPLETED)
                if finished.done():
                    return 0
                return connecting.result()
            except CredentialsRefused as exc:
                say(f"{exc}: check --user and --password")
                return 1
            finally:
                for task in (typing, connecting, finished):
                    task.cancel()
                await asyncio.gather(typing, connecting, finished, return_exceptions=True)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Two-person chat over wsmq.")
    parser.add_argument(
        "--url", required=True, action="append", help="node WebSocket URL (repeat for failover)"
    )
    parser.add_argument("--user", required=True)
    parser.add_argument("--password", required=True)
    parser.add_argument("--to", required=True, help="the other person's id (their queue)")
    parser.add_argument("--count", type=int, default=0, help="exit after N received lines")
    parser.add_argument(
        "--retries", type=int, default=8, help="failed reconnects in a row before giving up"
    )
    try:
        return asyncio.run(Chat(parser.parse_args(argv)).run())
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main())
