"""An identity provider's signing keys: a JWKS fetched with aiohttp, cached, re-fetched sparingly.

Verification never waits on the network for a key it knows: a known ``kid`` is a dictionary
look-up, and a set older than its TTL is refreshed by a background task. Only a token naming an
unknown ``kid`` waits for a fetch, and such fetches happen at most once per
``min_refetch_interval`` (a flood of tokens with made-up kids costs one request per interval).
A fetch that fails keeps the keys already cached; the outage is logged once, not per token.
One fetch runs at a time: everyone who needs it waits for that one.
"""

from __future__ import annotations

import asyncio
import contextlib
import ipaddress
import json
import logging
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from urllib.parse import urlsplit

from wsmq.auth.errors import JwksError
from wsmq.auth.keys import PublicKey, VerificationKey, pinned_algorithm, public_half
from wsmq.errors import ConfigError

log = logging.getLogger("wsmq.auth")

#: A JWKS response larger than this is refused (real ones are a few KiB).
MAX_JWKS_BYTES = 256 * 1024
MAX_KEYS = 64
MAX_KID_LENGTH = 256


def check_jwks_url(url: str, *, allow_http: bool = False) -> None:
    """Refuse a JWKS URL that is not ``https://`` (``http://`` only to a loopback host, or with
    ``allow_http``), or that carries credentials; raises :class:`ConfigError`."""
    parts = urlsplit(url)
    if parts.scheme not in {"https", "http"} or not parts.hostname:
        raise ConfigError("jwks_url", "must be an https:// URL")
    if parts.username or parts.password:
        raise ConfigError("jwks_url", "must not carry credentials")
    if parts.scheme == "http" and not (allow_http or _is_loopback(parts.hostname)):
        raise ConfigError(
            "jwks_url",
            "must be https:// (keys fetched over plain HTTP can be replaced on the way; "
            "set jwks_allow_http to accept it anyway)",
        )


def _is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


@dataclass(frozen=True)
class KeySet:
    """The usable keys of one JWKS document, by ``kid``."""

    by_kid: Mapping[str, VerificationKey] = field(default_factory=dict)
    without_kid: tuple[VerificationKey, ...] = ()

    def get(self, kid: str | None) -> VerificationKey | None:
        """The key named ``kid``; for a token without a ``kid``, the only key if there is one."""
        if kid is not None:
            return self.by_kid.get(kid)
        keys = [*self.by_kid.values(), *self.without_kid]
        return keys[0] if len(keys) == 1 else None

    def __len__(self) -> int:
        return len(self.by_kid) + len(self.without_kid)


def parse_jwks(body: bytes, url: str = "(JWKS)") -> KeySet:
    """The signing keys of a JWKS document; :class:`JwksError` if it is not one or has none.

    Keys wsmq cannot use safely are skipped: symmetric (``oct``) keys, keys for encryption
    (``use`` other than ``sig``), unsupported types or curves, RSA under 2048 bits, and keys
    whose ``alg`` differs from the one their type pins.
    """
    try:
        doc = json.loads(body)
    except (ValueError, UnicodeDecodeError, RecursionError):
        raise JwksError(url, "the response is not JSON") from None
    keys = doc.get("keys") if isinstance(doc, dict) else None
    if not isinstance(keys, list):
        raise JwksError(url, 'the response has no "keys" list')
    if len(keys) > MAX_KEYS:
        raise JwksError(url, f"more than {MAX_KEYS} keys")
    by_kid: dict[str, VerificationKey] = {}
    without_kid: list[VerificationKey] = []
    skipped: list[str] = []
    for jwk in keys:
        try:
            key = key_from_jwk(jwk)
        except ValueError as exc:
            skipped.append(str(exc))
            continue
        if key.kid is None:
            without_kid.append(key)
        else:
            by_kid.setdefault(key.kid, key)
    if skipped:
        log.info("JWKS %s: skipped %d key(s): %s", url, len(skipped), "; ".join(skipped[:3]))
    result = KeySet(by_kid, tuple(without_kid))
    if not len(result):
        raise JwksError(url, "no usable signing key")
    return result


def key_from_jwk(jwk: object) -> VerificationKey:
    """One JWK (a JSON object) as a :class:`VerificationKey`, or :class:`ValueError`."""
    from jwt.algorithms import ECAlgorithm, OKPAlgorithm, RSAAlgorithm

    if not isinstance(jwk, dict):
        raise ValueError("a key is not a JSON object")
    kid = jwk.get("kid")
    if kid is not None and not (isinstance(kid, str) and 0 < len(kid) <= MAX_KID_LENGTH):
        raise ValueError("a kid is not a short string")
    if jwk.get("use", "sig") != "sig":
        raise ValueError(f"key {kid}: not a signing key")
    kty = jwk.get("kty")
    loaders: dict[object, Callable[[dict[str, object]], object]] = {
        "RSA": RSAAlgorithm.from_jwk,
        "EC": ECAlgorithm.from_jwk,
        "OKP": OKPAlgorithm.from_jwk,
    }
    loader = loaders.get(kty)
    if loader is None:
        raise ValueError(f"key {kid}: key type {str(kty)[:16]!r} is not accepted")
    try:
        loaded = loader(jwk)
    except Exception:  # pyjwt/cryptography raise several types for bad key material
        raise ValueError(f"key {kid}: not a valid {kty} key") from None
    public = public_half(loaded)
    algorithm = pinned_algorithm(public)
    declared = jwk.get("alg")
    if declared is not None and declared != algorithm:
        raise ValueError(f"key {kid}: alg {str(declared)[:16]!r} does not fit its key type")
    assert isinstance(public, PublicKey)
    return VerificationKey(public, algorithm, kid)


