"""``bench tune`` results: the JSON document (the shape ``bench report`` reads) and a table."""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from headrace.bench.machine import machine_info
from headrace.bench.tune import Choice, Measurement, cost, pareto_front
from headrace.bench.tune_run import TuneOptions

__all__ = ["print_table", "tune_document", "write_new"]


def tune_document(
    *,
    model: str,
    model_dir: str,
    command: Sequence[str],
    options: TuneOptions,
    measurements: Sequence[Measurement],
    choice: Choice,
    p99_ms_bound: float,
    cost_function: str,
    written_config: str,
    created: str,
    side_by_side: Sequence[dict[str, Any]] = (),
) -> dict[str, Any]:
    """What was searched, each point's numbers, the front and the picks (indices into points)."""
    return {
        "study": "bench tune",
        "created": created,
        "command": list(command),
        "model": model,
        "model_dir": model_dir,
        "method": (
            "each setting written into a temporary copy of the model's folder and served by its "
            "own headrace serve on 127.0.0.1; at each concurrency the load generator's "
            "throughput and p99, the server's inference count (statistics endpoint) and its "
            "process tree's CPU seconds (psutil) over the whole load run; cost = spent seconds "
            "per million inferences; max_queue_delay_us -1 = no dynamic_batching; "
            "intra_op_threads 0 = the backend's share (usable cores / CPU instances)"
        ),
        "grid": {
            "instances": list(options.instances),
            "max_batch_sizes": list(options.max_batch_sizes),
            "queue_delays_us": list(options.queue_delays_us),
            "intra_op_threads": list(options.intra_op_threads),
            "concurrencies": list(options.concurrencies),
            "measurement_ms": options.measurement_ms,
            "budget_s": options.budget_s,
        },
        "p99_ms_bound": p99_ms_bound,
        "cost_function": cost_function,
        "machine": machine_info(),
        "points": [_point(m, cost_function) for m in measurements],
        "pareto": pareto_front(measurements),
        **choice.as_dict(),
        "written_config": written_config or None,
        "side_by_side": list(side_by_side),
    }


def _point(m: Measurement, cost_function: str) -> dict[str, Any]:
    point: dict[str, Any] = {
        "config": m.setting.as_dict(),
        "concurrency": m.concurrency,
        "baseline": m.baseline,
        "throughput": m.throughput,
        "p50_ms": m.p50_ms,
        "p99_ms": m.p99_ms,
        "inferences": m.inferences,
        "wall_s": round(m.wall_s, 3),
        "cpu_s": round(m.cpu_s, 3),
        "cost": cost(m, cost_function),
        "generator": m.generator,
    }
    if m.error:
        point["error"] = m.error
    return point


def print_table(document: dict[str, Any]) -> None:
    from rich.console import Console
    from rich.table import Table

    table = Table(
        title=f"bench tune {document['model']}: p99 bound {document['p99_ms_bound']:g} ms"
    )
    for column in (
        "#",
        "inst",
        "max b",
        "delay µs",
        "thr",
        "c",
        "infer/s",
        "p99 ms",
        "cost",
        "note",
    ):
        table.add_column(column, justify="right")
    front = set(document["pareto"])
    for index, p in enumerate(document["points"]):
        notes = [
            w
            for w, hit in (
                ("chosen", index == document["best"]),
                ("fastest", index == document["fastest"]),
                ("model's", p["baseline"]),
                ("front", index in front),
            )
            if hit
        ]
        measured = p["throughput"] is not None
        table.add_row(
            str(index),
            *(str(v) for v in p["config"].values()),
            str(p["concurrency"]),
            f"{p['throughput']:.1f}" if measured else "-",
            f"{p['p99_ms']:.2f}" if measured else "-",
            f"{p['cost']:.1f}" if p["cost"] is not None else "-",
            " ".join(notes) if measured else p.get("error", "")[:50],
        )
    console = Console()
    if not console.is_terminal:
        console = Console(width=140)
    console.print(table)
    print(f"cost: {document['cost_function']}")
    for pair in document.get("side_by_side", []):
        if "error" in pair:
            print(f"side by side at c={pair['concurrency']}: {pair['error'][:200]}")
            continue
        chosen, own = pair["chosen"], pair["baseline"]
        gain = pair["throughput_gain"]
        print(
            f"side by side at c={pair['concurrency']} ({len(chosen['rounds'])} rounds each): "
            f"chosen {_rate(chosen)}, model's own {_rate(own)}"
            + (f", gain {gain:.2f}x" if gain else "")
            + f", faster in {pair.get('rounds_won', '?')} of {len(chosen['rounds'])} rounds"
        )


def _rate(side: dict[str, Any]) -> str:
    if side["throughput"] is None:
        return "not measured"
    return f"{side['throughput']:.1f}/s at p99 {side['p99_ms']:.2f} ms"


def write_new(path: str, text: str, explicit: str = "") -> Path:
    """Write ``text`` to ``path``; unless the path was asked for (``--out``), a file already
    there is kept and the next free ``STEM_2.json``… is used."""
    target = Path(path)
    if not explicit:
        stem, suffix = os.path.splitext(path)
        index = 2
        while target.exists():
            target = Path(f"{stem}_{index}{suffix}")
            index += 1
    target.parent.mkdir(parents=True, exist_ok=True)
    target.write_text(text, encoding="utf-8")
    return target
