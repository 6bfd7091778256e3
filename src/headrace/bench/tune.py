"""``bench tune``'s search space and its choice: the grid, the cost, the Pareto front, the pick.

Pure logic, no server: :mod:`headrace.bench.tune_run` measures the points, this module decides.

A *setting* is what goes into ``config.pbtxt`` (instance count, ``max_batch_size``, the dynamic
batcher's ``max_queue_delay_microseconds``, and for onnxruntime models the
``intra_op_thread_count`` parameter: each instance's compute threads, which on a few shared
cores decide how much CPU the server's frontend is left); a *point* is a setting measured at one client
concurrency. A point is on the Pareto front when no other point has at least its throughput
and at most its p99 with one of them strictly better. The chosen point is the cheapest under
the p99 bound; ties go to the higher throughput.

The search measures each setting once, one after another, so a drift of the machine between
two settings looks like a difference between them. The pick is therefore measured again *side
by side* with the model's own config (:class:`SideBySide`): both served at once, loaded in
turns over several rounds (the order alternating), and compared by their medians.

Costs (per million inferences, from what the server did during the measurement):

- ``device-seconds-per-million``: seconds the server's device was busy. On a CPU that is the
  CPU time of the server's process tree (user + system, children included).
- ``instance-seconds-per-million``: wall seconds times instances, what a reservation is billed for.
"""

from __future__ import annotations

import itertools
import statistics
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from headrace.errors import InvalidInput

__all__ = [
    "COST_FUNCTIONS",
    "Measurement",
    "Setting",
    "SideBySide",
    "choose",
    "cost",
    "grid",
    "pareto_front",
]

COST_FUNCTIONS = ("device-seconds-per-million", "instance-seconds-per-million")


@dataclass(frozen=True)
class Setting:
    """The part of ``config.pbtxt`` that tune searches."""

    instances: int
    max_batch_size: int
    max_queue_delay_us: int
    intra_op_threads: int = 0  # 0: the backend's own share (usable cores / CPU instances)

    def as_dict(self) -> dict[str, int]:
        return {
            "instances": self.instances,
            "max_batch_size": self.max_batch_size,
            "max_queue_delay_us": self.max_queue_delay_us,
            "intra_op_threads": self.intra_op_threads,
        }


@dataclass(frozen=True)
class Measurement:
    """One setting at one concurrency; ``throughput`` is None when it could not be measured."""

    setting: Setting
    concurrency: int
    throughput: float | None = None  # inferences/s
    p50_ms: float | None = None
    p99_ms: float | None = None
    inferences: int = 0  # the server's count over the measured stretch
    wall_s: float = 0.0
    cpu_s: float = 0.0  # the server's process tree over the same stretch
    generator: str = ""
    baseline: bool = False  # the model's own config
    error: str = ""

    @property
    def ok(self) -> bool:
        return self.throughput is not None and self.p99_ms is not None and self.inferences > 0


