"""The gateway's one logger, and the per-connection view of it (:class:`ConnectionLog`).

Every record of the package carries an ``event`` key; a connection's records also carry the
``peer`` and the ``user`` (``None`` before authentication), which the JSON and text formatters
of :mod:`wsmq.logs` print as fields, through its redaction like any other extra.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, MutableMapping

__all__ = ["ConnectionLog", "log"]

log = logging.getLogger("wsmq.gateway")


class ConnectionLog(logging.LoggerAdapter[logging.Logger]):
    """The gateway logger with one connection's ``peer`` and ``user`` in every record.

    Made when a line is logged (a socket that logs nothing pays nothing), so ``user`` is the
    one authenticated at that moment. The call's own ``extra`` keys win over these.
    """

    def __init__(self, peer: str, user: str | None) -> None:
        super().__init__(log, {"peer": peer, "user": user})

    def process(
        self, msg: object, kwargs: MutableMapping[str, object]
    ) -> tuple[object, MutableMapping[str, object]]:
        extra = kwargs.get("extra")
        extra = extra if isinstance(extra, Mapping) else None
        fields = self.extra or {}
        kwargs["extra"] = {**fields, **extra} if extra else fields
        return msg, kwargs
