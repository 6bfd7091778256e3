"""The pipeline study: sequential vs double vs N-way buffering, with and without CPU work.

For every (CPU delay, num_buffers) case the study builds model instances and drives each
from one thread, keeping ``num_buffers + 1`` batches in
flight (submit while there is room, otherwise wait on the oldest). It reports batches/s, the
speedup over the sequential run (N = 1, same delay) and two bounds from the stage times: the
*ideal* (the slowest stage alone, what perfect overlap reaches) and the *sequential* bound
(the sum of the stages). Each stage's time is its fastest mean over the cases of the same
delay, i.e. that stage as close to "alone" as measured (a stage that runs after an idle wait
is slower: cold caches, lower clocks); the instance count multiplies both bounds, which is
optimistic when the instances share one device.

The instances are ``num_workers`` of the synthetic matmul workload, or, with ``model``
(``REPO/NAME`` or a ``.onnx`` file), the model's own, placed as serving places them: its
``instance_group`` decides how many and where unless ``instances`` (and ``device``) say
otherwise. A model gets random inputs from its configuration.
"""

from __future__ import annotations

import itertools
import threading
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np

from headrace.bench.preprocess import PREPROCESS_KINDS
from headrace.bench.workload import MatmulBackend, matmul_context, simulated_cpu_stage
from headrace.devices import resolve_device
from headrace.engine.inflight import drive_in_flight
from headrace.engine.instance import ModelInstance
from headrace.engine.placement import PlacementOptions, place_instances
from headrace.engine.slots import Preprocess
from headrace.engine.stats import stage_means_ms
from headrace.errors import InvalidInput

__all__ = ["CaseResult", "PipelineStudyConfig", "run_case", "run_study", "study_device"]


@dataclass(frozen=True)
class PipelineStudyConfig:
    """The study's knobs; ``num_buffers`` and ``cpu_delays_ms`` are the swept axes."""

    batch_size: int = 256
    input_shape: tuple[int, ...] = (1024,)
    depth: int = 4
    num_iterations: int = 200
    warmup_iterations: int = 10
    num_buffers: tuple[int, ...] = (1, 2, 3, 4)
    cpu_delays_ms: tuple[float, ...] = (0.0, 5.0)
    pin_memory: bool = True
    num_workers: int = 1
    device: str = "auto"
    repeats: int = 1
    """Runs per case; the run with the median batches/s is kept (shared machines are noisy)."""
    model: str = ""
    """``REPO/NAME`` or a ``.onnx`` file to study instead of the matmul workload."""
    model_version: int | None = None
    instances: int = 0
    """With ``model``: instances in all (0: the model's ``instance_group``)."""
    preprocess: str = "sleep"
    """What the CPU delay does: ``sleep``, ``spin`` (holds the GIL) or ``decode`` (real
    work that releases it); see :mod:`headrace.bench.preprocess`."""

    def validate(self) -> None:
        checks = {
            "batch_size": self.batch_size >= 1,
            "num_iterations": self.num_iterations >= 1,
            "warmup_iterations": self.warmup_iterations >= 0,
            "num_workers": self.num_workers >= 1,
            "repeats": self.repeats >= 1,
            "depth": self.depth >= 1,
            "input_shape": bool(self.input_shape) and min(self.input_shape) >= 1,
            "num_buffers": bool(self.num_buffers) and min(self.num_buffers) >= 1,
            "cpu_delays_ms": bool(self.cpu_delays_ms) and min(self.cpu_delays_ms) >= 0,
            "instances": self.instances >= 0,
            "preprocess": self.preprocess in PREPROCESS_KINDS,
        }
        for name, ok in checks.items():
            if not ok:
                flag = "cpu-delay-ms" if name == "cpu_delays_ms" else name.replace("_", "-")
                raise InvalidInput(f"pipeline study: invalid --{flag} {getattr(self, name)!r}")


@dataclass(frozen=True)
class CaseResult:
    """One (delay, num_buffers) case; times in milliseconds."""

    cpu_delay_ms: float
    num_buffers: int
    batches: int
    elapsed_s: float
    batches_per_s: float
    items_per_s: float
    stage_mean_ms: dict[str, float] = field(default_factory=dict)
    speedup: float = 1.0
    ideal_batches_per_s: float = 0.0
    sequential_bound_batches_per_s: float = 0.0
    instances: int = 1
    devices: tuple[str, ...] = ()

    @property
    def label(self) -> str:
        if self.num_buffers == 1:
            return "sequential"
        return "double" if self.num_buffers == 2 else f"{self.num_buffers}-way"


def study_device(config: PipelineStudyConfig, results: Sequence[CaseResult] = ()) -> str:
    """The device the study ran on: the one asked for, or where a model's instances went."""
    devices = sorted({device for case in results for device in case.devices})
    if devices:
        return ", ".join(devices)
    return resolve_device(config.device)


