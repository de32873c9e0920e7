"""``wsmq demo``: one command that starts a private stack (coming soon)."""

from __future__ import annotations

import argparse
from typing import Any


def _demo(args: argparse.Namespace) -> int:
    print("wsmq demo: coming soon (see README.md: the demo issue is in progress)")
    return 0


def register(subparsers: argparse._SubParsersAction[Any]) -> None:
    parser = subparsers.add_parser("demo", help="start a private demo stack (coming soon)")
    parser.set_defaults(func=_demo)
