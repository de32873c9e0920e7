"""Logging for wsmq: one line per event, optional JSON, secrets redacted, calm outages.

``configure_logging()`` installs one handler on the root logger carrying a
:class:`RedactingFilter`, so every record — from wsmq, aiohttp or the host app — has token-like
values masked in its message, its ``%`` arguments, its ``extra`` fields and its traceback
before it is formatted. What is masked:

* ``x-token``, ``x-access-token``, ``Authorization``, ``accessToken``, ``token``, ``password``
  and ``secret`` values in ``key: value`` / ``key=value`` / JSON / dict-repr form;
* ``/auth <x-token> <x-access-token>`` and ``/refresh <x-token>`` frames;
* anything that looks like a JWT (``eyJ...``);
* the excerpt aiohttp puts in its error for an over-long request line or header
  (``Got more than 8190 bytes when reading: b'<first 100 bytes of the value>...'``): a bare
  value, a cookie or token without its header name.

:class:`OutageLog` keeps a reconnect loop to one line when an outage starts, one per interval
while it lasts and one when it ends, however fast the loop retries: a Redis that does not answer
must not flood the log from every component that reconnects.

The gateway never logs message bodies (it logs queue names, ids and sizes), so payloads need no
redaction; a ``/send`` frame is never logged either.
"""

from __future__ import annotations

import datetime as _dt
import json as _json
import logging
import re
import sys
import time
from collections.abc import Callable, Mapping
from typing import IO, Final

__all__ = [
    "OUTAGE_REPORT_EVERY",
    "REDACTED",
    "JsonFormatter",
    "OutageLog",
    "RedactingFilter",
    "TextFormatter",
    "configure_logging",
    "redact",
]

REDACTED: Final = "[REDACTED]"

_SENSITIVE_KEYS = (
    r"x-access-token|x-token|x_access_token|x_token|authorization|access[-_]?token"
    r"|refresh[-_]?token|token|password|passwd|secret|cookie|set-cookie"
)
_SENSITIVE_KEY_RE: Final = re.compile(rf"(?i)^(?:{_SENSITIVE_KEYS})$")
_PATTERNS: Final = (
    # key: value, key=value, "key": "value", 'key': 'value' (value up to a delimiter);
    # an auth scheme (Bearer/Basic) before the value is kept, the credential is not.
    (
        re.compile(
            rf"(?i)(?<![A-Za-z0-9_-])((?:{_SENSITIVE_KEYS})[\"']?\s*[:=]\s*[\"']?"
            r"(?:(?:bearer|basic|jwt)\s+)?)[^\s\"',;&)}\]]+"
        ),
        rf"\1{REDACTED}",
    ),
    (re.compile(r"(/auth)(?:[ \t]+\S+){1,2}"), rf"\1 {REDACTED}"),
    (re.compile(r"(/refresh)[ \t]+\S+"), rf"\1 {REDACTED}"),
    (re.compile(r"eyJ[A-Za-z0-9_-]{4,}(?:\.[A-Za-z0-9_-]*){0,2}"), REDACTED),
    (re.compile(r"(Got more than \S+ bytes when reading: )[^\r\n]*"), rf"\1{REDACTED}"),
)
# What every pattern above needs somewhere in the text (a superset: case-insensitive, and any
# key word anywhere): text without any of these is returned as is, in one search instead of
# one per pattern. Every sensitive key contains token, authorization, passw, secret or cookie.
_MAY_NEED_REDACTION: Final = re.compile(
    r"(?i)token|authorization|passw|secret|cookie|/auth|/refresh|eyJ|Got more than"
)

# LogRecord attributes that are not user `extra` fields.
_RECORD_ATTRS: Final = frozenset(
    vars(logging.LogRecord("x", logging.INFO, "x", 0, "x", None, None))
) | {"message", "asctime", "taskName"}


def redact(text: str) -> str:
    """Mask token-like values in ``text`` (see the module docstring for what is masked)."""
    if _MAY_NEED_REDACTION.search(text) is None:
        return text
    for pattern, replacement in _PATTERNS:
        text = pattern.sub(replacement, text)
    return text


def _redact_value(value: object, depth: int = 0) -> object:
    if isinstance(value, str):
        return redact(value)
    if depth > 4:
        return value
    if isinstance(value, Mapping):
        return {
            k: REDACTED
            if isinstance(k, str) and _SENSITIVE_KEY_RE.match(k)
            else _redact_value(v, depth + 1)
            for k, v in value.items()
        }
    if isinstance(value, list | tuple):
        return type(value)(_redact_value(v, depth + 1) for v in value)
    return value


