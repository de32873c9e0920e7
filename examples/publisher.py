"""Publish messages to a wsmq queue from Python (no server needed: straight into Redis).

    python examples/publisher.py QNAME "hello" "world" --redis-url redis://127.0.0.1:6379/0

One-off sends use ``wsmq.send_message``; many sends share one connection pool through a
``Queues`` object. Either way the message is in Redis (durable) when the call returns, and
subscribers on any node are woken at once by the realtime notification.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys

from wsmq import Queues, send_message
from wsmq.queue import QueueError


async def publish(redis_url: str, qname: str, messages: list[str], create: bool) -> list[str]:
    """Send ``messages`` to ``qname``; returns their ids in order."""
    if len(messages) == 1:
        # The one-liner: opens a connection, sends, closes.
        return [await send_message(qname, messages[0], redis_url=redis_url, create=create)]
    queues = Queues.from_url(redis_url)  # one pool for many sends
    try:
        if create and not await queues.queue_exists(qname):
            await queues.create_queue(qname)
        return [await queues.send_message(qname, body) for body in messages]
    finally:
        await queues.close()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Publish messages to a wsmq (RSMQ) queue.")
    parser.add_argument("qname", help="queue name (a user's id is that user's own queue)")
    parser.add_argument("messages", nargs="+", metavar="MESSAGE", help="message bodies")
    parser.add_argument("--redis-url", default="redis://127.0.0.1:6379/0")
    parser.add_argument("--create", action="store_true", help="create the queue if missing")
    args = parser.parse_args(argv)
    try:
        ids = asyncio.run(publish(args.redis_url, args.qname, args.messages, args.create))
    except QueueError as exc:  # e.g. queueNotFound: the queue must exist (or pass --create)
        print(json.dumps({"error": exc.name, "message": str(exc)}), file=sys.stderr)
        return 1
    for msg_id in ids:
        print(json.dumps({"queue": args.qname, "id": msg_id}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
