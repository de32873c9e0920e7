"""Prometheus metrics of one gateway, bound to a given registry (no global state in tests)."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest

__all__ = ["CONTENT_TYPE", "GatewayMetrics"]

#: Content type for ``GET /metrics`` responses.
CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"

# Delivery latency spans sub-millisecond (realtime wake-up) to minutes (queued while offline).
_LATENCY_BUCKETS = (0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 60, 600)


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
        self.messages_delivered = Counter(
            "wsmq_messages_delivered", "Messages written to sockets.", ["mode"], registry=r
        )
        self.messages_acked = Counter(
            "wsmq_messages_acked", "Messages deleted on client ack (wsmq.v1).", registry=r
        )
        self.messages_sent = Counter(
            "wsmq_messages_sent", "Messages queued by clients with /send.", registry=r
        )
        self.redis_errors = Counter(
            "wsmq_redis_errors", "Redis errors seen by the gateway.", registry=r
        )
        self.frames_rejected = Counter(
            "wsmq_frames_rejected", "Client frames answered with an error.", ["code"], registry=r
        )
        self.closes = Counter(
            "wsmq_closes", "Connections closed by the server, by close code.", ["code"], registry=r
        )
        self.delivery_latency = Histogram(
            "wsmq_delivery_latency_seconds",
            "Time from a message being sent to it being written to a socket.",
            buckets=_LATENCY_BUCKETS,
            registry=r,
        )

    def observe_delivery(self, mode: str, *, now_ms: float, sent_ms: float) -> None:
        """Count one delivery and record its latency (clamped at 0 for clock skew)."""
        self.messages_delivered.labels(mode=mode).inc()
        self.delivery_latency.observe(max(0.0, (now_ms - sent_ms) / 1000.0))

    def render(self) -> bytes:
        """The registry in Prometheus text format (serve with :data:`CONTENT_TYPE`)."""
        return generate_latest(self.registry)