class JwksCache:
    """The keys of one JWKS URL, cached for verification.

    Args:
        url: the JWKS URL (checked by :func:`check_jwks_url` by the configuration).
        min_refetch_interval: seconds between fetches caused by unknown kids (and retries of a
            failing JWKS).
        ttl: age after which the set is refreshed in the background.
        timeout: seconds one fetch may take.
        clock: monotonic seconds (tests may pass their own).
    """

    def __init__(
        self,
        url: str,
        *,
        min_refetch_interval: float = 60.0,
        ttl: float = 600.0,
        timeout: float = 5.0,
        max_bytes: int = MAX_JWKS_BYTES,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.url = url
        self.min_refetch_interval = min_refetch_interval
        self.ttl = ttl
        self.timeout = timeout
        self.max_bytes = max_bytes
        self._clock = clock
        self._keys = KeySet()
        self._fetched_at: float | None = None
        self._last_attempt: float | None = None
        self._inflight: asyncio.Task[None] | None = None
        self._failing = False
        #: Fetch attempts so far (for metrics and tests).
        self.fetches = 0

    @property
    def keys(self) -> KeySet:
        """The keys as last fetched successfully (empty before the first success)."""
        return self._keys

    def cached(self, kid: str | None) -> VerificationKey | None:
        """The cached key for ``kid`` without waiting; starts a background refresh when the
        set is older than the TTL (and a fetch is due)."""
        if self._fetched_at is not None and self._clock() - self._fetched_at >= self.ttl:
            with contextlib.suppress(RuntimeError):  # no running loop: nothing to start
                self._start_if_due(asyncio.get_running_loop())
        return self._keys.get(kid)

    def prefetch(self) -> None:
        """Start a background fetch if none was made yet (node start: the first handshakes
        then need not wait for it)."""
        if self._last_attempt is None:
            self._start_if_due(asyncio.get_running_loop())

    async def key_for(self, kid: str | None) -> VerificationKey | None:
        """The key for ``kid``; unknown, it waits for a fetch (the one in flight, or a new one
        if the last attempt is older than ``min_refetch_interval``)."""
        key = self.cached(kid)
        if key is not None:
            return key
        task = self._inflight or self._start_if_due(asyncio.get_running_loop())
        if task is not None:
            # Shielded: a client giving up does not cancel the fetch others wait for.
            await asyncio.shield(task)
        return self._keys.get(kid)

    async def refresh(self) -> KeySet:
        """Fetch now (joining a fetch in flight) regardless of the intervals; raises
        :class:`JwksError` if the JWKS cannot be fetched (the cached keys are kept)."""
        if self._inflight is not None:
            await asyncio.shield(self._inflight)
        keys = await self._fetch_counted()
        self._accept(keys)
        return keys

    async def settled(self) -> None:
        """Wait for a fetch in flight, if any (its failure is logged, not raised)."""
        if self._inflight is not None:
            await asyncio.shield(self._inflight)

    async def aclose(self) -> None:
        """Cancel a fetch in flight (node shutdown)."""
        task, self._inflight = self._inflight, None
        if task is not None:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task

    # -- fetching --------------------------------------------------------------------------
    def _start_if_due(self, loop: asyncio.AbstractEventLoop) -> asyncio.Task[None] | None:
        if self._inflight is not None:
            return self._inflight
        now = self._clock()
        if self._last_attempt is not None and now - self._last_attempt < self.min_refetch_interval:
            return None
        task = loop.create_task(self._attempt(), name="wsmq-jwks-fetch")
        self._inflight = task
        task.add_done_callback(self._done)
        return task

    def _done(self, task: asyncio.Task[None]) -> None:
        if self._inflight is task:
            self._inflight = None

    async def _attempt(self) -> None:
        try:
            keys = await self._fetch_counted()
        except Exception as exc:  # whatever went wrong, the cached keys stay in use
            error = exc if isinstance(exc, JwksError) else JwksError(self.url, repr(exc))
            if not self._failing:
                self._failing = True
                log.warning(
                    "%s; keeping the %d cached key(s), retrying at most every %g s",
                    error.message,
                    len(self._keys),
                    self.min_refetch_interval,
                    extra={"event": "jwks_unavailable"},
                )
            return
        self._accept(keys)

    def _accept(self, keys: KeySet) -> None:
        if self._failing:
            self._failing = False
            log.info("JWKS %s answers again", self.url, extra={"event": "jwks_recovered"})
        self._keys = keys
        self._fetched_at = self._clock()

    async def _fetch_counted(self) -> KeySet:
        self._last_attempt = self._clock()
        self.fetches += 1
        return parse_jwks(await self._download(), self.url)

    async def _download(self) -> bytes:
        import aiohttp  # here: `import wsmq.auth` stays light for publishers and the CLI

        body = bytearray()
        try:
            timeout = aiohttp.ClientTimeout(total=self.timeout)
            async with (
                aiohttp.ClientSession(timeout=timeout) as session,
                session.get(
                    self.url, allow_redirects=False, headers={"Accept": "application/json"}
                ) as response,
            ):
                if response.status != 200:
                    raise JwksError(self.url, f"answered HTTP {response.status}")
                length = response.content_length
                if length is not None and length > self.max_bytes:
                    raise JwksError(self.url, f"the response is larger than {self.max_bytes} B")
                async for chunk in response.content.iter_any():
                    body += chunk
                    if len(body) > self.max_bytes:
                        raise JwksError(self.url, f"the response is larger than {self.max_bytes} B")
        except (aiohttp.ClientError, TimeoutError, OSError) as exc:
            raise JwksError(self.url, f"cannot be fetched ({type(exc).__name__})") from None
        return bytes(body)
