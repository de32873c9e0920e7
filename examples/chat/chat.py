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

The WebSocket side is the client library ``wsmq.client``: it reconnects when the node goes
away (close 1001/1012 at once, to the next ``--url``; otherwise with jittered backoff), renews
the subscription, and renews the x-token in band when the node says it is expiring. This
program gives it tokens (a login first, then ``/auth/token``; a new login only when the access
token is refused) and gives up after ``--retries`` failed attempts in a row (exit 1). Bad
credentials exit 1 at once with a clear message.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import json
import sys
from urllib.parse import urlsplit

import aiohttp

from wsmq.backoff import Backoff
from wsmq.client import (
    AuthenticationFailed,
    Client,
    ClientError,
    CommandFailed,
    Connected,
    ConnectionClosed,
    Disconnected,
    Event,
    Unauthorized,
    connect,
)

BACKOFF_MIN = 0.25
BACKOFF_MAX = 8.0
SEEN_IDS = 1000  # ids the client remembers, so a redelivery after a reconnect is not shown twice


class CredentialsRefused(Unauthorized):
    """The node refused the user name and password (or the tokens they gave): do not retry
    (raised from ``tokens()``, an ``Unauthorized`` ends the client)."""


class GaveUp(Unauthorized):
    """``--retries`` attempts in a row failed: raised from the client's event callback (which
    ends the client) or from ``tokens()`` (an ``Unauthorized``: it ends the client too, any
    other exception of ``tokens()`` the client would retry)."""


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
    """One chat session: the client's tokens and events, typed lines out, received lines in."""

    def __init__(self, args: argparse.Namespace, http: aiohttp.ClientSession) -> None:
        self.args = args
        self.http = http
        # Kept across reconnects: each login issues a new access token and revokes the last
        # one, which would log this user out of the page or another terminal.
        self.headers: dict[str, str] | None = None
        self.my_id = ""
        self.auth_node = 0  # which --url the /auth calls go to (the next one after a failure)
        self.auth_backoff = Backoff(base=BACKOFF_MIN, cap=BACKOFF_MAX)
        self.failures = 0  # failed attempts in a row (connects and /auth calls)
        self.up = False  # the current connection was accepted
        self.typed: asyncio.Queue[str] = asyncio.Queue()  # typed, not yet sent
        self.unconfirmed = 0  # typed lines the node has not confirmed (or refused) yet
        self.end_of_input = False
        self.received = 0
        self.finished = asyncio.Event()

    # --- what the client calls -----------------------------------------------------------

    async def tokens(self) -> tuple[str, str]:
        """``(x-token, x-access-token)``: first a login, later a fresh x-token (the access
        token stays valid); retried on the next node while nodes are down or busy."""
        while True:
            url = self.args.url[self.auth_node % len(self.args.url)]
            try:
                headers = await self._tokens_from(url)
            except (aiohttp.ClientError, OSError, TimeoutError) as exc:  # down, 429, 503...
                self.failed(url, f"{type(exc).__name__}: {exc}")
                self.auth_node += 1
                await self.auth_backoff.sleep()
                continue
            self.auth_backoff.reset()
            return headers["x-token"], headers["x-access-token"]

    async def _tokens_from(self, url: str) -> dict[str, str]:
        if self.headers is not None:
            token = await fresh_x_token(self.http, url, self.headers, self.my_id)
            if token is not None:
                say("new x-token from /auth/token")
                self.headers = {**self.headers, "x-token": token}
                return self.headers
        # The first call, or the access token was refused (revoked): log in.
        self.headers, self.my_id = await login(self.http, url, self.args.user, self.args.password)
        return self.headers

    def on_event(self, event: Event) -> None:
        if isinstance(event, Connected):
            self.up = True
            say(f"{self.args.user} is here (on {event.node}); type to chat")
        elif isinstance(event, Disconnected):
            why = f"closed with {event.code} {event.reason}" if event.code else event.reason
            if self.up:
                self.up, self.failures = False, 0
                say(f"lost {event.node} ({why}); reconnecting")
            else:
                self.failed(event.node, why)

    def failed(self, url: str, why: str) -> None:
        self.failures += 1
        if self.failures > self.args.retries:
            raise GaveUp(
                f"giving up after {self.failures} failed attempts in a row (last: {url} {why})"
            )
        say(f"{url} failed ({why}); trying again")

    # --- the chat ------------------------------------------------------------------------

    def check_finished(self) -> None:
        count = self.args.count
        if count and self.received >= count and self.end_of_input and not self.unconfirmed:
            self.finished.set()

    async def read_stdin(self) -> None:
        loop = asyncio.get_running_loop()
        reader = asyncio.StreamReader()
        await loop.connect_read_pipe(lambda: asyncio.StreamReaderProtocol(reader), sys.stdin)
        while line := await reader.readline():
            if text := line.decode().rstrip("\n"):
                self.unconfirmed += 1
                self.typed.put_nowait(text)
        self.end_of_input = True
        self.check_finished()

    async def send_lines(self, client: Client) -> None:
        """Send each typed line in order, again if its connection closed before the reply
        (at-least-once: it can arrive twice)."""
        while True:
            body = chat_body(self.args.user, await self.typed.get())
            while True:
                try:
                    await client.send(self.args.to, body)
                except CommandFailed as exc:  # refused (e.g. forbidden): that line is dropped
                    say(f"error {exc.error_code}: {exc.detail}")
                except ConnectionClosed as exc:
                    if exc.close_code is not None:
                        raise  # the client ended: no connection will come
                    continue
                break
            self.unconfirmed -= 1
            self.check_finished()

    async def receive(self, client: Client) -> None:
        retry = Backoff(base=BACKOFF_MIN, cap=BACKOFF_MAX)
        while True:
            try:
                async for d in client.subscribe(self.my_id):  # my own queue: my id
                    print(chat_line(d.message), flush=True)
                    self.received += 1
                    await d.ack(confirm=True)
                    self.check_finished()
                return
            except CommandFailed as exc:
                if exc.error_code != "unavailable":
                    raise
                # The node could not subscribe now (shutting down, Redis away): as the
                # protocol asks, subscribe again a little later.
                say(f"subscribe: {exc.detail}; again shortly")
                await retry.sleep()

    async def run(self) -> int:
        try:
            async with connect(
                self.args.url, tokens=self.tokens, on_event=self.on_event, dedupe=SEEN_IDS,
                backoff=Backoff(base=BACKOFF_MIN, cap=BACKOFF_MAX), heartbeat=20,
                shuffle=False, session=self.http,
            ) as client:  # fmt: skip
                tasks = [
                    asyncio.create_task(self.receive(client)),
                    asyncio.create_task(self.send_lines(client)),
                    asyncio.create_task(self.finished.wait()),
                ]
                typing = asyncio.create_task(self.read_stdin())
                try:
                    done, _ = await asyncio.wait(tasks, return_when=asyncio.FIRST_COMPLETED)
                    for task in done:
                        task.result()  # the client's error, if it ended
                finally:
                    for task in [*tasks, typing]:
                        task.cancel()
                    await asyncio.gather(*tasks, typing, return_exceptions=True)
        except GaveUp as exc:
            say(str(exc))
            return 1
        except AuthenticationFailed as exc:
            if isinstance(exc.__cause__, GaveUp):  # tokens() gave up
                say(str(exc.__cause__))
                return 1
            say(f"{exc}: check --user and --password")
            return 1
        except CredentialsRefused as exc:
            say(f"{exc}: check --user and --password")
            return 1
        except ClientError as exc:  # a close that retrying cannot help (1008, 1009, ...)
            say(f"stopped: {exc}")
            return 1
        return 0


async def chat(args: argparse.Namespace) -> int:
    timeout = aiohttp.ClientTimeout(total=None, sock_connect=10, sock_read=None)
    async with aiohttp.ClientSession(timeout=timeout) as http:
        return await Chat(args, http).run()


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
        return asyncio.run(chat(parser.parse_args(argv)))
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main())