def grid(
    instances: Sequence[int],
    max_batch_sizes: Sequence[int],
    queue_delays_us: Sequence[int],
    baseline: Setting | None = None,
    intra_op_threads: Sequence[int] = (0,),
    cores: int | None = None,
) -> list[Setting]:
    """Every combination, the model's own setting first (measured once even if repeated).

    With ``cores`` (the server's usable cores), a thread count equal to the backend's own share
    for that instance count (``cores // instances``, at least 1) is the same setting as 0 and
    is left out when 0 is searched too.
    """
    for label, values, least in (
        ("--instances", instances, 1),
        ("--max-batch-sizes", max_batch_sizes, 1),
        ("--queue-delays-us", queue_delays_us, 0),
        ("--intra-op-threads", intra_op_threads, 0),
    ):
        if not values or min(values) < least:
            raise InvalidInput(f"{label} needs values of at least {least}, got {list(values)}")
    settings = [baseline] if baseline else []
    for n, b, d, t in itertools.product(
        instances, max_batch_sizes, queue_delays_us, intra_op_threads
    ):
        if t and 0 in intra_op_threads and cores is not None and t == max(1, cores // n):
            continue
        setting = Setting(n, b, d, t)
        if setting not in settings:
            settings.append(setting)
    return settings


def cost(measurement: Measurement, function: str) -> float | None:
    """The point's cost per million inferences under ``function`` (None if unmeasured)."""
    if not measurement.ok:
        return None
    if function == "device-seconds-per-million":
        spent = measurement.cpu_s
    elif function == "instance-seconds-per-million":
        spent = measurement.wall_s * measurement.setting.instances
    else:
        raise InvalidInput(f"--cost {function!r} is not one of {', '.join(COST_FUNCTIONS)}")
    return spent / measurement.inferences * 1e6


def pareto_front(points: Sequence[Measurement]) -> list[int]:
    """Indices of the measured points that no other point beats on throughput and p99."""
    front = []
    for i, a in enumerate(points):
        if not a.ok:
            continue
        dominated = any(
            b.ok
            and b.throughput >= a.throughput  # type: ignore[operator]
            and b.p99_ms <= a.p99_ms  # type: ignore[operator]
            and (b.throughput > a.throughput or b.p99_ms < a.p99_ms)  # type: ignore[operator]
            for j, b in enumerate(points)
            if j != i
        )
        if not dominated:
            front.append(i)
    return front


@dataclass(frozen=True)
class Choice:
    """Indices into the measurements: the cheapest and the fastest under the bound, and the
    model's own config's fastest under the bound (None where nothing qualifies)."""

    best: int | None
    fastest: int | None
    baseline: int | None

    def as_dict(self) -> dict[str, Any]:
        return {"best": self.best, "fastest": self.fastest, "baseline": self.baseline}


def choose(points: Sequence[Measurement], p99_ms_bound: float, function: str) -> Choice:
    """The cheapest point whose p99 is within the bound (ties: higher throughput), the
    fastest such point, and the fastest such point of the model's own config."""
    within = [i for i, p in enumerate(points) if p.ok and p.p99_ms <= p99_ms_bound]  # type: ignore[operator]

    def fastest(indices: Sequence[int]) -> int | None:
        return max(indices, key=lambda i: points[i].throughput or 0.0, default=None)

    best = min(
        within,
        key=lambda i: (cost(points[i], function), -(points[i].throughput or 0.0)),
        default=None,
    )
    return Choice(best, fastest(within), fastest([i for i in within if points[i].baseline]))


@dataclass(frozen=True)
class SideBySide:
    """The chosen setting and the model's own, measured in turns at one concurrency."""

    concurrency: int
    chosen: tuple[Measurement, ...]
    baseline: tuple[Measurement, ...]

    def median(self, which: str, field: str) -> float | None:
        """The median of ``field`` (throughput, p99_ms) over ``which``'s measured rounds."""
        values = [getattr(m, field) for m in getattr(self, which) if m.ok]
        return float(statistics.median(values)) if values else None

    def gain(self) -> float | None:
        """Median throughput of the chosen setting over the model's own."""
        chosen, baseline = (
            self.median("chosen", "throughput"),
            self.median("baseline", "throughput"),
        )
        return chosen / baseline if chosen and baseline else None

    def as_dict(self, function: str, p99_ms_bound: float) -> dict[str, Any]:
        def side(which: str) -> dict[str, Any]:
            rounds = getattr(self, which)
            p99 = self.median(which, "p99_ms")
            return {
                "config": rounds[0].setting.as_dict() if rounds else None,
                "throughput": self.median(which, "throughput"),
                "p99_ms": p99,
                "within_bound": p99 is not None and p99 <= p99_ms_bound,
                "cost": _median([cost(m, function) for m in rounds]),
                "rounds": [
                    {"throughput": m.throughput, "p99_ms": m.p99_ms, "error": m.error or None}
                    for m in rounds
                ],
            }

        return {
            "concurrency": self.concurrency,
            "chosen": side("chosen"),
            "baseline": side("baseline"),
            "throughput_gain": self.gain(),
            "rounds_won": self.rounds_won(),
        }

    def rounds_won(self) -> int:
        """Rounds (paired in the order measured) where the chosen setting was faster."""
        won = 0
        for a, b in zip(self.chosen, self.baseline):
            if a.throughput is not None and b.throughput is not None and a.ok and b.ok:
                won += a.throughput > b.throughput
        return won


def _median(values: Sequence[float | None]) -> float | None:
    present = [v for v in values if v is not None]
    return float(statistics.median(present)) if present else None
