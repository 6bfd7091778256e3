"""Stream updates through a served ``streaming_detector``: k streams, each on its own sequence.

Every stream is one client (its own connection and, over gRPC, its own ``ModelStreamInfer``
stream) in a thread of its own. It sends update 0 with ``sequence_start``, then the next
updates, either paced (update ``i`` is due at ``t0 + i / rate`` on ``time.monotonic()``;
stream ``s`` of ``k`` runs ``s / k`` of a period behind stream 0, as independent sources
would) or, with no rate, as fast as the server answers. At most ``max_in_flight`` updates of
a stream are unanswered at once (over HTTP a stream sends one at a time, as its call blocks).
A load is bounded twice, by ``duration_s`` and by ``updates`` per stream: the update sent
when either runs out carries ``sequence_end``, so no stream is left holding one of the
sequence batcher's slots; answers still missing ``grace_s`` after the deadline are counted
as errors.

Latency is per update, from the client handing the request to its library to the answer
arriving (so it includes the client's own encoding and decoding); throughput is the
answered updates over the time from the first send to the last answer.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace
from typing import Any

import numpy as np

__all__ = ["MODEL", "Answer", "LoadPlan", "LoadResult", "expected_snapshots", "run_load", "warm_up"]

MODEL = "streaming_detector"

UpdateFn = Callable[[int, int], np.ndarray]
"""``update(stream, index)`` -> that stream's update ``index``, ``[channels, samples]`` FP32;
called once per index, in order, from the stream's own thread."""


@dataclass(frozen=True)
class LoadPlan:
    """What to send where: ``rate`` None streams as fast as the server answers."""

    url: str
    protocol: str = "grpc"
    streams: int = 4
    rate: float | None = 1.0
    duration_s: float = 20.0
    updates: int = 1_000_000
    max_in_flight: int = 4
    first_sequence_id: int = 1
    keep: int = 0
    model: str = MODEL
    grace_s: float = 30.0

    def __post_init__(self) -> None:
        if self.protocol not in ("grpc", "http"):
            raise ValueError(f"protocol must be 'grpc' or 'http', got {self.protocol!r}")
        if self.streams < 1 or self.updates < 1 or self.max_in_flight < 1:
            raise ValueError("streams, updates and max_in_flight must be at least 1")
        if self.rate is not None and self.rate <= 0:
            raise ValueError(
                f"rate must be positive (or None: as fast as answered), got {self.rate}"
            )
        if self.first_sequence_id < 1:
            raise ValueError("sequence ids start at 1 (0 means 'no sequence')")


@dataclass(frozen=True)
class Answer:
    """One answered update kept for checking: what was sent, what came back."""

    index: int
    update: np.ndarray
    cleaned: np.ndarray
    probability: np.ndarray


@dataclass(frozen=True)
class LoadResult:
    """A finished load: counts, the time it took, every latency, the answers kept."""

    plan: LoadPlan
    sent: int
    answered: int
    late: int
    errors: list[str]
    elapsed_s: float
    latencies_ms: np.ndarray
    kept: list[Answer]
    probabilities: list[dict[int, float]]
    samples_per_update: int
    client_cpu_s: float

    @property
    def updates_per_s(self) -> float:
        return self.answered / self.elapsed_s if self.elapsed_s > 0 else 0.0

    @property
    def samples_per_s(self) -> float:
        return self.updates_per_s * self.samples_per_update

    def percentile_ms(self, q: float) -> float:
        return float(np.percentile(self.latencies_ms, q)) if len(self.latencies_ms) else 0.0

    def summary(self) -> dict[str, Any]:
        """JSON-ready figures (no arrays)."""
        plan = self.plan
        return {
            "protocol": plan.protocol,
            "streams": plan.streams,
            "rate_per_stream": plan.rate,
            "max_in_flight": plan.max_in_flight,
            "sent": self.sent,
            "answered": self.answered,
            "late": self.late,
            "errors": len(self.errors),
            "first_errors": self.errors[:3],
            "elapsed_s": round(self.elapsed_s, 3),
            "updates_per_s": round(self.updates_per_s, 2),
            "samples_per_s": round(self.samples_per_s, 1),
            "latency_ms": {
                "p50": round(self.percentile_ms(50), 3),
                "p90": round(self.percentile_ms(90), 3),
                "p99": round(self.percentile_ms(99), 3),
                "max": round(float(self.latencies_ms.max()), 3) if self.answered else 0.0,
            },
            "client_cpu_s": round(self.client_cpu_s, 3),
        }


