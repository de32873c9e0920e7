"""Every setting of a wsmq node, in one dataclass.

Settings come from four sources, highest precedence first: command-line flags, ``WSMQ_*``
environment variables (``--redis-url`` is ``WSMQ_REDIS_URL``), a TOML file (``--config``, keys
named as the fields, optionally under a ``[wsmq]`` table) and the defaults below.

Each field carries its help text in ``metadata["help"]``; the CLI builds its flags from it and
:func:`render_markdown` generates ``docs/configuration.md``, so the three never disagree.
"""

from __future__ import annotations

import dataclasses
import os
import tomllib
import typing
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Final, TypedDict, TypeVar, cast

from wsmq.errors import ConfigError
from wsmq.settings_values import base_type, coerce

if TYPE_CHECKING:
    from wsmq.auth.config import AuthConfig
    from wsmq.auth.limiter import AuthLimits
    from wsmq.protocol.session import SessionLimits

__all__ = [
    "ENV_PREFIX",
    "EngineOptions",
    "QueueOptions",
    "Settings",
    "SettingsError",
    "render_markdown",
]

ENV_PREFIX: Final = "WSMQ_"


#: The name settings code has always used for :class:`wsmq.errors.ConfigError`.
SettingsError = ConfigError


T = TypeVar("T")


def _opt(default: T, help: str, group: str = "server", *, secret: bool = False) -> T:
    """A dataclass field with its documentation attached (typed as its default, as
    ``dataclasses.field`` is)."""
    meta = {"help": help, "secret": secret, "group": group}
    if isinstance(default, list | tuple):
        value = tuple(default)
        return cast(T, field(default_factory=lambda: value, metadata=meta))
    return field(default=default, metadata=meta)


class QueueOptions(TypedDict):
    """What the settings say about a node's queue client (see :meth:`Settings.queue_options`)."""

    ns: str
    max_connections: int


class EngineOptions(TypedDict):
    """What the settings say about delivery (see :meth:`Settings.engine_options`)."""

    poll_interval: float
    batch_size: int
    max_outbox_bytes: int
    stop_timeout: float
    device_retention: float
    max_devices_per_queue: int
    handoff: bool