def run_study(config: PipelineStudyConfig) -> list[CaseResult]:
    """Every case of the study, with speedups and bounds filled from the N = 1 runs."""
    config.validate()
    results: list[CaseResult] = []
    for delay in config.cpu_delays_ms:
        cases = [
            _median_case(config, buffers, delay) for buffers in sorted(set(config.num_buffers))
        ]
        baseline = next((case for case in cases if case.num_buffers == 1), cases[0])
        fastest = {
            stage: min(case.stage_mean_ms[stage] for case in cases)
            for stage in baseline.stage_mean_ms
        }
        results.extend(_with_bounds(case, baseline, fastest, case.instances) for case in cases)
    return results


def _median_case(config: PipelineStudyConfig, num_buffers: int, delay: float) -> CaseResult:
    runs = sorted(
        (run_case(config, num_buffers, delay) for _ in range(config.repeats)),
        key=lambda case: case.batches_per_s,
    )
    return runs[len(runs) // 2]


def run_case(config: PipelineStudyConfig, num_buffers: int, cpu_delay_ms: float) -> CaseResult:
    """Run one case: warm up, then time ``num_iterations`` batches per instance."""
    preprocess = simulated_cpu_stage(cpu_delay_ms, config.preprocess)
    if config.model:
        instances, inputs = _model_workload(config, num_buffers, preprocess)
    else:
        instances, inputs = _matmul_workload(config, num_buffers, preprocess)
    try:
        _drive_all(instances, inputs, config.warmup_iterations, num_buffers)
        before = [instance.stats.snapshot() for instance in instances]
        start = time.monotonic()
        _drive_all(instances, inputs, config.num_iterations, num_buffers)
        elapsed = time.monotonic() - start
        after = [instance.stats.snapshot() for instance in instances]
    finally:
        for instance in instances:
            instance.close()
    batches = config.num_iterations * len(instances)
    return CaseResult(
        cpu_delay_ms=cpu_delay_ms,
        num_buffers=num_buffers,
        batches=batches,
        elapsed_s=elapsed,
        batches_per_s=batches / elapsed,
        items_per_s=batches * config.batch_size / elapsed,
        stage_mean_ms=stage_means_ms(before, after),
        instances=len(instances),
        devices=tuple(instance.backend.device for instance in instances),
    )


Workload = tuple[list[ModelInstance], list[dict[str, Any]]]


def _matmul_workload(
    config: PipelineStudyConfig, num_buffers: int, preprocess: Preprocess | None
) -> Workload:
    device = resolve_device(config.device)
    instances = [
        ModelInstance(
            MatmulBackend(
                matmul_context(config.input_shape, config.batch_size, device), depth=config.depth
            ),
            num_buffers=num_buffers,
            name=f"w{index}",
            pin_memory=config.pin_memory,
            preprocess=preprocess,
        )
        for index in range(config.num_workers)
    ]
    rng = np.random.default_rng(0)
    inputs = [
        {"x": rng.standard_normal((config.batch_size, *config.input_shape), dtype=np.float32)}
        for _ in range(4)
    ]
    return instances, inputs


def _model_workload(
    config: PipelineStudyConfig, num_buffers: int, preprocess: Preprocess | None
) -> Workload:
    from headrace.backends import load_backend
    from headrace.bench.ray_workers import synthetic_batch
    from headrace.repository.resolve import ModelSource, resolve_model

    model = resolve_model(ModelSource(config.model, config.model_version), config.batch_size)
    try:
        options = PlacementOptions(
            count=config.instances or None,
            device="" if config.device == "auto" else config.device,
            num_buffers=num_buffers,
            pin_memory=config.pin_memory,
            preprocess=preprocess,
        )
        inputs = [synthetic_batch(model.config, config.batch_size, seed) for seed in range(4)]
        instances = place_instances(model.context(), load_backend, options)
    finally:
        model.cleanup()  # a bare model file's scratch repository; loaded backends keep no path
    return instances, inputs


def _drive_all(
    instances: list[ModelInstance],
    inputs: list[dict[str, Any]],
    iterations: int,
    num_buffers: int,
) -> None:
    """Each instance from its own thread, with ``num_buffers + 1`` batches in flight."""
    if iterations == 0:
        return
    errors: list[BaseException] = []
    threads = [
        threading.Thread(
            target=_drive, args=(instance, inputs, iterations, num_buffers + 1, errors)
        )
        for instance in instances
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    if errors:
        raise errors[0]


def _drive(
    instance: ModelInstance,
    inputs: list[dict[str, Any]],
    iterations: int,
    depth: int,
    errors: list[BaseException],
) -> None:
    try:
        batches = itertools.islice(itertools.cycle(inputs), iterations)
        drive_in_flight(batches, instance.submit, depth)
    except BaseException as exc:
        errors.append(exc)


def _with_bounds(
    case: CaseResult, baseline: CaseResult, stages_ms: dict[str, float], workers: int
) -> CaseResult:
    slowest = max(stages_ms.values(), default=0.0)
    total = sum(stages_ms.values())
    values = asdict(case)
    values.update(
        speedup=case.batches_per_s / baseline.batches_per_s,
        ideal_batches_per_s=workers * 1e3 / slowest if slowest else 0.0,
        sequential_bound_batches_per_s=workers * 1e3 / total if total else 0.0,
    )
    return CaseResult(**values)
