"""The scale-out study: horizontal (workers) x vertical (num_buffers per worker) scaling.

For every (CPU delay, workers, num_buffers) case it runs the matmul workload on ``workers``
model instances at once and reports batches/s, the vertical speedup (over one buffer, same
workers) and the horizontal *scaling efficiency*: batches/s divided by ``workers`` times the
batches/s of one worker with the same buffers (1.0 = perfect scaling).

Two worker backends:

- ``threads``: the instances live in this process, one driving thread each (the pipeline
  study's ``run_case``); they share the process's torch threads and, on a GPU, one device.
- ``ray``: one :class:`~headrace.engine.ray_workers.InstanceWorker` actor per worker, each
  with its own pipeline; one GPU per actor when ``num_gpus_per_worker`` is 1 (``--gpus N``),
  else one CPU per actor. :func:`~headrace.bench.ray_workers.run_pool` times them inside the
  actors; aggregate batches/s is over the driver's wall time for all actors.
"""

from __future__ import annotations

import argparse
import dataclasses
import functools
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

from headrace.backends.base import Backend, BackendContext
from headrace.bench.pipeline import PipelineStudyConfig, run_case
from headrace.bench.workload import MatmulBackend, matmul_context, simulated_cpu_stage
from headrace.devices import resolve_device
from headrace.errors import InvalidInput

__all__ = [
    "MatmulFactory",
    "ScaleoutConfig",
    "ScaleoutResult",
    "print_scaleout_table",
    "run_scaleout",
    "run_scaleout_command",
    "scaleout_document",
    "scaleout_table",
    "worker_counts",
]

BACKENDS = ("threads", "ray")


@dataclass(frozen=True)
class MatmulFactory:
    """A picklable backend factory for the study's matmul workload (built inside each actor);
    its context comes from :func:`~headrace.bench.workload.matmul_context`."""

    depth: int = 4
    seed: int = 0

    def __call__(self, context: BackendContext) -> Backend:
        return MatmulBackend(context, depth=self.depth, seed=self.seed)


@dataclass(frozen=True)
class ScaleoutConfig:
    """What to sweep (``workers``, ``num_buffers``, ``cpu_delays_ms``) and how each run looks."""

    pipeline: PipelineStudyConfig = field(default_factory=PipelineStudyConfig)
    """Workload and per-run knobs; its ``num_buffers``/``cpu_delays_ms`` are swept here too."""
    workers: tuple[int, ...] = (1, 2)
    backend: str = "threads"
    ray_address: str = ""
    num_gpus_per_worker: float = 0.0

    def validate(self) -> None:
        self.pipeline.validate()
        if not self.workers or min(self.workers) < 1:
            raise InvalidInput(f"scale-out study: invalid workers {self.workers!r}")
        if self.backend not in BACKENDS:
            raise InvalidInput(f"scale-out study: unknown backend {self.backend!r}; use {BACKENDS}")
        if self.num_gpus_per_worker < 0:
            raise InvalidInput(f"scale-out study: invalid num_gpus {self.num_gpus_per_worker!r}")


@dataclass(frozen=True)
class ScaleoutResult:
    """One (delay, workers, num_buffers) case; ``per_worker_batches_per_s`` is Ray's only."""

    cpu_delay_ms: float
    workers: int
    num_buffers: int
    batches: int
    elapsed_s: float
    batches_per_s: float
    items_per_s: float
    per_worker_batches_per_s: list[float] = field(default_factory=list)
    devices: list[str] = field(default_factory=list)
    speedup_vs_one_buffer: float = 1.0
    scaling_efficiency: float = 1.0


def worker_counts(num_workers: int) -> tuple[int, ...]:
    """1, 2, 4, ... below ``num_workers``, then ``num_workers`` itself."""
    if num_workers < 1:
        raise InvalidInput(f"--num-workers must be at least 1, got {num_workers}")
    counts = [1]
    while counts[-1] * 2 < num_workers:
        counts.append(counts[-1] * 2)
    return (*counts, num_workers) if counts[-1] != num_workers else tuple(counts)


def run_scaleout(config: ScaleoutConfig) -> list[ScaleoutResult]:
    """Every case, sorted by (delay, workers, buffers), with speedups and efficiencies."""
    config.validate()
    run = _ray_cases if config.backend == "ray" else _thread_cases
    raw = [case for workers in sorted(set(config.workers)) for case in run(config, workers)]
    return _with_ratios(sorted(raw, key=lambda r: (r.cpu_delay_ms, r.workers, r.num_buffers)))


def _thread_cases(config: ScaleoutConfig, workers: int) -> list[ScaleoutResult]:
    study = dataclasses.replace(config.pipeline, num_workers=workers)
    device = resolve_device(study.device)
    results = []
    for delay in study.cpu_delays_ms:
        for buffers in sorted(set(study.num_buffers)):
            case = _median(functools.partial(run_case, study, buffers, delay), study.repeats)
            results.append(
                ScaleoutResult(
                    delay,
                    workers,
                    buffers,
                    case.batches,
                    case.elapsed_s,
                    case.batches_per_s,
                    case.items_per_s,
                    devices=[device] * workers,
                )
            )
    return results


