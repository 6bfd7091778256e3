"""Offline inference: headrace run vs a naive loop, a plain loop and Ray Data's map_batches.

Ray listens on every interface, so run the whole benchmark in a private network namespace
(as root), loopback only:

    unshare -n sh -c 'ip link set lo up && RAY_USAGE_STATS_ENABLED=0 \
        exec python benchmarks/offline.py'
    ... exec python benchmarks/offline.py --rows 100000 --rounds 1   # a quick look

Systems (benchmarks/offline_systems.py), one fresh process per measurement, alternating over
rounds in a rotating order (2-core machines vary by +-20% from minute to minute):

- naive: the model reloaded for every batch of 4 (timed over a prefix: --naive-seconds);
- plain: the ceiling, one onnxruntime session in a Python loop over pyarrow's
  ``ParquetFile.iter_batches``, outputs collected and written once;
- local: headrace's local runner (``headrace run``); ray_runner: ``headrace run --ray``;
- ray_data: Ray Data as its documentation shows: ``read_parquet`` -> ``map_batches(class,
  compute=ActorPoolStrategy(size=N), batch_size=B)`` -> ``write_parquet``.

Every system runs the same ONNX file (the seed MLP, 64->256->128->64->1) with onnxruntime,
``--threads`` intra-op threads and one inter-op thread; headrace gets them from config.pbtxt
(``intra_op_thread_count``). Input: a cached Parquet file of --rows rows with one
``fixed_size_list<float32>[64]`` column ``x``. A run over --timeout is killed; headrace's
runners then report the rows of the shards they finished (marked partial).
Results: benchmarks/results/offline.json with the machine they ran on, and a table.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import asdict, replace
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

from offline_systems import SYSTEMS, Settings, started_file  # noqa: E402

from headrace.bench.machine import machine_info  # noqa: E402

FEATURES = 64
LABELS = {
    "naive": "naive (reload per batch of 4)",
    "plain": "plain loop (ceiling)",
    "local": "headrace run (local)",
    "ray_runner": "headrace run --ray",
    "ray_data": "Ray Data map_batches",
}


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--rows", type=int, default=1_000_000)
    p.add_argument("--row-group-rows", type=int, default=65_536, help="Parquet row group size")
    p.add_argument("--systems", default=",".join(SYSTEMS), help="comma-separated subset")
    p.add_argument("--rounds", type=int, default=3)
    p.add_argument("--batch-size", type=int, default=256, help="every system but naive")
    p.add_argument("--threads", type=int, default=1, help="onnxruntime intra-op threads")
    p.add_argument("--instances", type=int, default=1, help="headrace instances / Ray actors")
    p.add_argument("--num-buffers", type=int, default=2, help="headrace batches in flight")
    p.add_argument("--readers", type=int, default=2, help="headrace local reader threads")
    p.add_argument("--naive-seconds", type=float, default=5.0)
    p.add_argument("--timeout", type=float, default=180.0, help="seconds per measurement")
    p.add_argument("--cache", type=Path, default=Path.home() / ".cache/headrace/offline-bench")
    p.add_argument("--out", type=Path, default=HERE / "results/offline.json")
    args = p.parse_args(argv)
    args.systems = [s for s in args.systems.split(",") if s]
    unknown = sorted(set(args.systems) - set(SYSTEMS))
    if unknown:
        p.error(f"unknown systems {unknown} (systems: {', '.join(SYSTEMS)})")
    for name in ("rows", "row_group_rows", "rounds", "batch_size", "threads", "instances"):
        if getattr(args, name) < 1:
            p.error(f"--{name.replace('_', '-')} must be >= 1, got {getattr(args, name)}")
    return args


def ensure_data(cache: Path, rows: int, row_group_rows: int) -> Path:
    """The input file, generated once (seeded) and kept in ``cache``."""
    import numpy as np
    import pyarrow as pa
    import pyarrow.parquet as pq

    path = cache / f"features-{rows}-rg{row_group_rows}.parquet"
    if path.exists():
        return path
    cache.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(0)
    schema = pa.schema([("x", pa.list_(pa.float32(), FEATURES))])
    tmp = path.with_suffix(".tmp")
    with pq.ParquetWriter(tmp, schema) as writer:
        for start in range(0, rows, row_group_rows):
            count = min(row_group_rows, rows - start)
            values = rng.standard_normal(count * FEATURES, dtype=np.float32)
            column = pa.FixedSizeListArray.from_arrays(pa.array(values), FEATURES)
            writer.write_table(pa.table({"x": column}, schema=schema), row_group_size=count)
    tmp.rename(path)
    return path


def build_model(root: Path, batch_size: int, threads: int) -> Path:
    """REPO/mlp: the seed MLP exported to ONNX, its thread settings in config.pbtxt."""
    from headrace.repository import ModelRepository
    from headrace.repository.example_models import MLP, seeded

    entry = ModelRepository(str(root / "repo")).add("mlp", max_batch_size=batch_size)
    entry.export_version(seeded(MLP), input_shapes={"x": (None, FEATURES)}, output_names=["y"])
    entry.config.set_parameter("intra_op_thread_count", threads)
    entry.config.set_parameter("inter_op_thread_count", 1)
    return root / "repo" / "mlp"


def measure(system: str, settings: Settings, timeout: float) -> dict[str, Any]:
    """One run of ``system`` in its own process group, killed after ``timeout`` seconds."""
    command = [
        sys.executable,
        str(HERE / "offline_systems.py"),
        system,
        json.dumps(asdict(settings)),
    ]
    process = subprocess.Popen(
        command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, start_new_session=True
    )
    try:
        stdout, stderr = process.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        killed_at = time.monotonic()
        _stop_group(process)
        return {"system": system, **_partial(settings.out_dir, killed_at), "timed_out": True}
    lines = stdout.strip().splitlines()
    if process.returncode != 0 or not lines:
        tail = stderr.strip().splitlines()[-15:]
        return {"system": system, "error": f"exit {process.returncode}: " + "\n".join(tail)}
    return {**json.loads(lines[-1]), "timed_out": False}


def _stop_group(process: subprocess.Popen[str]) -> None:
    """SIGTERM the run's process group (Ray's processes included), SIGKILL if it lingers."""
    for sig, wait in ((signal.SIGTERM, 15.0), (signal.SIGKILL, 15.0)):
        try:
            os.killpg(process.pid, sig)
        except ProcessLookupError:
            return
        try:
            process.communicate(timeout=wait)
            return
        except subprocess.TimeoutExpired:
            continue


def _partial(out_dir: str, killed_at: float) -> dict[str, Any]:
    """Rows of the shards a killed headrace run finished, over the time it ran."""
    from headrace.batch.manifest import Manifest

    try:
        with open(started_file(out_dir), encoding="utf-8") as handle:
            started = float(handle.read())
        manifest = Manifest.load(out_dir)
    except (OSError, ValueError):
        return {"rows": 0, "seconds": 0.0, "rows_per_second": 0.0, "partial": True}
    rows = sum(r.stop - r.start for r in manifest.shards.values()) if manifest else 0
    seconds = killed_at - started
    return {"rows": rows, "seconds": seconds, "rows_per_second": rows / seconds, "partial": True}


def run_rounds(args: argparse.Namespace, base: Settings, work: Path) -> dict[str, list[dict]]:
    runs: dict[str, list[dict]] = {system: [] for system in args.systems}
    for index in range(args.rounds):
        shift = index % len(args.systems)
        for system in args.systems[shift:] + args.systems[:shift]:
            out_dir = work / f"out-{index}-{system}"
            load = os.getloadavg()[0]  # the 2 cores are shared with anything else running
            result = measure(system, replace(base, out_dir=str(out_dir)), args.timeout)
            result["load_average_1m"] = load
            shutil.rmtree(out_dir, ignore_errors=True)
            runs[system].append(result)
            shown = result.get("error") or f"{result['rows_per_second']:,.0f} rows/s"
            print(f"round {index + 1}/{args.rounds} {system}: {shown}", flush=True)
    return runs


def summarize(runs: dict[str, list[dict]]) -> dict[str, dict[str, Any]]:
    summary: dict[str, dict[str, Any]] = {}
    for system, results in runs.items():
        rates = [r["rows_per_second"] for r in results if "error" not in r]
        summary[system] = {
            "median_rows_per_second": statistics.median(rates) if rates else None,
            "rows_per_second": rates,
            "partial": any(r.get("partial") for r in results),
            "errors": [r["error"] for r in results if "error" in r],
            "runs": results,
        }
    plain = (summary.get("plain") or {}).get("median_rows_per_second")
    for entry in summary.values():
        median = entry["median_rows_per_second"]
        entry["ratio_vs_plain"] = median / plain if median is not None and plain else None
    return summary


def targets(summary: dict[str, dict[str, Any]]) -> dict[str, Any]:
    """The issue's targets: local >= 90% of the plain loop, and >= Ray Data's map_batches."""

    def median(system: str) -> float | None:
        return (summary.get(system) or {}).get("median_rows_per_second")

    local, plain, ray_data = median("local"), median("plain"), median("ray_data")
    return {
        "local_vs_plain": local / plain if local and plain else None,
        "local_vs_plain_met": bool(local and plain and local >= 0.9 * plain),
        "local_vs_ray_data": local / ray_data if local and ray_data else None,
        "local_vs_ray_data_met": bool(local and ray_data and local >= ray_data),
    }


def print_table(summary: dict[str, dict[str, Any]], title: str) -> None:
    from rich.console import Console
    from rich.table import Table

    table = Table(title=title)
    for column in ("system", "median rows/s", "rounds (rows/s)", "vs plain"):
        table.add_column(column, justify="left" if column == "system" else "right")
    for system, entry in summary.items():
        median, ratio = entry["median_rows_per_second"], entry["ratio_vs_plain"]
        rounds = ", ".join(f"{rate:,.0f}" for rate in entry["rows_per_second"])
        mark = " (partial)" if entry["partial"] and system != "naive" else ""
        table.add_row(
            LABELS[system] + mark,
            "error" if median is None else f"{median:,.0f}",
            rounds or "; ".join(entry["errors"])[:60],
            "" if ratio is None else f"{ratio:.3f}",
        )
    Console().print(table)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    data = ensure_data(args.cache, args.rows, args.row_group_rows)
    work = Path(tempfile.mkdtemp(prefix="headrace-offline-bench-"))
    try:
        model = build_model(work, args.batch_size, args.threads)
        base = Settings(
            data=str(data),
            model_dir=str(model),
            out_dir="",
            batch_size=args.batch_size,
            threads=args.threads,
            instances=args.instances,
            num_buffers=args.num_buffers,
            readers=args.readers,
            naive_seconds=args.naive_seconds,
        )
        started = datetime.now(timezone.utc).isoformat()
        summary = summarize(run_rounds(args, base, work))
    finally:
        shutil.rmtree(work, ignore_errors=True)
    settings = {**asdict(base), "rows": args.rows, "row_group_rows": args.row_group_rows}
    for key in ("data", "model_dir", "out_dir"):
        settings.pop(key)
    document = {
        "benchmark": "offline",
        "started_at": started,
        "command": "python benchmarks/offline.py " + " ".join(argv or sys.argv[1:]),
        "settings": {**settings, "rounds": args.rounds, "timeout_s": args.timeout},
        "machine": machine_info(),
        "systems": summary,
        "targets": targets(summary),
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(document, indent=1) + "\n", encoding="utf-8")
    print_table(summary, f"{args.rows:,} rows, batch {args.batch_size}, {args.threads} thread(s)")
    print(json.dumps(document["targets"]))
    print(f"results: {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
