"""The five systems benchmarks/offline.py compares, each run alone in a fresh process.

    python benchmarks/offline_systems.py SYSTEM SETTINGS_JSON   # prints one JSON result line

One process per measurement, so that a Ray cluster left by one system never steals CPU from
the next, and a run past its time limit can be killed without taking the driver with it.
Every system reads the same Parquet file, runs the same ONNX file with onnxruntime under the
same thread settings, and writes its outputs as Parquet. Timing starts after imports (and
after ``ray.init`` for the Ray systems) and includes model loading, Parquet decoding,
inference and writing the outputs.
"""

from __future__ import annotations

import json
import os
import sys
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np

SYSTEMS = ("naive", "plain", "local", "ray_runner", "ray_data")


@dataclass(frozen=True)
class Settings:
    """Everything a run needs, as plain data (passed to the worker process as JSON)."""

    data: str  # the Parquet file: one fixed_size_list<float32>[64] column "x"
    model_dir: str  # REPO/mlp with config.pbtxt (thread parameters) and 1/model.onnx
    out_dir: str  # this run's output folder (must not exist yet)
    batch_size: int = 256
    threads: int = 1  # onnxruntime intra-op threads, every system
    instances: int = 1  # model instances (local runner) / actors (Ray runner, Ray Data)
    num_buffers: int = 2
    readers: int = 2
    naive_batch: int = 4
    naive_seconds: float = 5.0
    ray_cpus: int = 2

    @property
    def model_file(self) -> str:
        return os.path.join(self.model_dir, "1", "model.onnx")


@dataclass(frozen=True)
class Result:
    """One measurement: rows done in ``seconds``; ``partial`` when only a prefix was timed."""

    system: str
    rows: int
    seconds: float
    partial: bool = False

    @property
    def rows_per_second(self) -> float:
        return self.rows / self.seconds if self.seconds > 0 else 0.0


def session(settings: Settings) -> Any:
    """An onnxruntime session with the thread settings headrace gets from config.pbtxt."""
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.intra_op_num_threads = settings.threads
    options.inter_op_num_threads = 1
    return ort.InferenceSession(
        settings.model_file, sess_options=options, providers=["CPUExecutionProvider"]
    )


def features(batch: Any) -> np.ndarray:
    """The ``x`` column of an Arrow record batch as a [rows, 64] float32 array (no copy)."""
    column = batch.column(batch.schema.get_field_index("x"))
    return column.flatten().to_numpy().reshape(len(column), -1)


def write_outputs(outputs: list[np.ndarray], out_dir: str) -> None:
    import pyarrow as pa
    import pyarrow.parquet as pq

    os.makedirs(out_dir, exist_ok=True)
    y = np.concatenate(outputs) if outputs else np.empty((0, 1), np.float32)
    pq.write_table(pa.table({"y": y.reshape(-1)}), os.path.join(out_dir, "part-0.parquet"))


def run_naive(settings: Settings) -> Result:
    """The pattern to avoid: load the model for every batch of 4 (timed over a prefix)."""
    import pyarrow.parquet as pq

    started = time.monotonic()
    deadline = started + settings.naive_seconds
    outputs, rows = [], 0
    for batch in pq.ParquetFile(settings.data).iter_batches(batch_size=settings.naive_batch):
        model = session(settings)
        outputs.append(model.run(None, {"x": features(batch)})[0])
        rows += batch.num_rows
        if time.monotonic() >= deadline:
            break
    write_outputs(outputs, settings.out_dir)
    return Result("naive", rows, time.monotonic() - started, partial=True)


def run_plain(settings: Settings) -> Result:
    """The ceiling: one session, pyarrow batches in a loop, outputs collected then written."""
    import pyarrow.parquet as pq

    started = time.monotonic()
    model = session(settings)
    outputs, rows = [], 0
    for batch in pq.ParquetFile(settings.data).iter_batches(batch_size=settings.batch_size):
        outputs.append(model.run(None, {"x": features(batch)})[0])
        rows += batch.num_rows
    write_outputs(outputs, settings.out_dir)
    return Result("plain", rows, time.monotonic() - started)


def mark_start(settings: Settings) -> float:
    """Now, also written next to the output folder so a killed run's rate can be recovered."""
    now = time.monotonic()  # CLOCK_MONOTONIC: the same clock in the driver process
    with open(started_file(settings.out_dir), "w", encoding="utf-8") as handle:
        handle.write(repr(now))
    return now


