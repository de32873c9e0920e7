"""The chaos checker and proxy on their own (no gateway): the verdict logic can fail."""

from __future__ import annotations

import asyncio
import math

from .harness import Ledger, check
from .procs import CutProxy
from .soak import SoakConfig, SoakResult


def ledger_with(sent: dict[str, float], deliveries: list[tuple[str, float]]) -> Ledger:
    ledger = Ledger()
    for msg_id, t in sent.items():
        ledger.sent[msg_id] = t
        ledger.bodies[msg_id] = f"p0:{msg_id}"
    for msg_id, t in deliveries:
        ledger.deliveries.append((msg_id, t))
        ledger.first_seen.setdefault(msg_id, t)
    return ledger


def test_clean_run() -> None:
    ledger = ledger_with({"a": 1.0, "b": 2.0}, [("a", 1.1), ("b", 2.1)])
    report = check(ledger, "x", fault_end=1.5)
    assert (report.sent, report.delivered_unique, report.duplicates, report.lost) == (2, 2, 0, 0)
    assert report.recovery_seconds == 0.0
    assert ledger.all_delivered()


def test_lost_message_and_infinite_recovery() -> None:
    ledger = ledger_with({"a": 1.0, "b": 2.0}, [("a", 1.1)])
    report = check(ledger, "x", fault_end=1.5)
    assert report.lost == 1
    assert math.isinf(report.recovery_seconds)
    assert not ledger.all_delivered()


def test_duplicates_and_recovery_from_redelivery() -> None:
    # "a" was in flight at the fault (t=1.5) and came back 2 s later (vt).
    ledger = ledger_with({"a": 1.0, "b": 2.0}, [("a", 1.1), ("b", 2.1), ("a", 3.5)])
    report = check(ledger, "x", fault_end=1.5)
    assert report.duplicates == 1
    assert report.recovery_seconds == 2.0


def test_resume_is_the_slowest_queue_to_flow_again() -> None:
    ledger = ledger_with({"a": 1.0, "b": 2.0, "c": 2.0, "d": 3.0}, [])
    ledger.queue_of.update({"a": "q1", "b": "q1", "c": "q2", "d": "q2"})
    for msg_id, t in [("a", 1.1), ("b", 2.1), ("c", 4.0), ("d", 4.0)]:
        ledger.record_delivery(msg_id, "")
        ledger.deliveries[-1] = (msg_id, t)
        ledger.first_seen[msg_id] = t
    report = check(ledger, "x", fault_end=1.5)
    assert report.resume_seconds == 2.5  # q2 stalled until t=4.0


def test_redelivery_after_confirmed_ack_is_counted() -> None:
    ledger = Ledger()
    ledger.record_send("a", "p0:0")
    ledger.record_delivery("a", "p0:0")
    ledger.confirmed.add("a")
    ledger.record_delivery("a", "p0:0")
    assert check(ledger, "x", fault_end=0.0).redelivered_after_ack == 1


def test_unknown_versus_ambiguous_extra_ids() -> None:
    ledger = Ledger()
    ledger.record_send("a", "p0:0")
    ledger.ambiguous.add("p0:0")  # the first attempt failed, then "a" was stored
    ledger.record_delivery("a", "p0:0")
    ledger.record_delivery("z", "p0:0")  # the failed attempt had been stored too
    ledger.record_send("b", "p0:1")
    ledger.record_delivery("b", "p0:1")
    ledger.record_delivery("y", "p0:1")  # a retry inside redis-py stored "p0:1" twice
    ledger.record_delivery("q", "p9:9")  # nobody sent this
    report = check(ledger, "x", fault_end=0.0)
    assert (report.ambiguous_extra, report.unknown) == (2, 1)


def test_soak_verdict() -> None:
    cfg = SoakConfig(connections=100, rss_slack_mib=10)
    flat = SoakResult(cfg, rss_start=100 << 20, rss_end=105 << 20, fds_start=120, fds_end=125)
    assert flat.verdict == "flat"
    assert "verdict=flat" in flat.line() and "connections=100" in flat.line()
    grown = SoakResult(cfg, rss_start=100 << 20, rss_end=130 << 20, fds_start=120, fds_end=120)
    assert grown.verdict == "leak"
    fds = SoakResult(cfg, rss_start=100 << 20, rss_end=100 << 20, fds_start=120, fds_end=300)
    fds.conns_start = fds.conns_end = 100
    assert fds.verdict == "leak" and fds.held
    # More descriptors because more sockets are open is not a leak; fewer sockets is not held.
    busy = SoakResult(cfg, rss_start=1 << 20, rss_end=1 << 20, fds_start=120, fds_end=300)
    busy.conns_start, busy.conns_end = 100, 280
    assert busy.verdict == "flat"
    dropped = SoakResult(cfg, rss_start=1 << 20, rss_end=1 << 20, fds_start=120, fds_end=60)
    dropped.conns_start, dropped.conns_end = 100, 40
    assert dropped.verdict == "flat" and not dropped.held


async def test_cut_proxy_resets_connections() -> None:
    async def echo(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        while data := await reader.read(100):
            writer.write(data)
            await writer.drain()
        writer.close()

    server = await asyncio.start_server(echo, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    proxy = await CutProxy(port).start()
    try:
        async with asyncio.timeout(5):
            reader, writer = await asyncio.open_connection("127.0.0.1", proxy.port)
            writer.write(b"ping")
            assert await reader.readexactly(4) == b"ping"
            assert proxy.cut() == 1
            data = b""
            try:
                data = await reader.read(100)
            except ConnectionResetError:
                pass
            assert data == b""  # the client saw its connection end
            writer.close()
    finally:
        await proxy.aclose()
        server.close()
        await server.wait_closed()


def test_device_reports_add_up_to_the_worst_device() -> None:
    from .devices import merge_reports

    clean = check(ledger_with({"a": 1.0, "b": 2.0}, [("a", 1.1), ("b", 2.1)]), "d", 1.5)
    missing = check(ledger_with({"a": 1.0, "b": 2.0}, [("a", 1.1), ("a", 3.0)]), "d", 1.5)
    merged = merge_reports([clean, missing])
    assert (merged.sent, merged.delivered_unique, merged.lost, merged.duplicates) == (2, 1, 1, 1)
    assert merged.recovery_seconds == math.inf  # one device missing a message fails the run