class RedactingFilter(logging.Filter):
    """Mask secrets in a record's message, args, ``extra`` fields and traceback.

    Attach it to handlers (logger filters do not see records propagated from child loggers).
    It never drops a record.
    """

    def filter(self, record: logging.LogRecord) -> bool:
        try:
            message = record.getMessage()
        except Exception:  # a bad format string must not hide the event
            message = f"{record.msg!r} {record.args!r}"
        record.msg = redact(message)
        record.args = None
        fields = vars(record)
        for key in fields.keys() - _RECORD_ATTRS:  # the `extra` fields only
            if _SENSITIVE_KEY_RE.match(key):
                fields[key] = REDACTED
            else:
                value = fields[key]
                # Numbers, None and the like need no look (the usual extras).
                if isinstance(value, str | Mapping | list | tuple):
                    fields[key] = _redact_value(value)
        if record.exc_info and not record.exc_text:
            record.exc_text = logging.Formatter().formatException(record.exc_info)
        if record.exc_text:
            record.exc_text = redact(record.exc_text)
        if record.stack_info:
            record.stack_info = redact(record.stack_info)
        return True


def _extras(record: logging.LogRecord) -> dict[str, object]:
    return {k: v for k, v in vars(record).items() if k not in _RECORD_ATTRS}


def _iso(created: float) -> str:
    stamp = _dt.datetime.fromtimestamp(created, tz=_dt.UTC)
    return stamp.isoformat(timespec="milliseconds").replace("+00:00", "Z")


class JsonFormatter(logging.Formatter):
    """One JSON object per line: ``ts``, ``level``, ``logger``, ``msg``, extras, ``exc``."""

    def format(self, record: logging.LogRecord) -> str:
        obj: dict[str, object] = {
            "ts": _iso(record.created),
            "level": record.levelname.lower(),
            "logger": record.name,
            "msg": record.getMessage(),
        }
        obj.update(_extras(record))
        if record.exc_info and not record.exc_text:
            record.exc_text = self.formatException(record.exc_info)
        if record.exc_text:
            obj["exc"] = record.exc_text
        if record.stack_info:
            obj["stack"] = record.stack_info
        return _json.dumps(obj, ensure_ascii=False, default=str, separators=(",", ":"))


class TextFormatter(logging.Formatter):
    """``TIME LEVEL logger message key=value...`` on one line (newlines escaped)."""

    def format(self, record: logging.LogRecord) -> str:
        parts = [_iso(record.created), record.levelname, record.name, record.getMessage()]
        parts += [f"{k}={v}" for k, v in _extras(record).items()]
        if record.exc_info and not record.exc_text:
            record.exc_text = self.formatException(record.exc_info)
        if record.exc_text:
            parts.append(f"exc={record.exc_text}")
        line = " ".join(str(p) for p in parts)
        return line.replace("\r", "\\r").replace("\n", "\\n")


class _WsmqHandler(logging.StreamHandler[IO[str]]):
    """Marker class so configure_logging() can replace its own handler only."""


def configure_logging(
    level: int | str = "INFO", json: bool = False, *, stream: IO[str] | None = None
) -> logging.Handler:
    """Send all logging to ``stream`` (stderr) as redacted one-line text or JSON.

    Safe to call again (replaces the handler it installed before, leaves others alone).
    Returns the installed handler.
    """
    root = logging.getLogger()
    for old in [h for h in root.handlers if isinstance(h, _WsmqHandler)]:
        root.removeHandler(old)
    handler = _WsmqHandler(stream if stream is not None else sys.stderr)
    handler.addFilter(RedactingFilter())
    handler.setFormatter(JsonFormatter() if json else TextFormatter())
    root.addHandler(handler)
    root.setLevel(level.upper() if isinstance(level, str) else level)
    return handler


#: Seconds between two "still failing" lines of one outage.
OUTAGE_REPORT_EVERY: Final = 60.0


class OutageLog:
    """The log of one component's reconnect loop (``what`` names it in every line).

    Call :meth:`failed` on every failed attempt and :meth:`recovered` once connected.
    """

    def __init__(
        self,
        logger: logging.Logger,
        what: str,
        *,
        every: float = OUTAGE_REPORT_EVERY,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.log = logger
        self.what = what
        self.every = every
        self.clock = clock
        self.down_since: float | None = None
        self.attempts = 0
        self._reported_at = 0.0

    def failed(self, reason: str, *, level: int = logging.WARNING, exc_info: bool = False) -> None:
        """One failed attempt: logged when it starts an outage or an interval has passed."""
        now = self.clock()
        self.attempts += 1
        if self.down_since is None:
            self.down_since = self._reported_at = now
            self.log.log(
                level,
                "%s: %s; retrying with backoff",
                self.what,
                reason,
                exc_info=exc_info,
                extra={"event": "outage_started"},
            )
            return
        if now - self._reported_at < self.every:
            return
        self._reported_at = now
        self.log.log(
            level,
            "%s: still failing after %.0f s (%d attempts; last: %s)",
            self.what,
            now - self.down_since,
            self.attempts,
            reason,
            exc_info=exc_info,
            extra={"event": "outage_ongoing"},
        )

    def recovered(self) -> None:
        """Connected: ends the outage (one line if there was one)."""
        if self.down_since is None:
            return
        self.log.warning(
            "%s: connected again after %.1f s (%d failed attempts)",
            self.what,
            self.clock() - self.down_since,
            self.attempts,
            extra={"event": "outage_ended"},
        )
        self.down_since = None
        self.attempts = 0
