"""The Ray runner: the same job as a Ray Data pipeline, with the same output and manifest.

    pending shards (one block each) ─► map_batches(read_shards)          Ray tasks
        ─► map_batches(InferenceActor, compute=ActorPoolStrategy(size=N),
                       num_gpus=F, batch_size=B·num_buffers)              Ray actors
        ─► driver: ShardCollector ─► writers + manifest (as the local runner)

Each shard is its own input block, so every actor gets work. A read task reads one whole
shard, applies the preprocessing hook and the input mapping, and tags rows with their shard
and row id. Each actor owns one :class:`~headrace.engine.instance.ModelInstance` (the model
is loaded once per actor) and splits its Ray batch into ``num_buffers`` sub-batches submitted
together, so its N-way pipeline overlaps them. The driver writes shards, so the output
folder only has to be visible to the driver; the model and the input must be readable at the
same paths on every node (a shared volume, as in ``deploy/``).
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any

import numpy as np

from headrace.batch.collector import ShardCollector
from headrace.batch.dataset import DataSpec, Reader
from headrace.batch.job import Job, make_mapper, prepare
from headrace.batch.local import RunSummary
from headrace.batch.model import make_instances, plan_job_instances
from headrace.batch.progress import JobProgress
from headrace.batch.readers import open_reader
from headrace.errors import require
from headrace.repository.resolve import resolve_model
from headrace.types import TensorSpec

__all__ = ["InferenceActor", "RayOptions", "build_dataset", "read_shards", "run_ray"]

SHARD = "__headrace_shard"
ROW = "__headrace_row_id"


@dataclass(frozen=True)
class RayOptions:
    """``address``: "" for a local Ray, ``auto`` or ``ray://host:10001``; GPUs per actor."""

    address: str = ""
    num_gpus: float = 0.0
    num_cpus: int | None = None


def run_ray(job: Job, ray_options: RayOptions | None = None) -> RunSummary:
    """Run (or resume) ``job`` on Ray; connects (or starts a local Ray) when not initialised."""
    ray = require("ray", "ray")
    ray_options = ray_options or RayOptions()
    started = time.monotonic()
    prepared = prepare(job)
    job = prepared.job  # with its batch size filled in
    try:
        manifest = prepared.manifest
        pending = manifest.pending()
        todo = sum(stop - start for start, stop in map(manifest.shard_range, pending))
        actors = len(
            plan_job_instances(
                prepared.model, count=job.options.instances, device=job.options.device
            )
        )
        progress = JobProgress(
            manifest.num_rows,
            manifest.num_rows - todo,
            enabled=job.options.progress,
            device=f"{actors} Ray actors",
        )
        collector = ShardCollector(manifest, prepared.writer, prepared.outputs, progress.advance)
        if pending:
            # Ray started here is shut down here; a caller's own Ray session is left alone.
            started_ray = not ray.is_initialized()
            if started_ray:
                _init(ray, ray_options)
            try:
                dataset = build_dataset(
                    job,
                    pending,
                    manifest.shard_size,
                    prepared.model.inputs,
                    ray_options.num_gpus,
                    actors,
                )
                with progress:
                    for batch in dataset.iter_batches(batch_size=None, batch_format="numpy"):
                        _collect(collector, batch, prepared.outputs)
            finally:
                if started_ray:
                    ray.shutdown()
        return RunSummary(
            job.out_dir,
            todo,
            collector.shards_written,
            manifest.num_shards - len(pending),
            time.monotonic() - started,
            actors,
        )
    finally:
        prepared.close()


def _init(ray: Any, options: RayOptions) -> None:
    kwargs: dict[str, Any] = {"include_dashboard": False, "log_to_driver": False}
    if options.address:
        ray.init(address=options.address, **kwargs)
    else:
        ray.init(num_cpus=options.num_cpus, **kwargs)


def build_dataset(
    job: Job,
    shards: list[int],
    shard_size: int,
    inputs: list[TensorSpec],
    num_gpus: float,
    actors: int,
) -> Any:
    """The Ray Data pipeline over ``shards``: read tasks, then ``actors`` actors running the
    model (one instance each)."""
    ray = require("ray", "ray")
    options = job.options
    items = [{SHARD: shard} for shard in shards]
    dataset = ray.data.from_items(items, override_num_blocks=len(items))
    dataset = dataset.map_batches(
        read_shards,
        batch_size=1,
        batch_format="numpy",
        fn_kwargs={"job": job, "shard_size": shard_size, "inputs": inputs},
    )
    return dataset.map_batches(
        InferenceActor,
        fn_constructor_kwargs={"job": job, "num_gpus": num_gpus},
        compute=ray.data.ActorPoolStrategy(size=actors),
        num_gpus=num_gpus or None,
        batch_size=options.batch_size * options.num_buffers,
        batch_format="numpy",
    )


_READERS: dict[DataSpec, Reader] = {}


def read_shards(
    batch: dict[str, np.ndarray], *, job: Job, shard_size: int, inputs: list[TensorSpec]
) -> dict[str, np.ndarray]:
    """Ray task: the rows of the shards in ``batch`` as model inputs, tagged with shard and row."""
    reader = _READERS.get(job.data)
    if reader is None:
        reader = _READERS[job.data] = open_reader(job.data)
    mapper = make_mapper(job.options, inputs)
    parts: list[dict[str, np.ndarray]] = []
    for shard in batch[SHARD]:
        start = int(shard) * shard_size
        rows = reader.read(start, min(start + shard_size, reader.num_rows))
        arrays = mapper(rows)
        arrays[ROW] = rows.row_ids
        arrays[SHARD] = np.full(len(rows), int(shard), dtype=np.int64)
        parts.append(arrays)
    return {name: np.concatenate([p[name] for p in parts]) for name in parts[0]}


class InferenceActor:
    """Ray actor: one ModelInstance, loaded once; a Ray batch is split over its pipeline."""

    def __init__(self, job: Job, num_gpus: float = 0.0) -> None:
        options = job.options
        self.model = resolve_model(job.model, options.batch_size)
        # Ray sets CUDA_VISIBLE_DEVICES: an actor given a GPU sees it as cuda:0.
        device = "cuda:0" if num_gpus > 0 else (options.device or "cpu")
        specs = plan_job_instances(self.model, count=1, device=device)
        self.instance = make_instances(self.model, specs, num_buffers=options.num_buffers)[0]
        self.batch_size = options.batch_size
        self.inputs = [spec.name for spec in self.model.inputs]

    def __call__(self, batch: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        rows = len(batch[ROW])
        futures = [
            self.instance.submit(
                {name: batch[name][i : i + self.batch_size] for name in self.inputs}
            )
            for i in range(0, rows, self.batch_size)
        ]
        results = [future.result() for future in futures]
        outputs = {
            name: np.concatenate([np.asarray(r[name]) for r in results]) for name in results[0]
        }
        return {ROW: batch[ROW], SHARD: batch[SHARD], **outputs}

    def __del__(self) -> None:
        instance = getattr(self, "instance", None)
        if instance is not None:
            instance.close()
            self.model.cleanup()


def _collect(
    collector: ShardCollector, batch: dict[str, np.ndarray], outputs: tuple[str, ...]
) -> None:
    shards = batch[SHARD]
    for shard in np.unique(shards):
        rows = shards == shard
        collector.add(int(shard), batch[ROW][rows], {name: batch[name][rows] for name in outputs})
