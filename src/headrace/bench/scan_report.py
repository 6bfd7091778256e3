"""Reporting for the batch-size scan: a rich table, the JSON document, an optional plot."""

from __future__ import annotations

import datetime
import os
from collections.abc import Sequence
from typing import Any

from headrace.bench.machine import machine_info
from headrace.bench.pipeline_report import write_json
from headrace.bench.scan import ScanOptions, ScanPoint, Target

__all__ = ["free_path", "plot_scan", "print_table", "scan_document", "write_json"]


def print_table(points: Sequence[ScanPoint], title: str, console: Any = None) -> None:
    """Throughput mean ± s.e.m. and latency percentiles per (model, mode, batch size)."""
    from rich.console import Console
    from rich.table import Table

    table = Table(title=title)
    for column in ("model", "mode", "batch", "items/s", "± s.e.m.", "p50 ms", "p99 ms"):
        table.add_column(column, justify="left" if column in ("model", "mode") else "right")
    for p in sorted(points, key=lambda p: (p.model, p.mode, p.batch_size)):
        table.add_row(
            p.model,
            p.mode,
            str(p.batch_size),
            f"{p.throughput_mean:,.1f}",
            f"{p.throughput_sem:,.1f}",
            f"{p.latency_ms['p50']:.3f}",
            f"{p.latency_ms['p99']:.3f}",
        )
    (console or Console()).print(table)


def scan_document(
    targets: Sequence[Target],
    options: ScanOptions,
    points: Sequence[ScanPoint],
    *,
    command: Sequence[str],
    monitor: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """What ran, where, how it was timed, and what it measured."""
    return {
        "study": "scan",
        "created": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "command": list(command),
        "method": (
            f"{options.trials} trials per batch size after {options.warmup} untimed ones; "
            "standard-normal inputs generated per trial outside the stopwatch; "
            "perf_counter_ns around one inference (direct: hand-over, staging to the device, "
            "compute, cuda synchronize on a GPU; served: one tritonclient infer call from one "
            "client); throughput = batch / seconds per trial; mean and s.e.m. = std/sqrt(n); "
            "targets take turns at each batch size"
        ),
        "options": {
            "batch_sizes": list(options.batch_sizes),
            "trials": options.trials,
            "warmup": options.warmup,
            "seed": options.seed,
        },
        "targets": [
            {"model": t.model, "mode": t.mode, "device": t.device or None, "server": t.server}
            for t in targets
        ],
        "machine": machine_info(),
        "monitor": monitor,
        "points": [p.as_dict() for p in points],
    }


def free_path(path: str) -> str:
    """``path`` if no file is there, else the first free ``STEM_2.json``, ``STEM_3.json``…"""
    if not os.path.exists(path):
        return path
    stem, suffix = os.path.splitext(path)
    index = 2
    while os.path.exists(f"{stem}_{index}{suffix}"):
        index += 1
    return f"{stem}_{index}{suffix}"


def plot_scan(path: str, points: Sequence[ScanPoint], title: str) -> str | None:
    """Throughput vs batch size with s.e.m. error bars, one line per (model, mode), log-log.

    Returns None (and draws nothing) when matplotlib is not installed.
    """
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return None
    figure, axes = plt.subplots(figsize=(7, 4.5))
    for model, mode in sorted({(p.model, p.mode) for p in points}):
        line = sorted(
            (p for p in points if (p.model, p.mode) == (model, mode)), key=lambda p: p.batch_size
        )
        axes.errorbar(
            [p.batch_size for p in line],
            [p.throughput_mean for p in line],
            yerr=[p.throughput_sem for p in line],
            marker="o",
            capsize=3,
            ls="-" if mode == "direct" else "--",
            label=f"{model} {mode}",
        )
    axes.set_xscale("log", base=2)
    axes.set_yscale("log")
    axes.set_xlabel("batch size")
    axes.set_ylabel("throughput (items/s), mean ± s.e.m.")
    axes.set_title(title)
    axes.grid(True, which="both", lw=0.3)
    axes.legend(fontsize=8)
    figure.tight_layout()
    figure.savefig(path)
    plt.close(figure)
    return path