@dataclass(frozen=True)
class Settings:
    """Configuration of one wsmq node (immutable; build a changed copy with ``replace()``)."""

    # -- network -------------------------------------------------------------------------
    host: str = _opt("127.0.0.1", "Interface to listen on (0.0.0.0 for every interface).")
    port: int = _opt(8080, "TCP port to listen on (0 picks a free port).")
    path: str = _opt("/", "URL path of the WebSocket endpoint.")
    public_url: str | None = _opt(
        None,
        "URL clients use to reach this node (`wss://mq.example.com/`): logs, the handle's "
        "`url`, and the origin browsers may connect from when `allowed_origins` is empty.",
    )
    # -- redis ---------------------------------------------------------------------------
    redis_url: str = _opt(
        "redis://127.0.0.1:6379/0",
        "Redis URL: redis://, rediss:// (TLS), unix://, user:password@ (ACL), "
        "redis+sentinel://h1,h2/service, redis+cluster://h1,h2 (see docs/scaleout.md).",
        group="redis",
    )
    ns: str = _opt("rsmq", "RSMQ namespace: key prefix shared with rsmq publishers.", group="redis")
    redis_pool_size: int = _opt(
        256,
        "Redis connections per node for queue commands; more concurrent commands wait for a "
        "free one (up to 10 s). Size it for busy nodes with many queues.",
        group="redis",
    )
    create_queues: bool = _opt(
        True, "Create a missing queue when a client subscribes to it.", group="redis"
    )
    default_vt: int = _opt(
        30, "Visibility timeout (s) of queues created on subscribe.", group="redis"
    )
    # -- users and tokens ----------------------------------------------------------------
    mongo_url: str | None = _opt(None, "MongoDB URL of the user store.", group="auth")
    mongo_database: str | None = _opt(
        None, "MongoDB database (default: the one in the URL, else `wsmq`).", group="auth"
    )
    users_file: str | None = _opt(
        None, "JSON users file (embedded store; used when no MongoDB URL is set).", group="auth"
    )
    secret: str | None = _opt(
        None, "Secret key signing and verifying x-token JWTs (HS*).", secret=True, group="auth"
    )
    algorithm: str = _opt("HS256", "JWT algorithm, never read from the token.", group="auth")
    token_ttl: int = _opt(900, "Lifetime (s) of issued x-tokens.", group="auth")
    leeway: int = _opt(
        5, "Clock skew (s) tolerated when checking `exp`/`iat` (max 5).", group="auth"
    )
    issuer: str | None = _opt(None, "Required `iss` claim, when set.", group="auth")
    audience: str | None = _opt(None, "Required `aud` claim, when set.", group="auth")
    previous_secret: str | None = _opt(
        None, "Old secret still accepted during a key rotation.", secret=True, group="auth"
    )
    previous_secret_until: float | None = _opt(
        None, "Epoch seconds after which `previous_secret` is refused.", group="auth"
    )
    private_key_file: str | None = _opt(
        None, "PEM private key for RS256/ES256/EdDSA signing.", group="auth"
    )
    public_key_file: str | None = _opt(
        None,
        "PEM public key for RS256/ES256/EdDSA verification; its type must fit `algorithm`.",
        group="auth",
    )
    jwks_url: str | None = _opt(
        None,
        "An identity provider's JWKS URL: x-tokens whose header names a `kid` are checked with "
        "that key (RS256 for RSA, ES256 for EC P-256, EdDSA for Ed25519; the algorithm is "
        "pinned by the key type). https:// only, except to loopback or with `jwks_allow_http`. "
        "Without `secret`/`private_key_file` the node issues no tokens (no /auth/login, "
        "/auth/token).",
        group="auth",
    )
    jwks_min_refetch_interval: float = _opt(
        60.0,
        "Seconds between JWKS fetches caused by tokens naming an unknown `kid`, and between "
        "retries while the JWKS is unreachable (cached keys keep working).",
        group="auth",
    )
    jwks_cache_ttl: float = _opt(
        600.0, "Age (s) after which the JWKS is re-fetched in the background.", group="auth"
    )
    jwks_timeout: float = _opt(5.0, "Seconds one JWKS fetch may take.", group="auth")
    jwks_allow_http: bool = _opt(
        False, "Accept an http:// `jwks_url` on a non-loopback host (insecure).", group="auth"
    )
    legacy_tokens2: bool = _opt(
        False, "Also accept the original's tokens2 access tokens (migration only).", group="auth"
    )
    auth_routes: bool = _opt(
        True, "Serve POST /auth/login, /auth/token and /auth/logout.", group="auth"
    )
    expiry_warning: float = _opt(
        60.0,
        "Seconds before the x-token's `exp` a wsmq.v1 client gets an `expiring` frame "
        "(at most half the token's lifetime left when it was accepted or refreshed).",
        group="auth",
    )
    auth_deadline: float = _opt(
        5.0, "Seconds a socket without header tokens has to send `/auth` (else 4408).", group="auth"
    )
    allow_query_token: bool = _opt(
        False,
        "Accept tokens in the query string (?x-token=&x-access-token=); they leak into logs.",
        group="auth",
    )
    allowed_origins: tuple[str, ...] = _opt(
        (),
        "Origins browsers may connect from (comma-separated; `*` = any), compared as scheme, "
        "host and port. Empty: same origin only (`public_url`'s; without it, an IP or "
        "`localhost` Host). Clients without an Origin header are not browsers and are allowed.",
        group="auth",
    )
    trusted_proxies: tuple[str, ...] = _opt(
        (),
        "Addresses of reverse proxies (comma-separated IPs) whose X-Forwarded-For header gives "
        "the client address for login rate limits, and whose X-Forwarded-Proto the scheme for "
        "the Origin check. Empty: the peer address is the client.",
        group="auth",
    )
    auth_attempts_per_ip: int = _opt(
        50,
        "Requests to /auth/login, /auth/token and /auth/logout per client address per "
        "`auth_window` (sliding, all nodes together); more get 429 with Retry-After.",
        group="auth",
    )
    auth_window: float = _opt(60.0, "Window (s) of the auth endpoints' rate limits.", group="auth")
    auth_user_free_failures: int = _opt(
        10,
        "Failed auth attempts per user per `auth_window` before that user's attempts slow "
        "down (0.25 s, doubling with each further failure).",
        group="auth",
    )
    auth_user_max_delay: float = _opt(
        5.0, "Longest slowdown (s) of one user's auth attempts.", group="auth"
    )
    auth_user_lockout: int = _opt(
        0,
        "Failed attempts per user per `auth_window` after which that user's attempts get 429 "
        "(0 = never: slow down only; a lock-out lets anyone lock a user out).",
        group="auth",
    )
    # -- delivery ------------------------------------------------------------------------
    window: int = _opt(
        200,
        "Messages per subscription in flight: unacknowledged (wsmq.v1), or taken from Redis "
        "and not yet written (legacy). Two receive batches, so one is fetched while the other "
        "is written.",
        group="delivery",
    )
    write_buffer_limit: int = _opt(
        1 << 20,
        "Bytes queued on a socket, or taken from Redis for one of its subscriptions and not "
        "yet written, after which no more is taken from Redis for it.",
        "delivery",
    )
    poll_interval: float = _opt(
        1.0, "Fallback poll (s) for publishers that do not notify.", group="delivery"
    )
    batch_size: int = _opt(100, "Messages taken from Redis per round trip.", group="delivery")
    device_retention: float = _opt(
        604_800.0,
        "Seconds a device inbox (`/subscribe/<q> device=<id>`) is kept after the device was "
        "last seen; then it is removed with its messages. A device in use is never removed.",
        group="delivery",
    )
    max_devices_per_queue: int = _opt(
        1000,
        "Most devices one queue may have: each stores its own copy of every message, so a "
        "client inventing device ids would otherwise multiply every publish. A new device "
        "beyond it is refused (`too_many_devices`); `/leave` or the retention frees a place. "
        "0 = no limit.",
        group="delivery",
    )
    handoff: bool = _opt(
        True,
        "Let a send hand its message straight to this node when one of its consumers is "
        "waiting on the queue: one Redis round trip less per idle message (docs/delivery.md, "
        "Hand-off). RSMQ's key layout only (not on a Redis Cluster). Off: every message "
        "waits for the realtime notification and a receive.",
        group="delivery",
    )
    group_copier: bool = _opt(
        True,
        "Run this node's group copier (copies messages sent to a group into its member "
        "queues; docs/delivery.md, Groups). Turn it off on nodes that should not copy; "
        "at least one node, or a `GroupCopier` elsewhere, must run one.",
        group="delivery",
    )
    max_extend: int = _opt(
        43_200,
        "Longest `/extend` (s) a wsmq.v1 client may ask for at once: how long one held "
        "message can stay hidden past each extend.",
        group="delivery",
    )
    # -- limits --------------------------------------------------------------------------
    max_frame_size: int = _opt(65536, "Largest client frame (bytes); bigger closes 1009.", "limits")
    compress: bool = _opt(False, "Offer permessage-deflate.", group="limits")
    heartbeat: float = _opt(
        20.0, "Ping a socket silent this long (s); drop it unanswered after half of it.", "limits"
    )
    rate_limit: float = _opt(100.0, "Client frames per second per connection.", group="limits")
    rate_burst: int = _opt(200, "Burst of frames allowed above `rate_limit` (else 4429).", "limits")
    max_subscriptions: int = _opt(32, "Subscriptions per connection.", group="limits")
    max_header_size: int = _opt(
        8190, "Largest HTTP header line of the handshake (bytes).", "limits"
    )
    max_connections: int = _opt(0, "Open WebSockets per node (0 = unlimited).", group="limits")
    max_connections_per_user: int = _opt(
        32,
        "Open WebSockets of one user on this node (0 = unlimited); more get HTTP 429 "
        "(4429 after first-message `/auth`).",
        group="limits",
    )
    header_timeout: float = _opt(
        5.0,
        "Seconds a new TCP connection has to send its request line and headers (else closed).",
        group="limits",
    )
    max_http_connections: int = _opt(
        1024,
        "TCP connections per node not (yet) WebSockets: handshakes in progress, HTTP requests "
        "and keep-alive connections; more get 503 at once (0 = unlimited). At most a quarter "
        "of the open-file limit.",
        group="limits",
    )
    # -- operations ----------------------------------------------------------------------
    shutdown_timeout: float = _opt(
        10.0, "Seconds a graceful shutdown may take before sockets are cut.", group="ops"
    )
    log_level: str = _opt("info", "debug, info, warning or error.", group="ops")
    log_json: bool = _opt(False, "Write logs as one JSON object per line.", group="ops")
    metrics: bool = _opt(True, "Serve Prometheus metrics on GET /metrics.", group="ops")
    fast_paths: bool = _opt(
        True,
        "Use the fast paths that reach into aiohttp/redis-py internals on the versions they "
        "were read against (`wsmq serve` logs which), and the HMAC x-token check of "
        "docs/auth.md; off: public APIs and pyjwt only, process-wide.",
        group="ops",
    )
    gc_tuning: bool = _opt(
        True,
        "`wsmq serve` only (it owns its process): after start-up, move what exists out of the "
        "garbage collector's reach (`gc.freeze()`) and collect the young generation every "
        "10,000 allocations instead of 700 (handshake CPU); off: CPython's defaults.",
        group="ops",
    )
    routes_prefix: str = _opt(
        "",
        "URL path prefix of /healthz, /readyz, /metrics and /auth/* (e.g. `/wsmq` when "
        "mounted on a host app whose own routes use those paths).",
        group="ops",
    )

    # -- HTTP API (docs/api.md) -------------------------------------------------------------
    api: bool = _opt(
        True,
        "Serve the HTTP API under `/api/` (queues, messages, nodes; see docs/api.md). Every "
        "request needs an API key (`wsmq apikey add`): without one it answers 401.",
        group="api",
    )
    api_rate_limit: int = _opt(
        600, "Requests per minute per API key (as many may come at once); more get 429.", "api"
    )
    api_max_body: int = _opt(
        1_048_576, "Largest request body of the HTTP API in bytes; larger get 413.", "api"
    )
    api_body_timeout: float = _opt(
        10.0,
        "Seconds the HTTP API waits for a whole request body; a slower one gets 408 "
        "`body_timeout` (a key holder trickling bytes cannot hold a connection).",
        "api",
    )
    api_max_batch: int = _opt(1000, "Most messages one publish request may carry (1..1000).", "api")
    api_idempotency_window: int = _opt(
        3600,
        "Seconds a publish's `Idempotency-Key` is remembered: a replay within it returns the "
        "first ids and stores nothing.",
        "api",
    )
    api_peek_chars: int = _opt(
        1024, "Characters of each message body `GET .../messages?peek=N` shows at most.", "api"
    )
    node_announce_interval: float = _opt(
        5.0,
        "Seconds between a node's announcements in Redis (`GET /api/nodes`); a node silent "
        "for three intervals is gone from the list.",
        "api",
    )
    rate_sample_interval: float = _opt(
        10.0,
        "Seconds between the samples of the queues' sent/received counters behind "
        "`GET /api/queues/{q}/rates` (kept 15 minutes, in memory, per node); one read per "
        "queue per sample, so raise it with very many queues. 0: no rates.",
        "api",
    )

    def __post_init__(self) -> None:
        for f in dataclasses.fields(self):
            object.__setattr__(self, f.name, coerce(f.name, _field_type(f), getattr(self, f.name)))
        self._validate()

    def _validate(self) -> None:
        checks: list[tuple[str, bool, str]] = [
            ("port", 0 <= self.port <= 65535, "must be 0..65535"),
            ("path", self.path.startswith("/"), "must start with /"),
            (
                "routes_prefix",
                self.routes_prefix == ""
                or (self.routes_prefix.startswith("/") and not self.routes_prefix.endswith("/")),
                "must be empty or start with / and not end with /",
            ),
            ("leeway", 0 <= self.leeway <= 5, "must be 0..5"),
            ("default_vt", 0 <= self.default_vt <= 9_999_999, "must be 0..9999999"),
            ("window", self.window >= 1, "must be >= 1"),
            ("batch_size", self.batch_size >= 1, "must be >= 1"),
            ("max_extend", 1 <= self.max_extend <= 9_999_999, "must be 1..9999999"),
            ("write_buffer_limit", self.write_buffer_limit >= 1024, "must be >= 1024"),
            ("max_frame_size", self.max_frame_size >= 256, "must be >= 256"),
            ("rate_limit", self.rate_limit > 0, "must be > 0"),
            ("rate_burst", self.rate_burst >= 1, "must be >= 1"),
            ("max_subscriptions", self.max_subscriptions >= 1, "must be >= 1"),
            ("max_header_size", self.max_header_size >= 1024, "must be >= 1024"),
            ("poll_interval", self.poll_interval > 0, "must be > 0"),
            ("device_retention", self.device_retention > 0, "must be > 0"),
            ("max_devices_per_queue", self.max_devices_per_queue >= 0, "must be >= 0"),
            ("auth_deadline", self.auth_deadline > 0, "must be > 0"),
            (
                "jwks_min_refetch_interval",
                0 < self.jwks_min_refetch_interval <= 86_400,
                "must be > 0 and <= 86400",
            ),
            (
                "jwks_cache_ttl",
                self.jwks_min_refetch_interval <= self.jwks_cache_ttl <= 7 * 86_400,
                "must be >= jwks_min_refetch_interval and <= 604800",
            ),
            ("jwks_timeout", 0 < self.jwks_timeout <= 60, "must be > 0 and <= 60"),
            ("auth_attempts_per_ip", self.auth_attempts_per_ip >= 1, "must be >= 1"),
            ("auth_window", 1 <= self.auth_window <= 86_400, "must be 1..86400"),
            ("auth_user_free_failures", self.auth_user_free_failures >= 1, "must be >= 1"),
            ("auth_user_max_delay", 0 <= self.auth_user_max_delay <= 60, "must be 0..60"),
            ("auth_user_lockout", self.auth_user_lockout >= 0, "must be >= 0"),
            ("shutdown_timeout", self.shutdown_timeout >= 0, "must be >= 0"),
            ("heartbeat", self.heartbeat >= 0, "must be >= 0 (0 disables)"),
            ("max_connections", self.max_connections >= 0, "must be >= 0"),
            ("redis_pool_size", self.redis_pool_size >= 1, "must be >= 1"),
            ("max_connections_per_user", self.max_connections_per_user >= 0, "must be >= 0"),
            ("header_timeout", self.header_timeout > 0, "must be > 0"),
            ("max_http_connections", self.max_http_connections >= 0, "must be >= 0"),
            ("expiry_warning", self.expiry_warning >= 0, "must be >= 0"),
            ("api_rate_limit", self.api_rate_limit >= 1, "must be >= 1"),
            ("api_max_body", self.api_max_body >= 1024, "must be >= 1024"),
            ("api_body_timeout", self.api_body_timeout > 0, "must be > 0"),
            ("api_max_batch", 1 <= self.api_max_batch <= 1000, "must be 1..1000"),
            ("api_idempotency_window", self.api_idempotency_window >= 1, "must be >= 1"),
            ("api_peek_chars", self.api_peek_chars >= 1, "must be >= 1"),
            ("node_announce_interval", self.node_announce_interval > 0, "must be > 0"),
            ("rate_sample_interval", self.rate_sample_interval >= 0, "must be >= 0 (0: off)"),
            (
                "log_level",
                self.log_level.lower() in {"debug", "info", "warning", "error"},
                "must be debug, info, warning or error",
            ),
        ]
        for name, ok, message in checks:
            if not ok:
                raise SettingsError(name, message)

    # -- construction ----------------------------------------------------------------------
    @classmethod
    def field_names(cls) -> tuple[str, ...]:
        """Names of all settings, in declaration order."""
        return tuple(f.name for f in dataclasses.fields(cls))

    @classmethod
    def from_sources(
        cls,
        flags: Mapping[str, object] | None = None,
        env: Mapping[str, str] | None = None,
        toml_path: str | os.PathLike[str] | None = None,
    ) -> Settings:
        """Merge settings: ``flags`` > ``WSMQ_*`` in ``env`` > TOML file > defaults.

        ``flags`` values that are ``None`` count as "not given" (argparse's default).
        Unknown TOML keys raise :class:`SettingsError` (a typo should not pass silently).
        """
        env = os.environ if env is None else env
        names = set(cls.field_names())
        values: dict[str, Any] = {}
        if toml_path is not None:
            values.update(load_toml(toml_path))
        for name in names:
            raw = env.get(ENV_PREFIX + name.upper())
            if raw is not None:
                values[name] = raw
        for name, value in (flags or {}).items():
            if name in names and value is not None:
                values[name] = value
        return cls(**values)

    def replace(self, **changes: Any) -> Settings:
        """A copy with some settings changed (validated like the original)."""
        unknown = set(changes) - set(self.field_names())
        if unknown:
            raise SettingsError(sorted(unknown)[0], "unknown setting")
        return dataclasses.replace(self, **changes)

    def redacted(self) -> dict[str, Any]:
        """All settings as a dict with secrets masked (safe to log)."""
        out: dict[str, Any] = {}
        for f in dataclasses.fields(self):
            value = getattr(self, f.name)
            if f.metadata.get("secret") and value:
                value = "***"
            elif f.name in {"redis_url", "mongo_url"} and value:
                value = _redact_url(str(value))
            out[f.name] = value
        return out

    # -- views: each subsystem's configuration, built from these settings only -------------
    # Imported when called: `import wsmq.settings` stays cheap, and no subsystem imports this
    # module at run time, so its defaults cannot drift from the ones here.
    def session_limits(self) -> SessionLimits:
        """Per-connection limits of the protocol session."""
        from wsmq.protocol.session import SessionLimits

        return SessionLimits(
            max_subscriptions=self.max_subscriptions,
            rate=self.rate_limit,
            burst=float(self.rate_burst),
            auth_timeout=self.auth_deadline,
            expiring_warning=self.expiry_warning,
            max_frame_size=self.max_frame_size,
            max_extend=self.max_extend,
        )

    def auth_config(self) -> AuthConfig | None:
        """Token settings, or ``None`` when no key (secret, key files, JWKS) is configured."""
        from wsmq.auth.config import AuthConfig

        if not (self.secret or self.public_key_file or self.private_key_file or self.jwks_url):
            return None
        return AuthConfig(
            secret=self.secret,
            algorithm=self.algorithm,
            ttl=self.token_ttl,
            leeway=float(self.leeway),
            issuer=self.issuer,
            audience=self.audience,
            previous_secret=self.previous_secret,
            previous_secret_until=self.previous_secret_until,
            private_key_file=self.private_key_file,
            public_key_file=self.public_key_file,
            legacy_tokens2=self.legacy_tokens2,
            jwks_url=self.jwks_url,
            jwks_min_refetch_interval=self.jwks_min_refetch_interval,
            jwks_cache_ttl=self.jwks_cache_ttl,
            jwks_timeout=self.jwks_timeout,
            jwks_allow_http=self.jwks_allow_http,
        )

    def auth_limits(self) -> AuthLimits:
        """Rate limits of the HTTP auth endpoints."""
        from wsmq.auth.limiter import AuthLimits

        return AuthLimits(
            attempts_per_ip=self.auth_attempts_per_ip,
            window=self.auth_window,
            user_free_failures=self.auth_user_free_failures,
            user_max_delay=self.auth_user_max_delay,
            user_lockout=self.auth_user_lockout,
        )

    def queue_options(self) -> QueueOptions:
        """Keyword arguments of ``Queues.from_url(settings.redis_url, ...)``."""
        return QueueOptions(ns=self.ns, max_connections=self.redis_pool_size)

    def engine_options(self) -> EngineOptions:
        """Keyword arguments of ``DeliveryEngine(queues, listener, ...)`` (hooks aside)."""
        return EngineOptions(
            poll_interval=self.poll_interval,
            batch_size=self.batch_size,
            max_outbox_bytes=self.write_buffer_limit,
            # The engine gets a fifth of the shutdown budget to hand back what it holds.
            stop_timeout=max(self.shutdown_timeout * 0.2, 0.2),
            device_retention=self.device_retention,
            max_devices_per_queue=self.max_devices_per_queue,
            handoff=self.handoff,
        )


