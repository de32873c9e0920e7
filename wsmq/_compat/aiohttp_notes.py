"""The one note for an installed aiohttp that a fast path or guard was not read against.

Kept apart from the registry so the layers below the gateway (queue, realtime, engine) can use
``wsmq._compat`` without importing aiohttp.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence

import aiohttp

__all__ = ["note_unverified_aiohttp"]


def note_unverified_aiohttp(
    log: logging.Logger, verified: Sequence[str], what: str, consequence: str, event: str
) -> None:
    """Say (INFO) that the installed aiohttp is not among the ``verified`` versions read for
    ``what``, and the ``consequence``; callers say it once per process."""
    log.info(
        "aiohttp %s is not among the versions checked for %s (%s): %s",
        aiohttp.__version__,
        what,
        ", ".join(v + "x" for v in verified),
        consequence,
        extra={"event": event},
    )
