"""The report's figures, each drawn to PNG bytes so the page can carry them inline.

Figures are built on ``matplotlib.figure.Figure`` (no pyplot state, no display needed), so a
report can be made on a headless machine and from any thread.
"""

from __future__ import annotations

import io
import math
import statistics
from collections.abc import Sequence
from typing import Any

from headrace.bench.report_inputs import MonitorLog, StudyFile
from headrace.errors import Unavailable

__all__ = ["load_figure", "monitor_figure", "scan_figure", "tune_figure"]

_DPI = 100


def _figure(width: float = 7.5, height: float = 4.5) -> Any:
    try:
        from matplotlib.figure import Figure
    except ImportError as exc:
        raise Unavailable(
            "bench report draws with matplotlib, which is not installed; "
            "pip install 'headrace[bench]' or matplotlib"
        ) from exc
    return Figure(figsize=(width, height), dpi=_DPI)


def _png(figure: Any) -> bytes:
    figure.tight_layout()
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png")
    return buffer.getvalue()


def scan_figure(scans: Sequence[StudyFile]) -> bytes:
    """Throughput vs batch size, mean ± s.e.m.: one line per (model, mode), direct solid."""
    figure = _figure()
    axes = figure.add_subplot()
    lines: dict[tuple[str, str, str], list[dict[str, Any]]] = {}
    for study in scans:
        tag = study.path.stem if len(scans) > 1 else ""
        for point in study.document.get("points", []):
            lines.setdefault((tag, str(point["model"]), str(point["mode"])), []).append(point)
    for (tag, model, mode), points in sorted(lines.items()):
        points.sort(key=lambda p: p["batch_size"])
        axes.errorbar(
            [p["batch_size"] for p in points],
            [p["throughput_mean"] for p in points],
            yerr=[p.get("throughput_sem", 0.0) for p in points],
            marker="o",
            capsize=3,
            ls="-" if mode == "direct" else "--",
            label=" ".join(part for part in (tag, model, mode) if part),
        )
    axes.set_xscale("log", base=2)
    axes.set_yscale("log")
    axes.set_xlabel("batch size")
    axes.set_ylabel("throughput (items/s), mean ± s.e.m.")
    axes.set_title("Throughput vs batch size (direct solid, served dashed)")
    axes.grid(True, which="both", lw=0.3)
    axes.legend(fontsize=7)
    return _png(figure)


def load_figure(loads: Sequence[StudyFile]) -> bytes:
    """p99 latency vs throughput, one panel per model, one line per (generator, protocol,
    batch), each point labelled with its concurrency (or request rate); p50 dotted when a
    panel has few lines."""
    panels: dict[str, dict[tuple[str, str, int], list[dict[str, Any]]]] = {}
    for study in loads:
        tag = study.path.stem if len(loads) > 1 else ""
        model = str((study.document.get("settings") or {}).get("model", ""))
        for row in study.document.get("rows", []):
            if row.get("throughput") is None:
                continue  # a load level with no measurement (its error is in the table)
            name = " ".join(part for part in (tag, str(row.get("model") or model)) if part)
            key = (str(row["generator"]), str(row["protocol"]), int(row["batch_size"]))
            panels.setdefault(name, {}).setdefault(key, []).append(row)
    figure = _figure(width=10.0, height=4.2 * max(len(panels), 1))
    for number, (name, lines) in enumerate(sorted(panels.items()), start=1):
        axes = figure.add_subplot(max(len(panels), 1), 1, number)
        for index, ((generator, protocol, batch), measured) in enumerate(sorted(lines.items())):
            rows, rounds = _median_per_level(measured)
            colour = f"C{index % 10}"
            label = f"{generator} {protocol} b={batch}" + (
                f" (median of {rounds})" if rounds > 1 else ""
            )
            x = [r["throughput"] for r in rows]
            axes.plot(
                x, [r["p99_us"] / 1e3 for r in rows], "o-", color=colour, label=f"{label} p99"
            )
            if len(lines) <= 3:
                axes.plot(
                    x, [r["p50_us"] / 1e3 for r in rows], "s:", color=colour, label=f"{label} p50"
                )
            for row in rows:
                level = (
                    f"c={row['concurrency']}"
                    if row.get("concurrency")
                    else f"{row['request_rate']:g}/s"
                )
                axes.annotate(
                    level,
                    (row["throughput"], row["p99_us"] / 1e3),
                    fontsize=6,
                    textcoords="offset points",
                    xytext=(3, 3),
                )
        axes.set_yscale("log")
        axes.set_xlabel("throughput (inferences/s)")
        axes.set_ylabel("latency (ms)")
        axes.set_title(f"Latency vs throughput, one point per concurrency: {name}".rstrip(": "))
        axes.grid(True, which="both", lw=0.3)
        axes.legend(fontsize=7, loc="upper left", bbox_to_anchor=(1.01, 1.0))
    return _png(figure)