def load_toml(path: str | os.PathLike[str]) -> dict[str, object]:
    """Read a TOML settings file (top level or a ``[wsmq]`` table)."""
    try:
        data = tomllib.loads(Path(path).read_text(encoding="utf-8"))
    except OSError as exc:
        raise SettingsError("config", f"cannot read {path}: {exc.strerror}") from exc
    except tomllib.TOMLDecodeError as exc:
        raise SettingsError("config", f"{path} is not valid TOML: {exc}") from exc
    table = data.get("wsmq", data)
    if not isinstance(table, dict):
        raise SettingsError("config", "[wsmq] must be a table")
    out: dict[str, object] = {}
    names = set(Settings.field_names())
    for key, value in table.items():
        name = key.replace("-", "_")
        if name not in names:
            raise SettingsError(key, f"unknown setting in {path}")
        out[name] = value
    return out


def _redact_url(url: str) -> str:
    scheme, sep, rest = url.partition("://")
    if not sep or "@" not in rest:
        return url
    creds, _, hostpart = rest.rpartition("@")
    user = creds.split(":", 1)[0]
    return f"{scheme}://{user}:***@{hostpart}" if ":" in creds else f"{scheme}://***@{hostpart}"


def _field_type(f: dataclasses.Field[object]) -> object:
    hints = typing.get_type_hints(Settings)
    return hints[f.name]


