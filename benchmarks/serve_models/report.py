"""Summaries of the serve_overhead records: medians over rounds, ratios, tables (rich, markdown).

A record is one perf_analyzer load (system, model, protocol, concurrency, round) or one direct
run (model, batch size, round). The summary keeps one row per (model, protocol, concurrency)
with every system side by side; ratios compare headrace with Triton and PyTriton on the same
python-backend model, and with direct execution of the same model file at the batch size
headrace's batcher formed (inference_count / execution_count from its statistics endpoint).
"""

from __future__ import annotations

import statistics
from collections import defaultdict
from typing import Any

__all__ = ["markdown_table", "medians", "rich_table", "summarize"]

_SERVED = ("headrace", "triton", "pytriton")
_METRICS = (
    "throughput",
    "p50_us",
    "p90_us",
    "p99_us",
    "avg_batch",
    "server_queue_us",
    "server_compute_input_us",
    "server_compute_infer_us",
    "server_compute_output_us",
    "server_cpu_us_per_inference",
    "client_cpu_us_per_inference",
)


def _median(values: list[float]) -> float | None:
    return statistics.median(values) if values else None


def medians(
    records: list[dict[str, Any]], by: str = "system", keep: tuple[str, ...] = _SERVED
) -> dict[tuple[str, str, str, int], dict[str, Any]]:
    """Medians over rounds of every load metric, per (``record[by]``, model, protocol, c).

    Only records whose ``by`` is in ``keep`` (all of them for an empty ``keep``) and that
    measured something count.
    """
    groups: dict[tuple[str, str, str, int], list[dict[str, Any]]] = defaultdict(list)
    for r in records:
        if keep and r[by] not in keep:
            continue
        if r.get("throughput") is not None and "error" not in r:
            groups[(r[by], r["model"], r["protocol"], int(r["concurrency"]))].append(r)
    out = {}
    for key, group in groups.items():
        merged: dict[str, Any] = {
            m: _median([g[m] for g in group if g.get(m) is not None]) for m in _METRICS
        }
        throughputs = [g["throughput"] for g in group]
        merged["rounds"] = len(group)
        merged["throughput_min"] = min(throughputs)
        merged["throughput_max"] = max(throughputs)
        merged["unstable_rounds"] = sum(1 for g in group if not g.get("stable", True))
        out[key] = merged
    return out


def _direct(records: list[dict[str, Any]]) -> dict[tuple[str, int], float]:
    groups: dict[tuple[str, int], list[float]] = defaultdict(list)
    for r in records:
        if r["system"] == "direct" and "error" not in r:
            groups[(r["model"], r["batch_size"])].append(r["throughput"])
    return {key: statistics.median(values) for key, values in groups.items()}


def _nearest_direct(
    direct: dict[tuple[str, int], float], model: str, avg_batch: float | None
) -> dict[str, Any] | None:
    """Direct throughput at the measured batch size closest to ``avg_batch`` (medians over
    rounds can round to a size no single round measured)."""
    sizes = [size for name, size in direct if name == model]
    if not avg_batch or not sizes:
        return None
    size = min(sizes, key=lambda s: (abs(s - avg_batch), s))
    return {"batch_size": size, "throughput": direct[(model, size)]}


def _ratio(a: float | None, b: float | None) -> float | None:
    return a / b if a is not None and b else None


