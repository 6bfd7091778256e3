"""The batch-size scan: throughput vs batch size, direct (a model instance) or served (a URL).

The method of the saturation studies: for each batch size, ``trials`` trials; each trial
generates standard-normal inputs (integers: 0/1), starts a ``perf_counter_ns`` stopwatch,
runs one inference and stops it; the trial's throughput is ``batch / seconds``; a point
reports the mean and the standard error of the mean over its trials
(:mod:`headrace.bench.statistics`), and the latency percentiles.

*Direct*: one :class:`~headrace.engine.instance.ModelInstance` of the model, built as serving
builds it. The stopwatch covers handing the numpy inputs to the instance, staging them to the
device, running the model and, on CUDA, ``torch.cuda.synchronize()``; generating the inputs is
outside. On the host the batch runs on the calling thread (``run_requests_now``, as the
server runs host batches), on a GPU through the instance's pipeline.

*Served*: one client, one ``infer`` call per trial, over KServe v2 HTTP or gRPC with
``tritonclient``, against any server (headrace, Triton, PyTriton). Building the request's
tensors from numpy is outside the stopwatch, as it is for direct runs. The tensors come from
the server's model metadata; the batch dimension from its configuration.

``warmup`` untimed trials come first at each batch size. Each point records its wall-clock
start and end (``time.time()``), the clock of the resource monitor's log.
"""

from __future__ import annotations

import functools
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from headrace.bench.statistics import Summary, summarize
from headrace.errors import InvalidInput
from headrace.types import DataType

__all__ = [
    "InputSpec",
    "ScanOptions",
    "ScanPoint",
    "Target",
    "random_inputs",
    "run_scan",
    "time_trials",
]

InferOnce = Callable[[Any], object]
"""One inference of prepared inputs (what ``prepare`` made of the arrays)."""


@dataclass(frozen=True)
class ScanOptions:
    """The swept batch sizes and how many trials each gets."""

    batch_sizes: tuple[int, ...] = (1, 2, 4, 8, 16, 32, 64)
    trials: int = 100
    warmup: int = 5
    seed: int = 0

    def validate(self, max_batch_size: int | None = None) -> None:
        if not self.batch_sizes or min(self.batch_sizes) < 1:
            raise InvalidInput(f"--batch-sizes must be positive integers, got {self.batch_sizes}")
        if self.trials < 1:
            raise InvalidInput(f"--trials must be at least 1, got {self.trials}")
        if self.warmup < 0:
            raise InvalidInput(f"--warmup must be 0 or more, got {self.warmup}")
        if max_batch_size is not None and max(self.batch_sizes) > max(max_batch_size, 1):
            raise InvalidInput(
                f"batch size {max(self.batch_sizes)} is over the model's max_batch_size "
                f"{max_batch_size}; pass smaller --batch-sizes"
            )


@dataclass(frozen=True)
class InputSpec:
    """One input of the scanned model: name, dtype and dims without the batch dimension."""

    name: str
    datatype: DataType
    dims: tuple[int, ...]


@dataclass(frozen=True)
class ScanPoint:
    """One batch size of one scan: throughput (items/s) and latency (ms) over its trials."""

    mode: str  # direct, or the protocol of a served scan (http, grpc)
    model: str
    batch_size: int
    trials: int
    throughput_mean: float
    throughput_sem: float
    throughput_std: float
    latency_ms: dict[str, float]
    start_time: float
    end_time: float

    def as_dict(self) -> dict[str, Any]:
        return dict(self.__dict__)


def random_inputs(
    specs: Sequence[InputSpec], batch_size: int, rng: np.random.Generator, batched: bool = True
) -> dict[str, np.ndarray]:
    """Standard-normal floats (0/1 for integers and booleans) for every input."""
    inputs = {}
    for spec in specs:
        if any(dim < 0 for dim in spec.dims):
            raise InvalidInput(
                f"input '{spec.name}' has variable dims {list(spec.dims)}; a scan needs fixed dims"
            )
        shape = (batch_size, *spec.dims) if batched else spec.dims
        dtype = spec.datatype.numpy_dtype
        if np.issubdtype(dtype, np.floating):
            inputs[spec.name] = rng.standard_normal(shape).astype(dtype)
        elif np.issubdtype(dtype, np.integer) or dtype == np.bool_:
            inputs[spec.name] = rng.integers(0, 2, shape).astype(dtype)
        else:
            raise InvalidInput(f"input '{spec.name}': a scan has no random {spec.datatype.name}")
    return inputs


def time_trials(
    infer: InferOnce,
    make_inputs: Callable[[], Mapping[str, np.ndarray]],
    trials: int,
    warmup: int,
    prepare: Callable[[Mapping[str, np.ndarray]], Any] = lambda inputs: inputs,
) -> list[int]:
    """Nanoseconds of each of ``trials`` timed calls of ``infer(prepare(make_inputs()))``;
    making and preparing the inputs is outside the stopwatch."""
    for _ in range(warmup):
        infer(prepare(make_inputs()))
    elapsed = []
    for _ in range(trials):
        prepared = prepare(make_inputs())
        start = time.perf_counter_ns()
        infer(prepared)
        elapsed.append(time.perf_counter_ns() - start)
    return elapsed


def point(
    mode: str, model: str, batch_size: int, elapsed_ns: Sequence[int], start: float, end: float
) -> ScanPoint:
    """The statistics of one batch size's trials."""
    seconds = np.asarray(elapsed_ns, dtype=np.float64) / 1e9
    throughput: Summary = summarize(batch_size / seconds)
    latency = summarize(seconds * 1e3)
    return ScanPoint(
        mode=mode,
        model=model,
        batch_size=batch_size,
        trials=len(elapsed_ns),
        throughput_mean=throughput.mean,
        throughput_sem=throughput.sem,
        throughput_std=throughput.std,
        latency_ms={
            "mean": latency.mean,
            "p50": latency.p50,
            "p90": latency.p90,
            "p95": latency.p95,
            "p99": latency.p99,
        },
        start_time=start,
        end_time=end,
    )


@dataclass(frozen=True)
class Target:
    """One thing a scan measures: a direct instance or a served model over one protocol."""

    mode: str
    model: str
    inputs: tuple[InputSpec, ...]
    max_batch_size: int
    infer: InferOnce
    prepare: Callable[[Mapping[str, np.ndarray]], Any] = lambda inputs: inputs
    device: str = ""
    """Where a direct instance runs ('' for a served model: the server decides)."""
    server: dict[str, Any] | None = None

    @property
    def label(self) -> str:
        return f"{self.model} {self.mode}"


def run_scan(targets: Sequence[Target], options: ScanOptions) -> list[ScanPoint]:
    """Every batch size for every target; at each batch size the targets take turns, so a
    drift of the machine during the study touches them all alike."""
    for target in targets:
        options.validate(target.max_batch_size)
    rng = np.random.default_rng(options.seed)
    points = []
    for batch_size in options.batch_sizes:
        for target in targets:
            batched = target.max_batch_size > 0
            start = time.time()
            elapsed = time_trials(
                target.infer,
                functools.partial(random_inputs, target.inputs, batch_size, rng, batched),
                options.trials,
                options.warmup,
                target.prepare,
            )
            points.append(point(target.mode, target.model, batch_size, elapsed, start, time.time()))
    return points