@dataclass
class _Outcome:
    sent: int = 0
    answered: int = 0
    late: int = 0
    latencies_s: list[float] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)
    kept: list[Answer] = field(default_factory=list)
    probabilities: dict[int, float] = field(default_factory=dict)
    last_answer: float = 0.0
    samples_per_update: int = 0


class _Stream:
    """One client streaming its updates on one sequence; answers come back through
    ``answer`` (from the gRPC client's reader thread, or inline over HTTP)."""

    def __init__(self, number: int, plan: LoadPlan, update: UpdateFn) -> None:
        self.number = number
        self.plan = plan
        self.update = update
        self.sequence_id = plan.first_sequence_id + number
        self.outcome = _Outcome()
        self.keep = plan.keep if number == 0 else 0
        self._slots = threading.Semaphore(plan.max_in_flight)
        self._lock = threading.Lock()
        self._sent_at: dict[int, tuple[float, np.ndarray | None]] = {}
        self._drained = threading.Event()
        self._drained.set()
        self._transport = _connect(plan, self.sequence_id, self.answer)

    def answer(self, index: int | None, result: Any, error: str | None) -> None:
        now = time.monotonic()
        outcome = self.outcome
        with self._lock:
            sent = self._sent_at.pop(index, None) if index is not None else None
            if error is not None or sent is None:
                outcome.errors.append(error or f"an answer for unknown update {index}")
            else:
                outcome.answered += 1
                outcome.latencies_s.append(now - sent[0])
                outcome.last_answer = now
                probability = result.as_numpy("probability")
                outcome.probabilities[index] = float(probability.reshape(-1)[0])
                if sent[1] is not None:
                    cleaned = result.as_numpy("cleaned")
                    outcome.kept.append(Answer(index, sent[1], cleaned, probability))
            if not self._sent_at:
                self._drained.set()
        self._slots.release()

    def run(self, t0: float, deadline: float, stop: threading.Event) -> None:
        plan, outcome = self.plan, self.outcome
        period = 1.0 / plan.rate if plan.rate else 0.0
        give_up = deadline + plan.grace_s
        try:
            for index in range(plan.updates):
                due = t0 + (index + self.number / plan.streams) * period
                if period and stop.wait(max(0.0, due - time.monotonic())):
                    return
                if not self._slots.acquire(timeout=max(0.0, give_up - time.monotonic())):
                    break
                if stop.is_set() or outcome.errors:
                    return
                now = time.monotonic()
                if period and now - due > period:
                    outcome.late += 1
                last = index == plan.updates - 1 or (due + period if period else now) >= deadline
                update = self.update(self.number, index)[None]
                outcome.samples_per_update = int(update.size)
                with self._lock:
                    kept = update if index < self.keep else None
                    self._sent_at[index] = (time.monotonic(), kept)
                    self._drained.clear()
                outcome.sent += 1
                self._transport.send(index, update, index == 0, last)
                if last:
                    break
            self._drained.wait(timeout=max(0.0, give_up - time.monotonic()))
        finally:
            with self._lock:
                if self._sent_at:
                    outcome.errors.append(f"{len(self._sent_at)} updates never answered")
                    self._sent_at.clear()
            self._transport.close()


class _GrpcTransport:
    """``ModelStreamInfer`` on a client of its own; answers arrive on tritonclient's thread."""

    def __init__(
        self,
        plan: LoadPlan,
        sequence_id: int,
        answer: Callable[[int | None, Any, str | None], None],
    ) -> None:
        import tritonclient.grpc as grpcclient

        self._module = grpcclient
        self._plan = plan
        self._sequence_id = sequence_id
        self._answer = answer
        self._client = grpcclient.InferenceServerClient(plan.url)
        self._client.start_stream(callback=self._callback)

    def _callback(self, result: Any, error: Any) -> None:
        if error is not None:
            self._answer(None, None, str(error))
        else:
            self._answer(int(result.get_response().id), result, None)

    def send(self, index: int, update: np.ndarray, start: bool, end: bool) -> None:
        tensor = self._module.InferInput("update", list(update.shape), "FP32")
        tensor.set_data_from_numpy(update)
        self._client.async_stream_infer(
            self._plan.model,
            [tensor],
            request_id=str(index),
            sequence_id=self._sequence_id,
            sequence_start=start,
            sequence_end=end,
        )

    def close(self) -> None:
        self._client.stop_stream()
        self._client.close()


