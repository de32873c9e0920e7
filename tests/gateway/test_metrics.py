from __future__ import annotations

from prometheus_client import CollectorRegistry

from wsmq.gateway.metrics import GatewayMetrics


def test_two_gateways_do_not_collide_and_render_counts() -> None:
    first = GatewayMetrics(CollectorRegistry())
    second = GatewayMetrics(CollectorRegistry())  # a second registry must not raise "Duplicated"
    first.observe_delivery("v1", now_ms=10_500.0, sent_ms=10_000.0)
    first.handshakes.labels(result="ok").inc()
    text = first.render().decode()
    assert 'wsmq_messages_delivered_total{mode="v1"} 1.0' in text
    assert 'wsmq_handshakes_total{result="ok"} 1.0' in text
    assert "wsmq_delivery_latency_seconds_bucket" in text
    assert 'wsmq_messages_delivered_total{mode="v1"}' not in second.render().decode()


def test_clock_skew_is_clamped_to_zero_latency() -> None:
    metrics = GatewayMetrics()
    metrics.observe_delivery("legacy", now_ms=1_000.0, sent_ms=5_000.0)
    text = metrics.render().decode()
    assert 'wsmq_delivery_latency_seconds_bucket{le="0.001"} 1.0' in text
