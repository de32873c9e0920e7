"""Prometheus metrics of one gateway, bound to a given registry (no global state in tests)."""

from __future__ import annotations

from collections.abc import Iterable, Iterator

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from wsmq.connections import PoolStats

__all__ = ["CONTENT_TYPE", "GatewayMetrics"]

#: Content type for ``GET /metrics`` responses.
CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"

# Delivery latency spans sub-millisecond (realtime wake-up) to minutes (queued while offline).
_LATENCY_BUCKETS = (0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 60, 600)
# Statuses of Groups.copy_messages, as labels of wsmq_group_copies.
_COPY_RESULTS = (("new", "new"), ("dup", "duplicate"), ("long", "too_long"))


class GatewayMetrics:
    """All gateway metrics, prefixed ``wsmq_``.

    Example::

        metrics = GatewayMetrics(CollectorRegistry())
        metrics.connections.inc()
        metrics.observe_delivery("v1", now_ms=..., sent_ms=msg.sent)
        body = metrics.render()
    """

    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        self.registry = registry if registry is not None else CollectorRegistry()
        r = self.registry
        self.connections = Gauge("wsmq_connections", "Open WebSocket connections.", registry=r)
        self.subscriptions = Gauge("wsmq_subscriptions", "Active subscriptions.", registry=r)
        self.handshakes = Counter(
            "wsmq_handshakes", "WebSocket handshakes by result.", ["result"], registry=r
        )
        #: The usual result's child, made once (``labels()`` costs a lookup under a lock).
        self.handshakes_ok = self.handshakes.labels(result="ok")
        self.messages_delivered = Counter(
            "wsmq_messages_delivered", "Messages written to sockets.", ["mode"], registry=r
        )
        self.messages_acked = Counter(
            "wsmq_messages_acked", "Messages deleted on client ack (wsmq.v1).", registry=r
        )
        self.messages_nacked = Counter(
            "wsmq_messages_nacked", "Messages given back on client nack (wsmq.v1).", registry=r
        )
        self.messages_extended = Counter(
            "wsmq_messages_extended",
            "Held messages hidden longer on client extend (wsmq.v1).",
            registry=r,
        )
        self.messages_sent = Counter(
            "wsmq_messages_sent", "Messages queued by clients with /send.", registry=r
        )
        self.redis_errors = Counter(
            "wsmq_redis_errors",
            "Redis calls of the gateway that failed (connection lost, timeout, failover).",
            registry=r,
        )
        self.redis_outages = Counter(
            "wsmq_redis_outages",
            "Redis outage episodes: Redis became unreachable (however many calls failed).",
            registry=r,
        )
        self.frames_rejected = Counter(
            "wsmq_frames_rejected", "Client frames answered with an error.", ["code"], registry=r
        )
        self.api_requests = Counter(
            "wsmq_api_requests",
            "HTTP API requests by operation and status.",
            ["operation", "status"],
            registry=r,
        )
        self.closes = Counter(
            "wsmq_closes", "Connections closed by the server, by close code.", ["code"], registry=r
        )
        self.devices_removed = Counter(
            "wsmq_device_inboxes_removed",
            "Device inboxes removed: 'retention' (unused longer than device_retention, by this "
            "node's fan-out or sweep), 'leave' (an explicit /leave).",
            ["reason"],
            registry=r,
        )
        self.group_copies = Counter(
            "wsmq_group_copies",
            "Group messages this node's group copier handled per member, by result: 'new' "
            "(a copy stored), 'duplicate' (the member had it already: a redone batch), "
            "'too_long' (longer than the member's maxsize, not copied).",
            ["result"],
            registry=r,
        )
        self.group_copy_errors = Counter(
            "wsmq_group_copy_errors",
            "Group copier failures by reason: 'member_missing' (a member queue does not "
            "exist), 'slow' (a batch ran past its deadline, released for a redo), 'failed' "
            "(copying a group raised), 'redis' (Redis did not answer; retried).",
            ["reason"],
            registry=r,
        )
        self.handoffs = Counter(
            "wsmq_handoffs",
            "Messages a send handed straight to this node's waiting consumer (docs/delivery.md, "
            "Hand-off), by result: 'taken' (delivered like a received one), 'released' (no "
            "consumer could take it any more: visible again at once).",
            ["result"],
            registry=r,
        )
        self._handoffs_taken = self.handoffs.labels("taken")
        self._handoffs_released = self.handoffs.labels("released")
        self.delivery_latency = Histogram(
            "wsmq_delivery_latency_seconds",
            "Time from a message being sent to it being written to a socket.",
            buckets=_LATENCY_BUCKETS,
            registry=r,
        )

        self._pool = _PoolCollector()
        r.register(self._pool)

    def watch_pool(self, stats: PoolStats | None) -> None:
        """Export the queue client's pool counters (``wsmq.connections.pool_stats(client)``)."""
        self._pool.stats = stats

    def observe_delivery(self, mode: str, *, now_ms: float, sent_ms: float) -> None:
        """Count one delivery and record its latency (clamped at 0 for clock skew)."""
        self.observe_deliveries(mode, now_ms=now_ms, sent_ms=(sent_ms,))

    def observe_deliveries(self, mode: str, *, now_ms: float, sent_ms: Iterable[float]) -> None:
        """:meth:`observe_delivery` for a batch written at ``now_ms`` (one counter update)."""
        observe = self.delivery_latency.observe
        n = 0
        for sent in sent_ms:
            observe(max(0.0, (now_ms - sent) / 1000.0))
            n += 1
        if n:
            self.messages_delivered.labels(mode=mode).inc(n)

    def observe_handoff(self, taken: bool) -> None:
        """Count one message handed to this node by a send."""
        (self._handoffs_taken if taken else self._handoffs_released).inc()

    def observe_group_copies(self, group: str, member: str, statuses: list[str]) -> None:
        """The group copier's ``on_member_copied`` hook: count one member copy's results."""
        for status, label in _COPY_RESULTS:
            n = statuses.count(status)
            if n:
                self.group_copies.labels(label).inc(n)

    def observe_group_copy_error(self, group: str, reason: str) -> None:
        """The group copier's ``on_error`` hook."""
        self.group_copy_errors.labels(reason).inc()

    def render(self) -> bytes:
        """The registry in Prometheus text format (serve with :data:`CONTENT_TYPE`)."""
        return generate_latest(self.registry)


class _PoolCollector(Collector):
    """Redis command pool counters, read from :class:`PoolStats` at scrape time (0 until set).

    Waits are backpressure (more commands in flight than ``redis_pool_size``), exhaustions are
    waits that hit the pool timeout and were retried; neither is a Redis outage.
    """

    def __init__(self) -> None:
        self.stats: PoolStats | None = None

    def collect(self) -> Iterator[Metric]:
        stats = self.stats
        yield GaugeMetricFamily(
            "wsmq_redis_pool_size",
            "Connections in the Redis command pool (redis_pool_size).",
            value=stats.size if stats is not None else 0,
        )
        yield CounterMetricFamily(
            "wsmq_redis_pool_waits",
            "Redis commands that found every pooled connection busy and waited for one.",
            value=stats.waits if stats is not None else 0,
        )
        yield CounterMetricFamily(
            "wsmq_redis_pool_exhausted",
            "Waits for a pooled Redis connection that hit the pool timeout (retried; "
            "backpressure, not an outage: raise redis_pool_size if this keeps growing).",
            value=stats.exhausted if stats is not None else 0,
        )
