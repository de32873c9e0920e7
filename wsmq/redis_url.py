"""Redis URLs, parsed and validated without any I/O (used by :mod:`wsmq.connections`).

Forms: ``redis://``, ``rediss://``, ``unix://``, ``redis+sentinel://``/``rediss+sentinel://``
(``hosts/service[/db]``) and ``redis+cluster://``/``rediss+cluster://`` (several hosts);
see ``docs/scaleout.md``.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Literal, TypeAlias
from urllib.parse import parse_qsl, unquote

from wsmq.errors import WsmqError

__all__ = [
    "DEFAULT_PORT",
    "DEFAULT_SENTINEL_PORT",
    "Kind",
    "RedisTarget",
    "RedisUrlError",
    "parse_redis_url",
]

Kind = Literal["standalone", "unix", "sentinel", "cluster"]
DEFAULT_PORT = 6379
DEFAULT_SENTINEL_PORT = 26379
# Query options accepted in URLs, with their converters; anything else is a typo to report.
_BOOL_TRUE = {"1", "true", "yes", "on"}
_BOOL_FALSE = {"0", "false", "no", "off"}
_STR_OPTIONS = {
    "ssl_ca_certs",
    "ssl_certfile",
    "ssl_keyfile",
    "ssl_cert_reqs",
    "client_name",
    "sentinel_username",
    "sentinel_password",
}
_BOOL_OPTIONS = {"ssl_check_hostname"}
_FLOAT_OPTIONS = {"socket_timeout", "socket_connect_timeout", "health_check_interval"}
_INT_OPTIONS = {"db", "max_connections"}
_SCHEMES: dict[str, tuple[Kind, bool]] = {
    "redis": ("standalone", False),
    "rediss": ("standalone", True),
    "unix": ("unix", False),
    "redis+sentinel": ("sentinel", False),
    "rediss+sentinel": ("sentinel", True),
    "redis+cluster": ("cluster", False),
    "rediss+cluster": ("cluster", True),
}
_URL_RE = re.compile(r"^(?P<scheme>[A-Za-z][A-Za-z0-9+.-]*)://(?P<rest>.*)$", re.S)
_HOST_RE = re.compile(r"^(?:\[(?P<v6>[0-9A-Fa-f:.]+)\]|(?P<name>[^:\[\]]+))(?::(?P<port>\d*))?$")


class RedisUrlError(WsmqError, ValueError, code="invalid_redis_url"):
    """A Redis URL could not be understood; the message says which part and why."""


#: A URL query option's value, converted to the option's type (see :func:`parse_redis_url`).
UrlOption: TypeAlias = str | bool | int | float


@dataclass(frozen=True, slots=True)
class RedisTarget:
    """Everything a Redis URL says, parsed and validated, without connecting.

    ``hosts`` holds one entry for standalone, the sentinels for Sentinel and the startup nodes
    for Cluster; ``path`` is the socket of a ``unix://`` URL.
    """

    kind: Kind
    hosts: tuple[tuple[str, int], ...] = ()
    path: str | None = None
    db: int = 0
    username: str | None = None
    password: str | None = None
    tls: bool = False
    service_name: str | None = None
    options: dict[str, UrlOption] = field(default_factory=dict)

    def redacted(self) -> str:
        """A loggable description (never the password)."""
        where = self.path or ",".join(f"{h}:{p}" for h, p in self.hosts)
        auth = f"{self.username or ''}:***@" if self.password else ""
        svc = f"/{self.service_name}" if self.service_name else ""
        return f"{self.kind}{'+tls' if self.tls else ''}://{auth}{where}{svc}/{self.db}"


def _parse_host(text: str, default_port: int, url_kind: str) -> tuple[str, int]:
    match = _HOST_RE.match(text)
    if not match:
        raise RedisUrlError(f"invalid host {text!r} in {url_kind} URL")
    host = match["v6"] or unquote(match["name"])
    port_text = match["port"]
    if port_text is None or port_text == "":
        return host, default_port
    port = int(port_text)
    if not 0 < port < 65536:
        raise RedisUrlError(f"port {port} out of range 1..65535")
    return host, port


def _parse_options(query: str) -> dict[str, UrlOption]:
    options: dict[str, UrlOption] = {}
    for key, value in parse_qsl(query, keep_blank_values=True, strict_parsing=False):
        try:
            if key in _STR_OPTIONS:
                options[key] = value
            elif key in _BOOL_OPTIONS:
                low = value.lower()
                if low not in _BOOL_TRUE | _BOOL_FALSE:
                    raise ValueError(value)
                options[key] = low in _BOOL_TRUE
            elif key in _FLOAT_OPTIONS:
                options[key] = float(value)
            elif key in _INT_OPTIONS:
                options[key] = int(value)
            else:
                known = sorted(_STR_OPTIONS | _BOOL_OPTIONS | _FLOAT_OPTIONS | _INT_OPTIONS)
                raise RedisUrlError(f"unknown URL option {key!r} (known: {', '.join(known)})")
        except ValueError as exc:
            if isinstance(exc, RedisUrlError):
                raise
            raise RedisUrlError(f"invalid value {value!r} for URL option {key!r}") from None
    if "ssl_cert_reqs" in options and options["ssl_cert_reqs"] not in (
        "none",
        "optional",
        "required",
    ):
        raise RedisUrlError("ssl_cert_reqs must be none, optional or required")
    return options


def _parse_db(text: str) -> int:
    if not text.isdigit():
        raise RedisUrlError(f"database must be a number, got {text!r}")
    return int(text)


def parse_redis_url(url: str, *, cluster: bool = False) -> RedisTarget:
    """Parse ``url`` into a :class:`RedisTarget` (pure; raises :class:`RedisUrlError`).

    ``cluster=True`` turns a ``redis://``/``rediss://`` URL into a cluster target (several
    comma-separated startup nodes are allowed then).
    """
    if not isinstance(url, str) or not url:
        raise RedisUrlError("Redis URL must be a non-empty string")
    match = _URL_RE.match(url.strip())
    if not match:
        raise RedisUrlError("Redis URL must look like scheme://...; e.g. redis://localhost:6379/0")
    scheme = match["scheme"].lower()
    if scheme not in _SCHEMES:
        raise RedisUrlError(
            f"unsupported Redis URL scheme {scheme!r} (use one of {', '.join(_SCHEMES)})"
        )
    kind, tls = _SCHEMES[scheme]
    if cluster and kind == "standalone":
        kind = "cluster"
    elif cluster and kind != "cluster":
        raise RedisUrlError(f"cluster=True cannot be combined with a {scheme}:// URL")
    rest = match["rest"]
    rest = rest.partition("#")[0]
    rest, _, query = rest.partition("?")
    options = _parse_options(query)
    # The netloc ends at the first "/"; credentials end at the last "@" before it (passwords
    # must percent-encode "/" anyway, "@" is tolerated).
    netloc, slash, path = rest.partition("/")
    username: str | None = None
    password: str | None = None
    if "@" in netloc:
        creds, _, netloc = netloc.rpartition("@")
        user_text, colon, pass_text = creds.partition(":")
        username = unquote(user_text) or None
        password = unquote(pass_text) if colon else None
        if not colon and user_text:
            # redis://secret@host: a lone token is the password (Redis AUTH <password>).
            username, password = None, unquote(user_text)
    db = int(options.pop("db", 0))  # an int already (_INT_OPTIONS)
    if kind == "unix":
        if netloc:
            raise RedisUrlError("unix:// URL needs an absolute path: unix:///path/to/redis.sock")
        if not path:
            raise RedisUrlError("unix:// URL has no socket path")
        return RedisTarget(
            kind, (), "/" + unquote(path), db, username, password, tls, None, options
        )
    if not netloc:
        raise RedisUrlError(f"{scheme}:// URL has no host")
    host_texts = netloc.split(",")
    if kind == "standalone" and len(host_texts) > 1:
        raise RedisUrlError(
            "several hosts need redis+sentinel:// or redis+cluster:// (or cluster=True)"
        )
    default_port = DEFAULT_SENTINEL_PORT if kind == "sentinel" else DEFAULT_PORT
    hosts = tuple(_parse_host(h, default_port, scheme) for h in host_texts if h)
    if not hosts:
        raise RedisUrlError(f"{scheme}:// URL has no host")
    parts = [p for p in path.split("/") if p] if slash else []
    service: str | None = None
    if kind == "sentinel":
        if not parts:
            raise RedisUrlError(
                "redis+sentinel:// URL needs the service name: "
                "redis+sentinel://host:26379[,host:port]/mymaster[/db]"
            )
        service = unquote(parts.pop(0))
    if len(parts) > 1:
        raise RedisUrlError(f"unexpected path {path!r} in {scheme}:// URL")
    if parts:
        db = _parse_db(parts[0])
    if kind == "cluster" and db != 0:
        raise RedisUrlError("Redis Cluster has only database 0")
    return RedisTarget(kind, hosts, None, db, username, password, tls, service, options)