def started_file(out_dir: str) -> str:
    return out_dir.rstrip("/") + ".started"


def _job(settings: Settings) -> Any:
    from headrace.batch.dataset import DataSpec
    from headrace.batch.job import Job, JobOptions
    from headrace.repository.resolve import ModelSource

    options = JobOptions(
        batch_size=settings.batch_size,
        instances=settings.instances,
        num_buffers=settings.num_buffers,
        readers=settings.readers,
        progress=False,
    )
    return Job(ModelSource(settings.model_dir), DataSpec(settings.data), settings.out_dir, options)


def run_local(settings: Settings) -> Result:
    """``headrace run MODEL DATA --out OUT`` on this machine."""
    from headrace.batch.local import run_local as run

    job = _job(settings)
    started = mark_start(settings)
    summary = run(job)
    return Result("local", summary.rows, time.monotonic() - started)


def _ray_init(settings: Settings) -> Any:
    import ray

    ray.init(num_cpus=settings.ray_cpus, include_dashboard=False, log_to_driver=False)
    ray.data.DataContext.get_current().enable_progress_bars = False
    return ray


def run_ray_runner(settings: Settings) -> Result:
    """``headrace run MODEL DATA --out OUT --ray`` on a local Ray of ``ray_cpus`` CPUs."""
    from headrace.batch.ray_runner import run_ray

    ray = _ray_init(settings)
    try:
        job = _job(settings)
        started = mark_start(settings)
        summary = run_ray(job)
        return Result("ray_runner", summary.rows, time.monotonic() - started)
    finally:
        ray.shutdown()


class OnnxPredictor:
    """Ray Data's documented callable class: load the model once in ``__init__``."""

    def __init__(self, settings: dict[str, Any]) -> None:
        self.session = session(Settings(**settings))

    def __call__(self, batch: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        x = batch["x"]
        if x.dtype == object:  # list columns arrive as arrays of per-row arrays
            x = np.stack(list(x))
        return {"y": self.session.run(None, {"x": x.astype(np.float32, copy=False)})[0][:, 0]}


def run_ray_data(settings: Settings) -> Result:
    """read_parquet -> map_batches(class, compute=ActorPoolStrategy) -> write_parquet."""
    import pyarrow.parquet as pq

    ray = _ray_init(settings)
    try:
        rows = pq.ParquetFile(settings.data).metadata.num_rows
        started = time.monotonic()
        ray.data.read_parquet(settings.data).map_batches(
            OnnxPredictor,
            fn_constructor_kwargs={"settings": asdict(settings)},
            compute=ray.data.ActorPoolStrategy(size=settings.instances),
            batch_size=settings.batch_size,
            batch_format="numpy",
        ).write_parquet(settings.out_dir)
        return Result("ray_data", rows, time.monotonic() - started)
    finally:
        ray.shutdown()


RUNNERS: dict[str, Callable[[Settings], Result]] = {
    "naive": run_naive,
    "plain": run_plain,
    "local": run_local,
    "ray_runner": run_ray_runner,
    "ray_data": run_ray_data,
}


def warm_imports(system: str) -> None:
    """Import before the clock starts what every system would import lazily on first use.

    pyarrow imports pandas on its first ``to_numpy`` (~1.5 s here); no system should pay for
    that, nor for importing headrace's backend, inside its timed run.
    """
    import importlib

    modules = ["pandas", "pyarrow", "pyarrow.parquet", "onnxruntime"]
    if system in ("local", "ray_runner"):
        modules += [
            "headrace.batch.local",
            "headrace.batch.ray_runner",
            "headrace.batch.readers",
            "headrace.batch.parquet",
            "headrace.backends.onnx",
            "headrace.repository",
        ]
    for module in modules:
        importlib.import_module(module)


def main(argv: list[str]) -> int:
    system, settings = argv[0], Settings(**json.loads(argv[1]))
    if system not in RUNNERS:
        raise SystemExit(f"unknown system {system!r} (systems: {', '.join(SYSTEMS)})")
    warm_imports(system)
    result = RUNNERS[system](settings)
    print(json.dumps({**asdict(result), "rows_per_second": result.rows_per_second}), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
