"""The seed MLP over a million-row Parquet file with ``headrace run``: rows/s, checked rows.

    python examples/mlp_parquet/mlp_parquet.py                      # 1M rows
    python examples/mlp_parquet/mlp_parquet.py --rows 100000 --batch-size 8192 --instances 2
    python examples/mlp_parquet/mlp_parquet.py --tiny               # seconds (the smoke test)

Steps: write ``features.parquet`` (a ``features`` column of 64 float32 per row, row groups of
64Ki rows, fixed seed; kept and reused while its row count matches), export the seed MLP
(``headrace.repository.example_models.MLP``, 64 -> 256 -> 128 -> 64 -> 1) into a model
repository, run ``headrace run REPO/mlp features.parquet --map INPUT0=features --out OUT``
and compare windows of rows at random places with the torch module's own outputs.
"""

from __future__ import annotations

import argparse
import os
import shlex
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import torch

from headrace.batch.dataset import DataSpec
from headrace.batch.readers import open_reader
from headrace.batch.results import load_results
from headrace.repository import ModelRepository
from headrace.repository.example_models import MLP, seeded

TINY_ENV = "HEADRACE_EXAMPLE_TINY"
FEATURES = 64
ROW_GROUP = 65536


@dataclass(frozen=True)
class Result:
    """Throughput and how many rows were checked against torch, with the worst difference."""

    rows: int
    rows_per_second: float
    checked_rows: int
    max_abs_diff: float


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--workdir", default="headrace-example-mlp-parquet")
    parser.add_argument(
        "--tiny", action="store_true", default=os.environ.get(TINY_ENV) == "1",
        help=f"a few thousand rows (also {TINY_ENV}=1)",
    )  # fmt: skip
    parser.add_argument("--rows", type=int, default=0, help="rows to generate (1,000,000)")
    parser.add_argument("--batch-size", type=int, default=0, help="rows per batch (4096)")
    parser.add_argument("--instances", type=int, default=2, help="model instances")
    parser.add_argument("--num-buffers", type=int, default=2, help="batches in flight each")
    parser.add_argument("--export", choices=("onnx", "torchscript"), default="onnx")
    parser.add_argument("--device", default="cpu", help="cpu, cuda or cuda:N")
    parser.add_argument("--ray", action="store_true", help="run as a Ray Data pipeline")
    parser.add_argument("--num-gpus", type=float, default=0.0, help="GPUs per Ray actor")
    parser.add_argument(
        "--threads", type=int, default=0, help="torch CPU threads (0: torch's default)"
    )
    args = parser.parse_args(argv)
    args.rows = args.rows or (5000 if args.tiny else 1_000_000)
    args.batch_size = args.batch_size or (512 if args.tiny else 4096)
    return args


def headrace_run(argv: list[str]) -> Any:
    """``headrace run ARGV`` in this process (the CLI's own parser and runners); its summary."""
    from headrace.batch.cli import run_command

    print("$ headrace " + shlex.join(argv), flush=True)
    return run_command(argv)


def write_features(path: str, rows: int, seed: int = 0) -> None:
    """Standard-normal features, one row group at a time (memory stays at one group)."""
    if os.path.isfile(path) and pq.ParquetFile(path).metadata.num_rows == rows:
        return  # same seed, same rows: reuse it (and its fingerprint, so reruns resume)
    rng = np.random.default_rng(seed)
    schema = pa.schema([("features", pa.list_(pa.float32(), FEATURES))])
    partial = path + ".partial"
    with pq.ParquetWriter(partial, schema) as writer:
        for start in range(0, rows, ROW_GROUP):
            count = min(ROW_GROUP, rows - start)
            values = rng.standard_normal(count * FEATURES, dtype=np.float32)
            column = pa.FixedSizeListArray.from_arrays(pa.array(values), FEATURES)
            writer.write_table(pa.table({"features": column}, schema=schema))
    os.replace(partial, path)


def export(repo_dir: str, model: torch.nn.Module, args: Any) -> str:
    """The MLP as ``REPO/mlp`` (INPUT0 [64] -> OUTPUT0 [1]), replacing an earlier one."""
    repo = ModelRepository(repo_dir)
    if "mlp" in repo:
        repo.remove("mlp")
    entry = repo.add("mlp", max_batch_size=args.batch_size)
    entry.export_version(
        model,
        input_shapes={"INPUT0": (None, FEATURES)},
        output_names=["OUTPUT0"],
        format=args.export,
    )
    return entry.path


def check(model: torch.nn.Module, data: str, out: str, windows: int = 8) -> tuple[int, float]:
    """Compare ``windows`` runs of up to 128 rows at random places with torch's outputs."""
    results = load_results(out)
    scores = np.empty(len(results.row_ids), dtype=np.float32)
    scores[results.row_ids] = results.outputs["OUTPUT0"].reshape(-1)
    reader = open_reader(DataSpec(data))
    rng = np.random.default_rng(1)
    checked, worst = 0, 0.0
    try:
        if reader.num_rows != len(scores):
            raise SystemExit(f"headrace wrote {len(scores)} rows for {reader.num_rows} inputs")
        for start in rng.integers(0, max(1, reader.num_rows - 128), windows):
            stop = min(int(start) + 128, reader.num_rows)
            features = reader.read(int(start), stop).columns["features"]
            with torch.no_grad():
                expected = model(torch.from_numpy(features.copy())).numpy().reshape(-1)
            worst = max(worst, float(np.abs(scores[start:stop] - expected).max()))
            checked += stop - int(start)
    finally:
        reader.close()
    return checked, worst


def run(args: argparse.Namespace) -> Result:
    """Write the data, export the model, run ``headrace run``, check a sample of rows."""
    if args.threads:
        torch.set_num_threads(args.threads)
    work = os.path.abspath(args.workdir)
    os.makedirs(work, exist_ok=True)
    data = os.path.join(work, "features.parquet")
    write_features(data, args.rows)
    model = seeded(MLP)
    model_dir = export(os.path.join(work, "models"), model, args)
    out = os.path.join(work, "scores")
    argv = [
        "run", model_dir, data, "--out", out, "--map", "INPUT0=features",
        "--batch-size", str(args.batch_size), "--instances", str(args.instances),
        "--num-buffers", str(args.num_buffers), "--device", args.device, "--overwrite",
    ]  # fmt: skip
    if args.ray:
        argv += ["--ray", "--num-gpus", str(args.num_gpus)]
    summary = headrace_run(argv)
    checked, worst = check(model, data, out)
    return Result(summary.rows, summary.rows_per_second, checked, worst)


def main(argv: Sequence[str] | None = None) -> int:
    result = run(parse_args(argv))
    print(f"{result.rows:,} rows at {result.rows_per_second:,.0f} rows/s")
    print(f"{result.checked_rows} rows checked against torch: max |diff| {result.max_abs_diff:.2e}")
    if result.max_abs_diff > 1e-5:
        print("headrace's outputs differ from the torch module's", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
