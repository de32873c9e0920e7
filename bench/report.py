"""Turn a run's results into a terminal table, a JSON file and a PNG plot."""

from __future__ import annotations

import json
import math
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from bench.stats import headline

SUBJECT = "wsmq"


def _fmt(value: object) -> str:
    if value is None:
        return "-"
    if isinstance(value, bool):
        return str(value)
    if isinstance(value, int):
        return f"{value:,}"
    if isinstance(value, float):
        if not math.isfinite(value):
            return str(value)
        if abs(value) >= 100:
            return f"{value:,.0f}"
        return f"{value:.3g}"
    text = str(value)
    return text if len(text) <= 40 else text[:37] + "..."


def table(results: Mapping[str, Any]) -> str:
    """Plain text: a block per scenario, metrics as rows, systems and ratios as columns."""
    scenarios: Mapping[str, Mapping[str, Any]] = results.get("scenarios", {})
    ratios: Mapping[str, Mapping[str, Mapping[str, float]]] = results.get("ratios", {})
    lines: list[str] = []
    for scenario, systems in scenarios.items():
        names = list(systems)
        peers = [n for n in names if n != SUBJECT and n in ratios.get(scenario, {})]
        header = ["metric", *names, *(f"{SUBJECT}/{p}" for p in peers)]
        metrics: list[str] = []
        for name in names:
            data = systems[name]
            if isinstance(data, Mapping):
                metrics.extend(m for m in data if m not in metrics)
        rows = [header]
        for metric in metrics:
            row = [metric]
            for name in names:
                data = systems[name]
                row.append(_fmt(data.get(metric)) if isinstance(data, Mapping) else "-")
            for peer in peers:
                row.append(_fmt(ratios.get(scenario, {}).get(peer, {}).get(metric)))
            rows.append(row)
        widths = [max(len(r[i]) for r in rows) for i in range(len(header))]
        lines.append(f"== {scenario} ==")
        for i, row in enumerate(rows):
            cells = [row[0].ljust(widths[0])] + [
                c.rjust(w) for c, w in zip(row[1:], widths[1:], strict=True)
            ]
            lines.append("  ".join(cells))
            if i == 0:
                lines.append("  ".join("-" * w for w in widths))
        lines.append("")
    return "\n".join(lines)


def write_json(results: Mapping[str, Any], path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(results, indent=2, sort_keys=False) + "\n")


_COLORS = {"wsmq": "#d62728", "rsmq-worker": "#2ca02c", "pubsub": "#1f77b4", "redis": "#7f7f7f"}


def _plot_panels(
    results: Mapping[str, Any],
) -> list[tuple[str, list[str], list[str], dict[str, dict[str, float]]]]:
    panels = []
    for scenario, systems in results.get("scenarios", {}).items():
        values: dict[str, dict[str, float]] = {}
        for name, data in systems.items():
            if not isinstance(data, Mapping):
                continue
            for metric, value in data.items():
                numeric = isinstance(value, int | float) and not isinstance(value, bool)
                wanted = headline(metric)  # the JSON and the table keep everything
                if numeric and wanted and value > 0:
                    values.setdefault(metric, {})[name] = float(value)
        names = [n for n in systems if any(n in v for v in values.values())]
        if values:
            panels.append((scenario, list(values), names, values))
    return panels


def plot(results: Mapping[str, Any], path: Path) -> str | None:
    """Grouped bars (log scale), one panel per scenario; returns why it was skipped, if it was."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return "matplotlib not installed (pip install 'wsmq[bench]')"
    panels = _plot_panels(results)
    if not panels:
        return "no numeric results to plot"
    heights = [0.3 * len(metrics) * len(names) + 0.9 for _, metrics, names, _ in panels]
    fig, axes = plt.subplots(
        len(panels), 1, figsize=(10, sum(heights) + 0.8), squeeze=False,
        gridspec_kw={"height_ratios": heights},
    )  # fmt: skip
    for ax, (scenario, metrics, names, values) in zip(axes[:, 0], panels, strict=True):
        bar = 0.8 / len(names)
        for i, name in enumerate(names):
            ys = [j + i * bar for j in range(len(metrics))]
            xs = [values[m].get(name, 0.0) for m in metrics]
            bars = ax.barh(ys, xs, height=bar, label=name, color=_COLORS.get(name))
            ax.bar_label(bars, labels=[_fmt(x) if x else "" for x in xs], fontsize=6, padding=2)
        ax.set_yticks([j + bar * (len(names) - 1) / 2 for j in range(len(metrics))])
        ax.set_yticklabels(metrics, fontsize=7)
        ax.set_xscale("log")
        shown = [v for per in values.values() for v in per.values()]
        ax.set_xlim(min(shown) / 2, max(shown) * 3)  # room for the value labels
        ax.invert_yaxis()
        ax.set_title(scenario, fontsize=9, loc="left")
        ax.tick_params(axis="x", labelsize=7)
    from matplotlib.patches import Patch

    systems = [n for n in _COLORS if any(n in names for _, _, names, _ in panels)]
    fig.legend(
        handles=[Patch(color=_COLORS[n], label=n) for n in systems],
        loc="upper right", ncols=len(systems), fontsize=7, frameon=False,
    )  # fmt: skip
    meta = results.get("meta", {})
    fig.suptitle(
        f"wsmq benchmark: {meta.get('profile', '')} run, {meta.get('started', '')} "
        "(log scale; ms and KiB: lower is better)",
        fontsize=9,
        x=0.02,
        ha="left",
    )
    # Fixed margins: tight_layout measures every label and costs seconds on a busy machine.
    total = sum(heights) + 0.8
    fig.subplots_adjust(
        left=0.24, right=0.97, top=1 - 0.8 / total, bottom=0.3 / total,
        hspace=0.55 * len(panels) / sum(heights) * 1.5,
    )  # fmt: skip
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return None
