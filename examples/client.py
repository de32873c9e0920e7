"""A wsmq consumer in Python, with the client library ``wsmq.client``: tokens, subscribe, ack.

It gets its tokens over HTTP (``POST /auth/login``, or ``POST /auth/token`` for an access
token) and gives them to ``wsmq.client.connect``, which connects to one of the ``--url`` nodes
with the ``wsmq.v1`` subprotocol, subscribes to each ``--queue`` (again after every reconnect),
renews the x-token in band when the node says it is expiring (it calls ``tokens()`` again) and
moves to another node when one goes away. Each message is printed as one JSON line and acked
*after* it was handled: a crash before the ack means it comes back (at-least-once).

    python examples/client.py --url ws://127.0.0.1:8080/ --url ws://127.0.0.1:8081/ \\
        --user alice --password alice-demo --queue <alice's id>

    # or without a password: an access token (from `wsmq user add --json`) gets an x-token
    python examples/client.py --url ws://127.0.0.1:8080/ --user alice --access-token TOKEN ...
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
from typing import Any
from urllib.parse import urlsplit

import aiohttp

from wsmq.client import (
    AuthenticationFailed,
    Client,
    ClientError,
    CommandFailed,
    Connected,
    Disconnected,
    Event,
    Subscription,
    Unauthorized,
    connect,
)


class LoginFailed(Unauthorized):
    """An ``/auth/*`` call was refused (HTTP 400/401/403): raised from ``tokens()``, it stops the
    client (``async with`` raises ``AuthenticationFailed`` from it). Other failures of the token
    endpoint (down, 429, 503) are retried by the client."""


def say(text: str) -> None:
    print(f"# {text}", file=sys.stderr, flush=True)


def on_event(event: Event) -> None:
    if isinstance(event, Connected):
        say(f"connected to {event.node}")
    elif isinstance(event, Disconnected):
        say(f"{event.node}: closed {event.code if event.code is not None else ''} {event.reason}")


class Tokens:
    """The client's ``tokens`` callback: a login (or the given tokens) first, then fresh
    x-tokens from ``/auth/token``, which keeps the access token (a login would rotate it)."""

    def __init__(self, http: aiohttp.ClientSession, args: argparse.Namespace) -> None:
        self.http, self.args = http, args
        self.token: str | None = args.token
        self.access_token: str | None = args.access_token
        self.calls = 0

    async def __call__(self) -> tuple[str, str]:
        self.calls += 1
        if self.args.password and not self.access_token:
            body = {"userName": self.args.user, "password": self.args.password}
            data = await self.post("/auth/login", body)
            self.token, self.access_token = data["token"], data["accessToken"]
        elif self.args.user and (self.calls > 1 or not self.token):
            data = await self.post("/auth/token", {"userName": self.args.user})
            self.token = data["token"]
        assert self.token and self.access_token  # parse_args checked the options
        return self.token, self.access_token

    async def post(self, path: str, body: dict[str, Any]) -> Any:
        """POST to the first node that answers (``ws://host:port/`` -> ``http://host:port``)."""
        headers = {"x-access-token": self.access_token} if self.access_token else {}
        error: Exception = ConnectionError("no node answered")
        for url in self.args.url:
            parts = urlsplit(url)
            base = f"{'https' if parts.scheme == 'wss' else 'http'}://{parts.netloc}"
            try:
                async with self.http.post(base + path, json=body, headers=headers) as resp:
                    data = await resp.json(content_type=None)
                    if resp.status in (400, 401, 403):
                        raise LoginFailed(f"{path}: HTTP {resp.status} {data.get('error')}")
                    resp.raise_for_status()  # 429, 503...: transient, the client retries
                    return data
            except aiohttp.ClientConnectionError as exc:
                error = exc
        raise error


class Consumer:
    """Prints and acks every message of a subscription; with ``--count``, stops the client."""

    def __init__(self, client: Client, args: argparse.Namespace) -> None:
        self.client, self.args = client, args
        self.handled = 0

    async def consume(self, queue: str) -> None:
        # A node that cannot subscribe now (`unavailable`: shutting down, Redis away) is asked
        # again by the client itself; a refusal that ends the subscription is raised here.
        try:
            await self._consume(self.client.subscribe(queue))
        except CommandFailed as exc:
            say(f"{queue}: {exc}")  # this queue only (forbidden, ...): the others go on

    async def _consume(self, subscription: Subscription) -> None:
        async for d in subscription:
            if self.args.count and self.handled >= self.args.count:
                break  # not handled, not acked: released to another consumer when we leave
            out = {"queue": d.queue, "id": d.id, "rc": d.rc, "sent": d.sent, "message": d.message}
            print(json.dumps(out), flush=True)  # your code goes here
            self.handled += 1
            last = self.args.count and self.handled >= self.args.count
            if not self.args.no_ack:
                # Acks of one loop turn go out as one frame; the last one is confirmed first.
                await d.ack(confirm=bool(last))
            if last:
                await self.client.close()  # ends every subscription's iteration


async def run(args: argparse.Namespace) -> int:
    async with aiohttp.ClientSession() as http:
        try:
            async with connect(
                args.url, tokens=Tokens(http, args), on_event=on_event, shuffle=False
            ) as client:
                consumer = Consumer(client, args)
                ended = await asyncio.gather(
                    *(consumer.consume(queue) for queue in args.queue), return_exceptions=True
                )
                for error in ended:  # the error that ended the client ends every one of them
                    if isinstance(error, BaseException):
                        raise error
        except AuthenticationFailed as exc:
            if isinstance(exc.__cause__, LoginFailed):
                say(f"cannot get tokens: {exc.__cause__}")
            else:
                say(f"rejected: {exc}")
            return 1
        except ClientError as exc:  # a close that retrying cannot help (1008, 1009, ...)
            say(f"stopped: {exc}")
            return 1
    return 0


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--url", action="append", required=True, help="node URL (repeatable)")
    parser.add_argument("--queue", action="append", required=True, help="queue (repeatable)")
    parser.add_argument("--user", help="user name (for --password or --access-token)")
    parser.add_argument("--password", help="log in with this password (rotates the access token)")
    parser.add_argument("--access-token", help="x-access-token (from `wsmq user add --json`)")
    parser.add_argument("--token", help="x-token (JWT), e.g. from `wsmq token`")
    parser.add_argument("--count", type=int, default=0, help="exit after N messages")
    parser.add_argument("--no-ack", action="store_true", help="never ack (watch redelivery)")
    args = parser.parse_args(argv)
    if args.password and not args.user:
        parser.error("--password needs --user")
    if not (args.password or (args.access_token and (args.user or args.token))):
        parser.error("give --user with --password or --access-token, or both tokens")
    return args


def main(argv: list[str] | None = None) -> int:
    try:
        return asyncio.run(run(parse_args(argv)))
    except KeyboardInterrupt:  # Ctrl-C: leaving `async with` closed the socket
        return 130


if __name__ == "__main__":
    sys.exit(main())
