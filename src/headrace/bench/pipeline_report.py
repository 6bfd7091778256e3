"""Reporting for the pipeline study: a rich table, a JSON result file, an optional plot."""

from __future__ import annotations

import datetime
import json
from collections.abc import Sequence
from dataclasses import asdict
from typing import Any

from headrace.bench.machine import machine_info
from headrace.bench.pipeline import CaseResult, PipelineStudyConfig
from headrace.files import atomic_write_bytes

__all__ = ["plot_results", "print_table", "results_document", "results_table", "write_json"]


def print_table(results: Sequence[CaseResult], device: str, console: Any = None) -> None:
    """Print :func:`results_table`."""
    from rich.console import Console

    (console or Console()).print(results_table(results, device))


def results_table(results: Sequence[CaseResult], device: str) -> Any:
    """Batches/s, speedup and bounds per case, grouped by CPU delay.

    ``ideal`` is the slowest stage alone (perfect overlap), ``seq. bound`` the sum of the
    stages (no overlap); see :mod:`headrace.bench.pipeline` for how stages are measured. The
    mode names the buffer count (sequential, double, N-way) and the instance count goes in
    the title, so the table fits an 80-column terminal.
    """
    from rich.table import Table

    counts = sorted({case.instances for case in results})  # one, as a study drives them
    title = f"pipeline study on {device}"
    if counts:
        title += f", {', '.join(map(str, counts))} instance{'s' if counts != [1] else ''}"
    table = Table(title=title)
    for column in ("delay ms", "mode", "batches/s", "speedup", "ideal", "seq. bound"):
        table.add_column(column, justify="right")
    table.add_column("% of ideal", justify="right")
    for case in results:
        share = case.batches_per_s / case.ideal_batches_per_s if case.ideal_batches_per_s else 0
        table.add_row(
            f"{case.cpu_delay_ms:g}",
            case.label,
            f"{case.batches_per_s:.1f}",
            f"{case.speedup:.2f}x",
            f"{case.ideal_batches_per_s:.1f}",
            f"{case.sequential_bound_batches_per_s:.1f}",
            f"{100 * share:.0f}%",
        )
    table.caption = "stage means (ms) of the sequential runs: " + "; ".join(
        f"delay {case.cpu_delay_ms:g}: "
        + " ".join(f"{k}={v:.2f}" for k, v in case.stage_mean_ms.items() if v > 0)
        for case in results
        if case.num_buffers == min(c.num_buffers for c in results)
    )
    return table


def results_document(
    config: PipelineStudyConfig, device: str, results: Sequence[CaseResult]
) -> dict[str, Any]:
    """The JSON document: what ran, where, and what it measured."""
    return {
        "study": "pipeline",
        "created": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "device": device,
        "config": asdict(config),
        "machine": machine_info(),
        "results": [{**asdict(case), "mode": case.label} for case in results],
    }


def write_json(path: str, document: dict[str, Any]) -> None:
    """Write atomically (temp file + rename) so a crash never leaves half a result."""
    atomic_write_bytes(path, (json.dumps(document, indent=2) + "\n").encode("utf-8"))


def plot_results(path: str, results: Sequence[CaseResult], device: str) -> str | None:
    """Batches/s against num_buffers, one line per CPU delay with its ideal bound dashed.

    Returns None (and draws nothing) when matplotlib is not installed.
    """
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return None
    figure, axes = plt.subplots(figsize=(6, 4))
    for delay in sorted({case.cpu_delay_ms for case in results}):
        cases = [case for case in results if case.cpu_delay_ms == delay]
        buffers = [case.num_buffers for case in cases]
        line = axes.plot(buffers, [c.batches_per_s for c in cases], "o-", label=f"{delay:g} ms")
        axes.axhline(cases[0].ideal_batches_per_s, ls="--", color=line[0].get_color(), lw=0.8)
    axes.set_xticks(sorted({case.num_buffers for case in results}))
    axes.set_xlabel("num_buffers (1 = sequential)")
    axes.set_ylabel("batches/s")
    axes.set_title(f"pipeline study on {device} (dashed: slowest stage alone)")
    axes.legend(title="CPU delay")
    figure.tight_layout()
    figure.savefig(path)
    plt.close(figure)
    return path
