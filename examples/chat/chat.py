"""A two-person terminal chat over wsmq: each side on its own node, each reading its own queue.

Every user's queue is its id. Alice's lines go to Bob's queue with ``/send/<bob's id> ...``
through her node; Bob's node delivers them to him, and they wait in Redis while he is away.
Run it twice, in two terminals (the ids are printed by ``wsmq demo``)::

    python examples/chat/chat.py --url ws://127.0.0.1:8080/ --user alice --password alice-demo \\
        --to <bob's id>
    python examples/chat/chat.py --url ws://127.0.0.1:8081/ --user bob --password bob-demo \\
        --to <alice's id>

Type a line and press Enter to send it. ``--count N`` exits after N received lines (and once
everything typed, up to the end of input, has been sent).
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import json
import sys
from urllib.parse import urlsplit

import aiohttp

SUBPROTOCOL = "wsmq.v1"


async def login(
    http: aiohttp.ClientSession, url: str, user: str, password: str
) -> tuple[dict[str, str], str]:
    """Log in on the node's ``/auth/login``: the token headers and the user's id."""
    parts = urlsplit(url)
    base = f"{'https' if parts.scheme == 'wss' else 'http'}://{parts.netloc}"
    async with http.post(f"{base}/auth/login", json={"userName": user, "password": password}) as r:
        body = await r.json(content_type=None)
        if r.status != 200:
            raise SystemExit(f"login failed: HTTP {r.status} {body.get('error')}")
        headers = {"x-token": body["token"], "x-access-token": body["accessToken"]}
        return headers, str(body.get("userId") or user_id_of(body["token"]))


def user_id_of(token: str) -> str:
    """The user id in an x-token's ``sub`` (``users/<id>``); no verification needed here."""
    payload = token.split(".")[1]
    claims = json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))
    return str(claims["sub"]).removeprefix("users/")


async def stdin_lines() -> asyncio.StreamReader:
    loop = asyncio.get_running_loop()
    reader = asyncio.StreamReader()
    await loop.connect_read_pipe(lambda: asyncio.StreamReaderProtocol(reader), sys.stdin)
    return reader


async def chat(args: argparse.Namespace) -> int:
    async with aiohttp.ClientSession() as http:
        headers, my_id = await login(http, args.url, args.user, args.password)
        async with http.ws_connect(args.url, headers=headers, protocols=(SUBPROTOCOL,)) as ws:
            subscribed = asyncio.Event()
            enough = asyncio.Event()  # --count lines received (or the socket closed)
            all_sent = asyncio.Event()  # every typed line confirmed by the node
            all_sent.set()
            pending = 0
            received = 0

            async def typing() -> None:
                nonlocal pending
                reader = await stdin_lines()
                await subscribed.wait()
                while line := await reader.readline():
                    text = line.decode().rstrip("\n")
                    if text:
                        pending += 1
                        all_sent.clear()
                        body = json.dumps({"from": args.user, "text": text})
                        await ws.send_str(f"/send/{args.to} {body}")
                await all_sent.wait()

            def confirmed() -> None:
                nonlocal pending
                pending -= 1
                if pending <= 0:
                    all_sent.set()

            async def listening() -> None:
                nonlocal received
                async for frame in ws:
                    if frame.type != aiohttp.WSMsgType.TEXT:
                        break
                    msg = json.loads(frame.data)
                    kind = msg["type"]
                    if kind == "subscribed":
                        print(f"# {args.user} is here; type to chat", file=sys.stderr)
                        subscribed.set()
                    elif kind == "message":
                        try:
                            line = json.loads(msg["message"])
                            print(f"{line['from']}: {line['text']}", flush=True)
                        except (ValueError, KeyError, TypeError):
                            print(f"?: {msg['message']}", flush=True)
                        await ws.send_str(f"/ack/{msg['queue']}/{msg['id']}")
                        received += 1
                        if args.count and received >= args.count:
                            enough.set()
                    elif kind == "sent":
                        confirmed()
                    elif kind == "error":
                        print(f"# error {msg['code']}: {msg.get('detail')}", file=sys.stderr)
                        if msg.get("queue") == args.to and pending:
                            confirmed()  # that line was refused (e.g. forbidden)
                enough.set()  # the socket closed: nothing more will come
                all_sent.set()

            sender = asyncio.create_task(typing())
            listener = asyncio.create_task(listening())
            await ws.send_str(f"/subscribe/{my_id}")  # my own queue: my id
            try:
                if args.count:
                    await enough.wait()
                    await sender  # what was typed still goes out before we leave
                else:
                    await listener
            finally:
                sender.cancel()
                listener.cancel()
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Two-person chat over wsmq.")
    parser.add_argument("--url", required=True, help="node WebSocket URL")
    parser.add_argument("--user", required=True)
    parser.add_argument("--password", required=True)
    parser.add_argument("--to", required=True, help="the other person's id (their queue)")
    parser.add_argument("--count", type=int, default=0, help="exit after N received lines")
    try:
        return asyncio.run(chat(parser.parse_args(argv)))
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main())
