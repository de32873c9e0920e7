"""A wsmq WebSocket client in Python (aiohttp): header auth, wsmq.v1 envelopes, acks.

It logs in (or swaps an access token for a fresh x-token), connects with the ``x-token`` and
``x-access-token`` headers and the ``wsmq.v1`` subprotocol, subscribes, prints each message as
one JSON line and acknowledges it *after* handling it: a crash before the ack means the message
comes back after the queue's visibility timeout (at-least-once). It refreshes its token in-band
when the server says it is expiring, and reconnects with backoff to the next ``--url``.

    python examples/client.py --url ws://127.0.0.1:8080/ --url ws://127.0.0.1:8081/ \\
        --user alice --password alice-demo --queue <alice's id>

    # or without a password: an access token (from `wsmq user add --json`) gets an x-token
    python examples/client.py --url ws://127.0.0.1:8080/ --user alice --access-token TOKEN ...
"""

from __future__ import annotations

import argparse
import asyncio
import json
import random
import sys
from typing import Any
from urllib.parse import urlsplit

import aiohttp

SUBPROTOCOL = "wsmq.v1"
# Close codes after which reconnecting with the same credentials cannot help.
FATAL_CLOSE = {4401: "authentication failed", 4403: "token expired or access revoked"}


def http_base(ws_url: str) -> str:
    """``ws://host:port/path`` -> ``http://host:port`` (where ``/auth/*`` lives)."""
    parts = urlsplit(ws_url)
    scheme = "https" if parts.scheme == "wss" else "http"
    return f"{scheme}://{parts.netloc}"


class Client:
    """Credentials, the node list and the receive loop."""

    def __init__(self, args: argparse.Namespace) -> None:
        self.args = args
        self.urls: list[str] = args.url
        self.token: str | None = args.token
        self.access_token: str | None = args.access_token
        self.received = 0

    async def post(self, http: aiohttp.ClientSession, path: str, body: dict[str, Any]) -> Any:
        """POST to the first node that answers; raise on an HTTP error."""
        headers = {"x-access-token": self.access_token} if self.access_token else {}
        last: Exception = RuntimeError("no node answered")
        for url in self.urls:
            try:
                async with http.post(http_base(url) + path, json=body, headers=headers) as resp:
                    data = await resp.json(content_type=None)
                    if resp.status != 200:
                        raise SystemExit(f"{path}: HTTP {resp.status} {data.get('error')}")
                    return data
            except aiohttp.ClientConnectionError as exc:
                last = exc
        raise last

    async def credentials(self, http: aiohttp.ClientSession) -> None:
        """Log in with the password, or get a fresh x-token with the access token."""
        if self.args.password:
            data = await self.post(
                http, "/auth/login", {"userName": self.args.user, "password": self.args.password}
            )
            self.token, self.access_token = data["token"], data["accessToken"]
        elif self.access_token and self.args.user and not self.token:
            await self.refresh_token(http)
        if not (self.token and self.access_token):
            raise SystemExit("give --user with --password or --access-token, or both tokens")

    async def refresh_token(self, http: aiohttp.ClientSession) -> None:
        data = await self.post(http, "/auth/token", {"userName": self.args.user})
        self.token = data["token"]

    async def run(self) -> int:
        attempt = 0
        async with aiohttp.ClientSession() as http:
            await self.credentials(http)
            while True:
                url = self.urls[attempt % len(self.urls)]
                try:
                    code = await self.session(http, url)
                except aiohttp.WSServerHandshakeError as exc:
                    if exc.status in (401, 403):  # rejected before the upgrade: tokens are bad
                        print(f"# {url}: rejected with HTTP {exc.status}", file=sys.stderr)
                        return 1
                    print(f"# {url}: handshake failed with HTTP {exc.status}", file=sys.stderr)
                    code = None
                except aiohttp.ClientError as exc:
                    print(f"# {url}: {exc}", file=sys.stderr)
                    code = None
                if code == 0:
                    return 0
                if code in FATAL_CLOSE:
                    print(f"# closed: {FATAL_CLOSE[code]}", file=sys.stderr)
                    return 1
                attempt += 1
                # 1001/1012 (node going away): next node at once; otherwise back off.
                delay = 0.0 if code in (1001, 1012) else min(10.0, 0.25 * 2 ** min(attempt, 6))
                await asyncio.sleep(delay * random.uniform(0.5, 1.0))

    async def session(self, http: aiohttp.ClientSession, url: str) -> int | None:
        """One connection; returns 0 when done (``--count`` reached) or the close code."""
        headers = {"x-token": self.token or "", "x-access-token": self.access_token or ""}
        async with http.ws_connect(url, headers=headers, protocols=(SUBPROTOCOL,)) as ws:
            print(f"# connected to {url}", file=sys.stderr)
            for qname in self.args.queue:
                await ws.send_str(f"/subscribe/{qname}")
            unconfirmed: set[str] = set()  # acks sent, "acked" not yet back
            async for frame in ws:
                if frame.type != aiohttp.WSMsgType.TEXT:
                    break
                msg = json.loads(frame.data)
                kind = msg.get("type")
                done = bool(self.args.count) and self.received >= self.args.count
                if kind == "message" and not done:
                    self.handle(msg)
                    if not self.args.no_ack:  # ack after handling: at-least-once
                        unconfirmed.add(msg["id"])
                        await ws.send_str(f"/ack/{msg['queue']}/{msg['id']}")
                    self.received += 1
                elif kind == "acked" or (kind == "error" and msg.get("id")):
                    unconfirmed.discard(msg["id"])
                elif kind == "expiring":
                    await self.refresh_token(http)
                    await ws.send_str(f"/refresh {self.token}")
                elif kind == "subscribed":
                    print(f"# subscribed to {msg['queue']}", file=sys.stderr)
                if kind == "error":
                    print(f"# error {msg.get('code')}: {msg.get('detail')}", file=sys.stderr)
                if self.args.count and self.received >= self.args.count and not unconfirmed:
                    # Leave once every ack is confirmed; later deliveries (not handled) are
                    # released by the node when the socket closes and go to another consumer.
                    await ws.close()
                    return 0
            return ws.close_code

    def handle(self, msg: dict[str, Any]) -> None:
        """Your code goes here. The example prints one JSON line per message."""
        out = {k: msg[k] for k in ("queue", "id", "rc", "sent", "message")}
        print(json.dumps(out), flush=True)


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
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    try:
        return asyncio.run(Client(parse_args(argv)).run())
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main())