def summarize(records: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """One row per (model, protocol, concurrency) with all systems and the ratios."""
    served = medians(records)
    direct = _direct(records)
    rows = []
    for model, protocol, concurrency in sorted({k[1:] for k in served}):
        row: dict[str, Any] = {"model": model, "protocol": protocol, "concurrency": concurrency}
        for system in _SERVED:
            row[system] = served.get((system, model, protocol, concurrency))
        ours = row["headrace"]
        row["direct"] = _nearest_direct(direct, model, ours["avg_batch"] if ours else None)
        ours_tp = ours["throughput"] if ours else None
        row["headrace_over_triton"] = _ratio(ours_tp, (row["triton"] or {}).get("throughput"))
        row["headrace_over_pytriton"] = _ratio(ours_tp, (row["pytriton"] or {}).get("throughput"))
        row["headrace_over_direct"] = _ratio(ours_tp, (row["direct"] or {}).get("throughput"))
        rows.append(row)
    return rows


_HEADERS = (
    "model",
    "proto",
    "c",
    "headrace inf/s",
    "p50/p90/p99 ms",
    "batch",
    "triton inf/s",
    "triton p99",
    "pytriton inf/s",
    "pytriton p99",
    "direct inf/s @b",
    "hr/triton",
    "hr/pytriton",
    "hr/direct",
    "server CPU us/inf hr/triton",
)


def _cells(row: dict[str, Any]) -> list[str]:
    def tp(system: str) -> str:
        entry = row[system]
        return f"{entry['throughput']:.0f}" if entry else "-"

    def p99(system: str) -> str:
        entry = row[system]
        return f"{entry['p99_us'] / 1000:.1f}" if entry else "-"

    def cpu(system: str) -> str:
        value = (row[system] or {}).get("server_cpu_us_per_inference")
        return f"{value:.0f}" if value is not None else "-"

    def ratio(key: str) -> str:
        return f"{row[key]:.2f}" if row[key] is not None else "-"

    ours = row["headrace"]
    latencies = (
        "/".join(
            f"{ours[k] / 1000:.1f}" if ours[k] is not None else "-"
            for k in ("p50_us", "p90_us", "p99_us")
        )
        if ours
        else "-"
    )
    direct = row["direct"]
    direct_cell = (
        f"{direct['throughput']:.0f} @{direct['batch_size']}"
        if direct and direct["throughput"]
        else "-"
    )
    return [
        row["model"],
        row["protocol"],
        str(row["concurrency"]),
        tp("headrace"),
        latencies,
        f"{ours['avg_batch']:.1f}" if ours and ours["avg_batch"] else "-",
        tp("triton"),
        p99("triton"),
        tp("pytriton"),
        p99("pytriton"),
        direct_cell,
        ratio("headrace_over_triton"),
        ratio("headrace_over_pytriton"),
        ratio("headrace_over_direct"),
        f"{cpu('headrace')}/{cpu('triton')}",
    ]


def markdown_table(rows: list[dict[str, Any]]) -> str:
    """The summary as a GitHub markdown table (medians over rounds)."""
    lines = ["| " + " | ".join(_HEADERS) + " |", "|" + "---|" * len(_HEADERS)]
    lines += ["| " + " | ".join(_cells(row)) + " |" for row in rows]
    return "\n".join(lines) + "\n"


def rich_table(rows: list[dict[str, Any]], title: str) -> Any:
    """The summary as a rich Table for the terminal."""
    from rich.table import Table

    table = Table(title=title)
    for header in _HEADERS:
        table.add_column(header, justify="left" if header in ("model", "proto") else "right")
    for row in rows:
        table.add_row(*_cells(row))
    return table


def write_document(
    path: Any,
    benchmark: str,
    argv: list[str],
    args: Any,
    *,
    started: float,
    error: str | None,
    summary: Any,
    records: list[dict[str, Any]],
) -> None:
    """Write a benchmark's result file: what ran, on which machine, its summary and records.

    ``started`` is the run's ``time.monotonic()`` at its start; ``args``' ``out`` and ``keep``
    are left out of the settings (where the file goes is not a setting of the measurement).
    """
    import json
    import time
    from datetime import datetime, timezone
    from pathlib import Path

    from headrace.bench.machine import machine_info

    document = {
        "benchmark": benchmark,
        "date": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "duration_s": round(time.monotonic() - started, 1),
        "command": " ".join(["python", f"benchmarks/{benchmark}.py", *argv]),
        "error": error,
        "machine": machine_info(),
        "settings": {k: v for k, v in vars(args).items() if k not in ("out", "keep")},
        "summary": summary,
        "records": records,
    }
    target = Path(path)
    target.parent.mkdir(parents=True, exist_ok=True)
    target.write_text(json.dumps(document, indent=1, default=str) + "\n")
