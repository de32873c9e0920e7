"""Pure helpers for benchmark numbers: percentiles, rates from count series, ratios."""

from __future__ import annotations

import itertools
import math
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Any, TypeGuard

Metrics = dict[str, float | int | str | None]


def percentile(values: Sequence[float], q: float) -> float | None:
    """The ``q``-quantile (0..1) of ``values`` by linear interpolation; None when empty."""
    if not values:
        return None
    ordered = sorted(values)
    pos = (len(ordered) - 1) * q
    low = math.floor(pos)
    high = min(low + 1, len(ordered) - 1)
    return ordered[low] + (ordered[high] - ordered[low]) * (pos - low)


def latency_summary(values: Sequence[float], prefix: str = "") -> Metrics:
    """p50/p99/p999/max in ms (rounded to µs) of ``values``, keyed ``<prefix>p50_ms`` and so on."""
    out: Metrics = {}
    for name, q in (("p50", 0.5), ("p99", 0.99), ("p999", 0.999), ("max", 1.0)):
        value = percentile(values, q)
        out[f"{prefix}{name}_ms"] = None if value is None else round(value, 3)
    out[f"{prefix}samples"] = len(values)
    return out


def count_at(series: Sequence[Sequence[float]], t: float) -> float:
    """Cumulative count at time ``t``, interpolated in a ``[(time, count), ...]`` series."""
    if not series:
        return 0.0
    if t <= series[0][0]:
        return float(series[0][1])
    for (t0, c0), (t1, c1) in itertools.pairwise(series):
        if t0 <= t <= t1:
            return c0 if t1 == t0 else c0 + (c1 - c0) * (t - t0) / (t1 - t0)
    return float(series[-1][1])


def window_rate(
    series_list: Iterable[Sequence[Sequence[float]]], start: float, end: float
) -> float:
    """Messages per second delivered between ``start`` and ``end``, summed over several series."""
    if end <= start:
        return 0.0
    total = sum(count_at(s, end) - count_at(s, start) for s in series_list)
    return total / (end - start)


# Metrics worth a ratio: rates, latency percentiles, memory per connection. Counters such as
# samples, backlog left or the publishers' own rate describe the run, not the system.
HEADLINE_SUFFIXES = (
    "msgs_per_s", "copies_per_s", "_p50_ms", "_p99_ms", "_p999_ms", "handshakes_per_s", "_kib",
    "_us_per_copy",
)  # fmt: skip
NOT_HEADLINE_SUFFIXES = ("published_per_s", "offered_per_s")


def headline(metric: str) -> bool:
    """Is ``metric`` one the ratios and the plot show?"""
    return metric.endswith(HEADLINE_SUFFIXES) and not metric.endswith(NOT_HEADLINE_SUFFIXES)


def ratios(
    scenarios: Mapping[str, Mapping[str, Mapping[str, Any]]],
    subject: str = "wsmq",
    wanted: Callable[[str], bool] = headline,
) -> dict[str, dict[str, dict[str, float]]]:
    """``subject`` / each other system, for each ``wanted`` metric both have a number for."""
    out: dict[str, dict[str, dict[str, float]]] = {}
    for scenario, systems in scenarios.items():
        mine = systems.get(subject)
        if not isinstance(mine, Mapping):
            continue
        for peer, theirs in systems.items():
            if peer == subject or not isinstance(theirs, Mapping):
                continue
            for metric, value in mine.items():
                other = theirs.get(metric)
                if wanted(metric) and _number(value) and _number(other) and other != 0:
                    out.setdefault(scenario, {}).setdefault(peer, {})[metric] = round(
                        float(value) / float(other), 3
                    )
    return out


def _number(value: object) -> TypeGuard[int | float]:
    return isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value)