def type_label(name: str) -> str:
    """Human name of a setting's type for docs and ``--help``."""
    tp = typing.get_type_hints(Settings)[name]
    base, optional = base_type(tp)
    label = {bool: "bool", int: "int", float: "float", str: "str"}.get(base, "list")
    return f"{label} (optional)" if optional else label


GROUPS: Final = {
    "server": "Network",
    "redis": "Redis and queues",
    "auth": "Users, tokens and handshake",
    "delivery": "Delivery",
    "limits": "Limits",
    "ops": "Operations",
    "api": "HTTP API",
}


def render_markdown() -> str:
    """The configuration reference (``docs/configuration.md``), generated from :class:`Settings`."""
    from wsmq.settings_doc import render_markdown as render

    return render()


def _check_field_groups() -> None:
    # A field declared without a known group would silently vanish from the docs.
    for f in dataclasses.fields(Settings):
        if f.metadata.get("group") not in GROUPS:  # pragma: no cover - programming error
            raise RuntimeError(f"setting {f.name} has no documented group")


_check_field_groups()

if __name__ == "__main__":  # pragma: no cover
    import sys

    target = Path(sys.argv[1]) if len(sys.argv) > 1 else None
    text = render_markdown()
    if target is None:
        sys.stdout.write(text)
    else:
        target.write_text(text, encoding="utf-8")
