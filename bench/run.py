"""``python -m bench`` / ``scripts/bench``: run the scenarios against wsmq and its peers.

Every scenario runs each system in turn in the same run (the order rotates per scenario so no
system always goes first), each on a fresh private redis-server, with publishers and clients in
processes of their own. Results go to ``<out>/<timestamp>.json`` and ``.png``; a table is printed.
"""

from __future__ import annotations

import argparse
import asyncio
import dataclasses
import logging
import os
import platform
import resource
import subprocess
import sys
import time
from collections.abc import Awaitable, Callable, Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from bench import capacity, client_cost, delivery, fanout, report, scale
from bench.procs import ROOT
from bench.profile import FULL, QUICK, Profile, all_queues
from bench.stats import Metrics, ratios
from bench.systems import ALL_SYSTEMS, Running, System, SystemUnavailable

Say = Callable[[str], None]
PerSystem = Callable[[Running, Profile, Say], Awaitable[Metrics]]
Global = Callable[[Profile, Say], Awaitable[Any]]

PER_SYSTEM: dict[str, PerSystem] = {
    "throughput": delivery.throughput,
    "latency": delivery.latency,
    "drain": delivery.drain,
    "connections": capacity.connections,
}
# Scenarios sharing one start of a system (nodes, Redis): starting wsmq costs seconds, and a
# quick run has few. `connections` gets a fresh single node, so RSS starts from a clean process.
SESSIONS: tuple[tuple[tuple[str, ...], int], ...] = (
    (("throughput",), 2),
    (("latency", "drain"), 2),
    (("connections",), 1),
)
GLOBAL: dict[str, tuple[str, Global]] = {
    # scenario -> (key under scenarios.<name>, runner)
    "redis": ("redis", capacity.redis_ceiling),
    "queue": ("wsmq", capacity.queue_layer),
    "client": ("wsmq", client_cost.scenario),
    "fanout": ("wsmq", fanout.scenario),
    "scale": ("wsmq", scale.scenario),
}
ALL_SCENARIOS = [*PER_SYSTEM, *GLOBAL]
# `scale` (100k sockets, minutes, root for the open-file limit) runs only when asked for.
DEFAULT_SCENARIOS = [s for s in ALL_SCENARIOS if s != "scale"]
# `queue` is the queue layer alone (its own script, a few seconds more), `client` the Python
# client's cost per message and `fanout` devices and groups against publisher-side copies (a
# minute more each): full runs only by default.
QUICK_SCENARIOS = [s for s in DEFAULT_SCENARIOS if s not in ("queue", "client", "fanout")]


class Progress:
    """One line per step on stderr, with the time since the run started."""

    def __init__(self, stream: Any = sys.stderr) -> None:
        self.started = time.monotonic()
        self.stream = stream
        self.where = ""

    def __call__(self, text: str) -> None:
        elapsed = time.monotonic() - self.started
        prefix = f"[bench {elapsed:5.1f}s]"
        self.stream.write(
            f"{prefix} {self.where}: {text}\n" if self.where else f"{prefix} {text}\n"
        )
        self.stream.flush()


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="scripts/bench",
        description="Benchmark wsmq against an rsmq-worker bridge (the original's design) and a "
        "Redis pub/sub bridge. See docs/bench.md.",
    )
    parser.add_argument("--quick", action="store_true", help="small sizes: < 60 s in all")
    parser.add_argument(
        "--scenarios",
        default=None,
        help=f"comma-separated subset of: {', '.join(ALL_SCENARIOS)} "
        "(default: all but scale; with --quick also not queue, client and fanout)",
    )
    parser.add_argument(
        "--systems",
        default=",".join(ALL_SYSTEMS),
        help=f"comma-separated subset of: {', '.join(ALL_SYSTEMS)} (default: all)",
    )
    parser.add_argument("--out", default=str(ROOT / "bench-results"), help="output directory")
    parser.add_argument("--no-plot", action="store_true", help="skip the PNG plot")
    parser.add_argument(
        "--set",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="override a number of the profile (bench/profile.py), e.g. --set drain_count=2000",
    )
    args = parser.parse_args(argv)
    base = QUICK if args.quick else FULL
    try:
        args.profile = override(base, args.set)
    except ValueError as exc:
        parser.error(str(exc))
    if args.scenarios is None:
        args.scenarios = ",".join(QUICK_SCENARIOS if args.quick else DEFAULT_SCENARIOS)
    for name, allowed, label in (
        ("scenarios", ALL_SCENARIOS, "scenario"),
        ("systems", list(ALL_SYSTEMS), "system"),
    ):
        chosen = [s.strip() for s in getattr(args, name).split(",") if s.strip()]
        unknown = [s for s in chosen if s not in allowed]
        if unknown:
            parser.error(
                f"unknown {label}(s): {', '.join(unknown)}; choose from {', '.join(allowed)}"
            )
        setattr(args, name, chosen)
    return args


