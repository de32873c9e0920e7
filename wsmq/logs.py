"""Logging for wsmq: one line per event, optional JSON, secrets redacted.

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

The gateway never logs message bodies (it logs queue names, ids and sizes), so payloads need no
redaction; a ``/send`` frame is never logged either.
"""

from __future__ import annotations

import datetime as _dt
import json as _json
import logging
import re
import sys
from collections.abc import Mapping
from typing import IO, Any, Final

__all__ = [
    "REDACTED",
    "JsonFormatter",
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

# LogRecord attributes that are not user `extra` fields.
_RECORD_ATTRS: Final = frozenset(
    vars(logging.LogRecord("x", logging.INFO, "x", 0, "x", None, None))
) | {"message", "asctime", "taskName"}


def redact(text: str) -> str:
    """Mask token-like values in ``text`` (see the module docstring for what is masked)."""
    for pattern, replacement in _PATTERNS:
        text = pattern.sub(replacement, text)
    return text


def _redact_value(value: Any, depth: int = 0) -> Any:
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
        for key, value in list(vars(record).items()):
            if key in _RECORD_ATTRS:
                continue
            if _SENSITIVE_KEY_RE.match(key):
                setattr(record, key, REDACTED)
            else:
                setattr(record, key, _redact_value(value))
        if record.exc_info and not record.exc_text:
            record.exc_text = logging.Formatter().formatException(record.exc_info)
        if record.exc_text:
            record.exc_text = redact(record.exc_text)
        if record.stack_info:
            record.stack_info = redact(record.stack_info)
        return True


def _extras(record: logging.LogRecord) -> dict[str, Any]:
    return {k: v for k, v in vars(record).items() if k not in _RECORD_ATTRS}


def _iso(created: float) -> str:
    stamp = _dt.datetime.fromtimestamp(created, tz=_dt.UTC)
    return stamp.isoformat(timespec="milliseconds").replace("+00:00", "Z")


class JsonFormatter(logging.Formatter):
    """One JSON object per line: ``ts``, ``level``, ``logger``, ``msg``, extras, ``exc``."""

    def format(self, record: logging.LogRecord) -> str:
        obj: dict[str, Any] = {
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


class _WsmqHandler(logging.StreamHandler):  # type: ignore[type-arg]
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