class _HttpTransport:
    """Plain ``infer`` calls; each blocks until its answer, so one update is in flight."""

    def __init__(
        self,
        plan: LoadPlan,
        sequence_id: int,
        answer: Callable[[int | None, Any, str | None], None],
    ) -> None:
        import tritonclient.http as httpclient

        self._module = httpclient
        self._plan = plan
        self._sequence_id = sequence_id
        self._answer = answer
        self._client = httpclient.InferenceServerClient(plan.url, network_timeout=plan.grace_s)

    def send(self, index: int, update: np.ndarray, start: bool, end: bool) -> None:
        from tritonclient.utils import InferenceServerException

        tensor = self._module.InferInput("update", list(update.shape), "FP32")
        tensor.set_data_from_numpy(update)
        try:
            result = self._client.infer(
                self._plan.model,
                [tensor],
                request_id=str(index),
                sequence_id=self._sequence_id,
                sequence_start=start,
                sequence_end=end,
            )
        except (InferenceServerException, OSError) as exc:
            self._answer(index, None, str(exc))
            return
        self._answer(index, result, None)

    def close(self) -> None:
        self._client.close()


def _connect(
    plan: LoadPlan, sequence_id: int, answer: Callable[[int | None, Any, str | None], None]
) -> _GrpcTransport | _HttpTransport:
    if plan.protocol == "grpc":
        return _GrpcTransport(plan, sequence_id, answer)
    return _HttpTransport(plan, sequence_id, answer)


def run_load(plan: LoadPlan, update: UpdateFn, stop: threading.Event | None = None) -> LoadResult:
    """Run ``plan``'s streams to the end (bounded by its duration, count and grace)."""
    stop = stop or threading.Event()
    streams = [_Stream(number, plan, update) for number in range(plan.streams)]
    cpu0 = time.process_time()
    t0 = time.monotonic()
    deadline = t0 + plan.duration_s
    threads = [
        threading.Thread(target=s.run, args=(t0, deadline, stop), name=f"stream-{s.number}")
        for s in streams
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=max(0.0, deadline + plan.grace_s + 10.0 - time.monotonic()))
    if any(thread.is_alive() for thread in threads):
        stop.set()
        raise RuntimeError(f"streams still running {plan.grace_s:.0f} s after the deadline")
    client_cpu_s = time.process_time() - cpu0
    outcomes = [s.outcome for s in streams]
    last = max((o.last_answer for o in outcomes), default=0.0)
    latencies = [x for o in outcomes for x in o.latencies_s]
    return LoadResult(
        plan=plan,
        sent=sum(o.sent for o in outcomes),
        answered=sum(o.answered for o in outcomes),
        late=sum(o.late for o in outcomes),
        errors=[e for o in outcomes for e in o.errors],
        elapsed_s=max(0.0, last - t0),
        latencies_ms=np.asarray(latencies, dtype=np.float64) * 1e3,
        kept=sorted(outcomes[0].kept, key=lambda a: a.index),
        probabilities=[o.probabilities for o in outcomes],
        samples_per_update=max(o.samples_per_update for o in outcomes),
        client_cpu_s=client_cpu_s,
    )


def warm_up(plan: LoadPlan, shape: tuple[int, int], updates: int = 4) -> LoadResult:
    """One short sequence of zeros (id: just past the plan's streams), answered before the
    measured load, so first-call costs (connections, sessions, buffers) stay out of it."""
    zeros = np.zeros(shape, np.float32)
    warm = replace(
        plan,
        streams=1,
        rate=None,
        updates=updates,
        max_in_flight=1,
        duration_s=plan.grace_s,
        first_sequence_id=plan.first_sequence_id + plan.streams,
        keep=0,
    )
    result = run_load(warm, lambda s, i: zeros)
    if result.errors:
        raise RuntimeError(f"warm-up failed: {result.errors[0]}")
    return result


def expected_snapshots(updates: Sequence[np.ndarray], snapshot_size: int) -> np.ndarray:
    """The snapshots a snapshotter holds after each of a stream's first updates, in order:
    ``[len(updates), 1, channels, snapshot_size]``, zeros before the first sample."""
    channels = updates[0].shape[-2]
    snapshot = np.zeros((1, channels, snapshot_size), np.float32)
    out = []
    for update in updates:
        snapshot = np.concatenate([snapshot, update.reshape(1, channels, -1)], axis=-1)
        snapshot = snapshot[..., -snapshot_size:]
        out.append(snapshot)
    return np.stack(out)