def override(profile: Profile, settings: Sequence[str]) -> Profile:
    """``profile`` with ``KEY=VALUE`` overrides of its numeric fields."""
    fields = {f.name: f for f in dataclasses.fields(profile)}
    changes: dict[str, int | float] = {}
    for setting in settings:
        key, sep, value = setting.partition("=")
        current = getattr(profile, key, None) if key in fields else None
        if not sep or isinstance(current, bool) or not isinstance(current, int | float):
            numeric = [k for k, v in vars(profile).items() if isinstance(v, int | float)]
            raise ValueError(f"--set {setting!r}: expected KEY=NUMBER, KEY one of {numeric}")
        try:
            changes[key] = int(value) if isinstance(current, int) else float(value)
        except ValueError:
            raise ValueError(f"--set {setting!r}: {value!r} is not a number") from None
    return dataclasses.replace(profile, **changes)  # type: ignore[arg-type]


def git_revision() -> str | None:
    try:
        out = subprocess.run(
            ["git", "rev-parse", "--short", "HEAD"], cwd=ROOT, capture_output=True, check=False
        )
    except OSError:
        return None
    return out.stdout.decode().strip() or None


async def run_one(name: str, running: Running, profile: Profile, say: Say) -> Metrics:
    """One scenario on one running system; a failure becomes ``{"error": ...}``, not a crash."""
    try:
        return await PER_SYSTEM[name](running, profile, say)
    except Exception as exc:
        error = f"{type(exc).__name__}: {exc}"[:500]
        say(f"FAILED: {error}")
        return {"error": error}


