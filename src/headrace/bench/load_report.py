"""``bench load`` results: a rich table and a JSON document with the machine beside the rows."""

from __future__ import annotations

import dataclasses
import json
import os
from collections.abc import Sequence
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from headrace.bench.load import LoadResult, LoadSettings

__all__ = ["free_path", "print_table", "results_document", "write_json"]


def results_document(
    settings: LoadSettings,
    results: Sequence[LoadResult],
    command: Sequence[str] = (),
    machine: dict[str, Any] | None = None,
) -> dict[str, Any]:
    from headrace.bench.machine import machine_info

    return {
        "study": "bench load",
        "created": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "command": list(command),
        "settings": {k: v for k, v in dataclasses.asdict(settings).items()},
        "units": "throughput in inferences/s; latencies and server breakdown in microseconds",
        "machine": machine if machine is not None else machine_info(),
        "rows": [result.as_dict() for result in results],
    }


def free_path(path: str | os.PathLike[str]) -> Path:
    """``path`` if no file is there, else the first free ``stem_2``, ``stem_3`` … beside it."""
    target = Path(path)
    number = 2
    while target.exists():
        target = Path(path).with_name(f"{Path(path).stem}_{number}{Path(path).suffix}")
        number += 1
    return target


def write_json(path: str | os.PathLike[str], document: dict[str, Any]) -> Path:
    target = Path(path)
    target.parent.mkdir(parents=True, exist_ok=True)
    target.write_text(json.dumps(document, indent=2, default=str) + "\n", encoding="utf-8")
    return target


def print_table(results: Sequence[LoadResult], title: str) -> None:
    from rich.console import Console
    from rich.table import Table

    table = Table(title=title)
    responses = any(r.row is not None and r.row.response_throughput is not None for r in results)
    columns = (
        "generator",
        "protocol",
        "batch",
        "load",
        "infer/s",
        *(("resp/s",) if responses else ()),
        "avg ms",
        "p50",
        "p90",
        "p95",
        "p99",
        "queue",
        "c.in",
        "c.infer",
        "c.out",
        "stable",
    )
    for column in columns:
        table.add_column(column, justify="left" if column in ("generator", "protocol") else "right")
    for result in results:
        load = (
            f"c={result.point.concurrency}"
            if result.point.concurrency
            else f"{result.point.request_rate:g}/s"
        )
        head = [result.generator, result.protocol, str(result.batch_size), load]
        row = result.row
        if row is None:
            table.add_row(*head, f"[red]{result.error[:60]}[/red]", *[""] * (len(columns) - 5))
            continue
        ms = [
            row.avg_us,
            row.p50_us,
            row.p90_us,
            row.p95_us,
            row.p99_us,
            row.server_queue_us,
            row.server_compute_input_us,
            row.server_compute_infer_us,
            row.server_compute_output_us,
        ]
        stable = "yes" if result.stable else "[yellow]no[/yellow]"
        if result.errors:
            stable += f" [red]{result.errors} err[/red]"
        rates = [f"{row.throughput:.1f}"]
        if responses:
            rates.append(
                "" if row.response_throughput is None else f"{row.response_throughput:.1f}"
            )
        table.add_row(*head, *rates, *[f"{v / 1000:.3f}" for v in ms], stable)
    console = Console()
    if not console.is_terminal:  # a log file or pipe: room for every column
        console = Console(width=160)
    console.print(table)
    print("latency columns in ms; queue/c.in/c.infer/c.out: server per request (statistics)")
    if responses:
        print(
            "resp/s: a decoupled model's responses per second; its latency is to the last "
            "response with outputs"
        )