def _ray_cases(config: ScaleoutConfig, workers: int) -> list[ScaleoutResult]:
    from headrace.bench.ray_workers import RunSpec, run_pool
    from headrace.engine.ray_workers import RayWorkerPool, connect_ray

    study = config.pipeline
    connect_ray(config.ray_address)
    context = matmul_context(study.input_shape, study.batch_size, "cpu")  # the pool sets device
    spec = RunSpec(study.num_iterations, study.batch_size, study.warmup_iterations)
    buffers_swept = sorted(set(study.num_buffers))
    results = []
    with RayWorkerPool(
        workers,
        MatmulFactory(study.depth),
        context,
        num_gpus_per_worker=config.num_gpus_per_worker,
        num_buffers=buffers_swept[0],
        pin_memory=study.pin_memory,
    ) as pool:
        devices = [f"{info.hostname}/{info.device}" for info in pool.info]
        for delay in study.cpu_delays_ms:
            for buffers in buffers_swept:
                pool.configure(buffers, simulated_cpu_stage(delay, study.preprocess))
                run = _median(lambda: run_pool(pool, spec), study.repeats)
                results.append(
                    ScaleoutResult(
                        delay,
                        workers,
                        buffers,
                        run.batches,
                        run.elapsed_s,
                        run.batches_per_s,
                        run.batches * study.batch_size / run.elapsed_s,
                        per_worker_batches_per_s=[w.batches_per_s for w in run.workers],
                        devices=devices,
                    )
                )
    return results


def _median(measure: Callable[[], Any], repeats: int) -> Any:
    runs = sorted((measure() for _ in range(repeats)), key=lambda run: run.batches_per_s)
    return runs[len(runs) // 2]


def _with_ratios(results: list[ScaleoutResult]) -> list[ScaleoutResult]:
    def find(delay: float, workers: int, buffers: int) -> ScaleoutResult | None:
        return next(
            (
                r
                for r in results
                if (r.cpu_delay_ms, r.workers, r.num_buffers) == (delay, workers, buffers)
            ),
            None,
        )

    fewest = min(r.workers for r in results)
    least = min(r.num_buffers for r in results)
    out = []
    for case in results:
        vertical = find(case.cpu_delay_ms, case.workers, least)
        horizontal = find(case.cpu_delay_ms, fewest, case.num_buffers)
        out.append(
            dataclasses.replace(
                case,
                speedup_vs_one_buffer=case.batches_per_s / vertical.batches_per_s
                if vertical
                else 1.0,
                scaling_efficiency=case.batches_per_s
                / (case.workers / fewest * horizontal.batches_per_s)
                if horizontal
                else 1.0,
            )
        )
    return out


def print_scaleout_table(
    results: Sequence[ScaleoutResult], title: str, console: Any = None
) -> None:
    """Batches/s per (workers, buffers), vertical speedup and horizontal efficiency."""
    from rich.console import Console

    (console or Console()).print(scaleout_table(results, title))


def scaleout_table(results: Sequence[ScaleoutResult], title: str) -> Any:
    """The scale-out table (fits an 80-column terminal)."""
    from rich.table import Table

    table = Table(title=title)
    columns = ("delay ms", "workers", "buffers", "batches/s", "per worker", "vs 1 buffer")
    for column in (*columns, "efficiency"):
        table.add_column(column, justify="right")
    for case in results:
        per_worker = " ".join(f"{value:.1f}" for value in case.per_worker_batches_per_s)
        table.add_row(
            f"{case.cpu_delay_ms:g}",
            str(case.workers),
            str(case.num_buffers),
            f"{case.batches_per_s:.1f}",
            per_worker or "-",
            f"{case.speedup_vs_one_buffer:.2f}x",
            f"{100 * case.scaling_efficiency:.0f}%",
        )
    table.caption = "efficiency: batches/s / (workers x batches/s of 1 worker, same buffers)"
    return table


def scaleout_document(config: ScaleoutConfig, results: Sequence[ScaleoutResult]) -> dict[str, Any]:
    """The JSON document: the pipeline study's layout (config, machine, results)."""
    from headrace.bench.pipeline_report import results_document

    device = resolve_device(config.pipeline.device)
    document = results_document(config.pipeline, device, [])
    document.update(
        study="pipeline_scaleout",
        config=asdict(config),
        results=[asdict(case) for case in results],
    )
    return document


def run_scaleout_command(args: argparse.Namespace, study: PipelineStudyConfig) -> int:
    """``headrace bench pipeline`` with ``--workers-backend ray``, ``--gpus N`` or
    ``--scaleout``: sweep workers 1, 2, 4 ... ``--num-workers`` (or ``--gpus``)."""
    from headrace.bench.pipeline_report import write_json
    from headrace.bench.result_files import result_path

    gpus = args.gpus
    backend = "ray" if gpus else args.workers_backend
    if gpus:
        study = dataclasses.replace(study, device="cuda:0")
    on_gpu = resolve_device(study.device).startswith("cuda")
    config = ScaleoutConfig(
        pipeline=study,
        workers=worker_counts(gpus or study.num_workers),
        backend=backend,
        ray_address=args.ray_address,
        num_gpus_per_worker=1.0 if backend == "ray" and on_gpu else 0.0,
    )
    results = run_scaleout(config)
    kind = "gpu" if on_gpu else "cpu"
    print_scaleout_table(results, f"scale-out on {kind}, {backend} workers")
    out = args.out or result_path(args, f"pipeline_scaleout_{kind}")
    write_json(out, scaleout_document(config, results))
    print(f"results: {out}")
    return 0