async def run(args: argparse.Namespace, say: Progress) -> dict[str, Any]:
    profile: Profile = args.profile
    systems: list[System] = []
    skipped: dict[str, str] = {}
    for name in args.systems:
        system = ALL_SYSTEMS[name]()
        try:
            await asyncio.to_thread(system.check)
        except SystemUnavailable as exc:
            skipped[name] = str(exc)
            say(f"SKIPPING {name}: {exc}")
            continue
        system.plan(all_queues(profile))
        systems.append(system)
    results: dict[str, Any] = {
        "meta": {
            "started": datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ"),
            "profile": profile.name,
            "host": platform.node(),
            "cpus": os.cpu_count(),
            "python": platform.python_version(),
            "git": git_revision(),
            "note": "shared machine: numbers are noisy; compare systems within one run",
        },
        "systems": {s.name: s.label for s in systems}
        | {n: f"skipped: {r}" for n, r in skipped.items()},
        "scenarios": {},
    }
    scenarios: dict[str, dict[str, Any]] = results["scenarios"]
    wanted = set(args.scenarios)
    sessions = [
        ([s for s in names if s in wanted], nodes)
        for names, nodes in SESSIONS
        if any(s in wanted for s in names)
    ]
    for index, (names, nodes) in enumerate(sessions):
        for name in names:
            scenarios[name] = {}
        order = systems[index % len(systems) :] + systems[: index % len(systems)] if systems else []
        for system in order:
            if system.name in skipped:
                continue
            say.where = f"{'+'.join(names)} · {system.name}"
            say("starting")
            t0 = time.monotonic()
            try:
                running = await system.start(nodes, all_queues(profile))
            except SystemUnavailable as exc:
                # e.g. `wsmq serve` exits at start-up: skip it for the rest of the run, loudly.
                skipped[system.name] = str(exc)
                say(f"SKIPPING {system.name} for the rest of the run: {exc}")
                continue
            except Exception as exc:
                for name in names:
                    scenarios[name][system.name] = {"error": f"start: {exc}"[:500]}
                say(f"FAILED to start: {exc}")
                continue
            try:
                for name in names:
                    say.where = f"{name} · {system.name}"
                    scenarios[name][system.name] = await run_one(name, running, profile, say)
            finally:
                await running.stop()
            say(f"done in {time.monotonic() - t0:.1f}s")
        for name in names:
            for system_name, reason in skipped.items():
                scenarios[name][system_name] = {"skipped": reason}
            # a stable column order in the output: wsmq first, then the peers
            scenarios[name] = {n: scenarios[name][n] for n in ALL_SYSTEMS if n in scenarios[name]}
    for scenario in args.scenarios:
        if scenario not in GLOBAL:
            continue
        key, runner = GLOBAL[scenario]
        say.where = scenario
        try:
            data = await runner(profile, say)
        except Exception as exc:
            data = {"error": f"{type(exc).__name__}: {exc}"}
            say(f"FAILED: {data['error']}")
        nested = data and all(isinstance(v, dict) for v in data.values())
        scenarios[scenario] = dict(data) if nested else {key: data}
    say.where = ""
    for system in systems:
        await system.close()
    for name, reason in skipped.items():
        results["systems"][name] = f"skipped: {reason}"
    results["ratios"] = ratios(scenarios)
    return results


class _QuietChildWatcher(logging.Filter):
    """Drop asyncio's "Unknown child process pid" warning: a reaping race of its child watcher
    thread with no effect here (results come from the children's output, not exit codes)."""

    def filter(self, record: logging.LogRecord) -> bool:
        return not record.getMessage().startswith("Unknown child process pid")


def raise_fd_limit(wanted: int = 65536) -> int:
    """Raise this process's open-file limit (children inherit it); return the limit now in force.

    The connections scenario holds 10k sockets per system, and the rsmq-worker bridge a Redis
    connection per socket on top: 20k descriptors in one process. Root may raise the hard limit.
    """
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    for new_hard in (max(hard, wanted), hard):
        target = min(wanted, new_hard) if new_hard != resource.RLIM_INFINITY else wanted
        if target <= soft:
            return soft
        try:
            resource.setrlimit(resource.RLIMIT_NOFILE, (target, new_hard))
            return target
        except (ValueError, OSError):
            continue
    return soft


def main(argv: Sequence[str] | None = None) -> int:
    logging.getLogger("asyncio").addFilter(_QuietChildWatcher())
    args = parse_args(argv)
    raise_fd_limit()
    say = Progress()
    results = asyncio.run(run(args, say))
    stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")
    out = Path(args.out)
    json_path = out / f"{stamp}.json"
    report.write_json(results, json_path)
    sys.stdout.write(report.table(results))
    sys.stdout.write(f"results: {json_path}\n")
    if not args.no_plot:
        png = out / f"{stamp}.png"
        reason = report.plot(results, png)
        sys.stdout.write(f"plot: {png}\n" if reason is None else f"plot skipped: {reason}\n")
    for name, label in results["systems"].items():
        if label.startswith("skipped"):
            sys.stdout.write(f"NOTE: {name} {label}\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