def _level(row: dict[str, Any]) -> tuple[int, float]:
    return (row.get("concurrency") or 0, row.get("request_rate") or 0.0)


def _median_per_level(rows: Sequence[dict[str, Any]]) -> tuple[list[dict[str, Any]], int]:
    """One row per load level, in level order: the median throughput and latencies where a
    study measured a level several times (rounds), so a line does not zigzag between them;
    and the most rows any level had."""
    by_level: dict[tuple[int, float], list[dict[str, Any]]] = {}
    for row in rows:
        by_level.setdefault(_level(row), []).append(row)
    out = []
    for level in sorted(by_level):
        group = by_level[level]
        merged = dict(group[0])
        for field in ("throughput", "p50_us", "p99_us"):
            merged[field] = statistics.median(float(r[field]) for r in group)
        out.append(merged)
    return out, max((len(g) for g in by_level.values()), default=0)


def monitor_figure(log: MonitorLog, spans: Sequence[tuple[float, float, str]] = ()) -> bytes:
    """Every utilisation column over time (seconds from the first sample); ``spans`` (start,
    end, label) in Unix seconds shade the stretches a study measured."""
    figure = _figure(height=3.8)
    axes = figure.add_subplot()
    times = log.timestamps
    origin = times[0] if times else 0.0
    x = [t - origin for t in times]
    for name, values in log.columns.items():
        if name == "Timestamp" or all(math.isnan(v) for v in values):
            continue  # an empty GPU column: no GPU source on that machine
        axes.plot(x, values, lw=1.0, label=name)
    for index, (start, end, label) in enumerate(spans):
        axes.axvspan(start - origin, end - origin, color=f"C{index % 10}", alpha=0.08)
        axes.annotate(label, (start - origin, 102), fontsize=7, va="bottom")
    axes.set_ylim(0, 110 if spans else 105)
    axes.set_xlabel("seconds")
    axes.set_ylabel("utilisation (%)")
    axes.set_title(f"Utilisation timeline: {log.path.name}")
    axes.grid(True, lw=0.3)
    axes.legend(fontsize=7, loc="lower right")
    return _png(figure)


def tune_figure(tune: StudyFile) -> bytes:
    """Throughput vs p99 of every tried point, the Pareto front, the bound and the pick."""
    document = tune.document
    every = document.get("points", [])
    points = [p for p in every if p.get("throughput") is not None]
    figure = _figure()
    axes = figure.add_subplot()
    axes.scatter(
        [p["p99_ms"] for p in points],
        [p["throughput"] for p in points],
        s=18,
        color="0.6",
        label="tried",
    )
    front = sorted(
        (every[i] for i in document.get("pareto", []) if i < len(every)),
        key=lambda p: p["p99_ms"],
    )
    if front:
        axes.plot(
            [p["p99_ms"] for p in front],
            [p["throughput"] for p in front],
            "o-",
            color="C0",
            label="Pareto front",
        )
    bound = document.get("p99_ms_bound")
    if bound:
        axes.axvline(bound, color="C3", ls="--", lw=1, label=f"p99 bound {bound:g} ms")
    for key, colour, label in (("baseline", "C1", "model's config"), ("best", "C2", "chosen")):
        index = document.get(key)
        if index is not None and index < len(every) and every[index].get("throughput"):
            point = every[index]
            axes.scatter(
                [point["p99_ms"]],
                [point["throughput"]],
                s=90,
                marker="*",
                color=colour,
                label=label,
                zorder=3,
            )
    axes.set_xlabel("p99 latency (ms)")
    axes.set_ylabel("throughput (inferences/s)")
    axes.set_title(f"bench tune: {document.get('model', '')}")
    axes.grid(True, lw=0.3)
    axes.legend(fontsize=7)
    return _png(figure)
