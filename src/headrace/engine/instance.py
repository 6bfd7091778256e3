"""A model instance: one backend plus the execution pipeline that feeds it.

The server's schedulers, the offline runner and the benchmarks all execute batches through
this class; none of them talks to a backend directly.

Which pipeline: a backend that ``accepts_torch`` on a ``cuda:N`` device gets the CUDA pipeline
(pinned slots, H2D/compute/D2H streams); every other backend gets the CPU pipeline (stage,
compute and hand-over overlapping on threads). Backends that handle request lists (Triton's
Python backend) run ``execute_requests`` on one ordered worker thread instead.

TODO(onnxruntime on GPU): route its copies through the CUDA slots with ORT I/O binding
(``bind_input``/``bind_output`` on the slot's device buffers); today it takes the CPU
pipeline and onnxruntime copies host ↔ device itself.

Timings: ``submit_timed`` / ``submit_requests_timed`` return each batch's :class:`StageTimes`
(``compute_input_ns`` / ``compute_infer_ns`` / ``compute_output_ns`` are Triton's
statistics); every batch is also added to ``stats`` and sent to ``stats_sink`` when given.
"""

from __future__ import annotations

import time
from collections.abc import Mapping, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np

from headrace.backends.base import Backend
from headrace.engine.buffers import request_sizes
from headrace.engine.pipeline import (
    Pipeline,
    PipelineOptions,
    PipelineResult,
    Preprocess,
    make_pipeline,
)
from headrace.engine.stats import InstanceStats, StageTimes
from headrace.errors import HeadraceError, InvalidInput, ModelExecutionError, Unavailable
from headrace.types import Outputs

if TYPE_CHECKING:  # scheduling imports this module; the protocol is for annotations only
    from headrace.scheduling.base import StatsSink

__all__ = [
    "ModelInstance",
    "TimedOutputs",
    "TimedRequests",
    "merge_requests",
    "split_outputs",
]

RequestResults = list[Outputs | BaseException]


@dataclass(frozen=True)
class TimedOutputs:
    """One merged batch's outputs and how long each pipeline stage took."""

    outputs: Outputs
    times: StageTimes


@dataclass(frozen=True)
class TimedRequests:
    """Per-request outputs (or that request's error) of one batch, with the batch's timings."""

    results: RequestResults
    times: StageTimes


class ModelInstance:
    """Executes merged batches (or request lists) on one backend, in submission order.

    ``submit`` and ``submit_requests`` may be called from any thread; results come back as
    futures, completed in submission order. A failing batch fails only its own future.
    """

    def __init__(
        self,
        backend: Backend,
        *,
        num_buffers: int = 2,
        name: str = "",
        pin_memory: bool = True,
        preprocess: Preprocess | None = None,
        stats_sink: StatsSink | None = None,
    ) -> None:
        self.backend = backend
        self.name = name or backend.context.instance_name or backend.context.model_name
        self.num_buffers = num_buffers
        self.batched = backend.context.config.max_batch_size > 0
        self.stats = InstanceStats()
        self._sink = stats_sink
        on_gpu = backend.accepts_torch and backend.device.startswith("cuda")
        self.on_gpu = on_gpu
        options = PipelineOptions(
            num_buffers=num_buffers, pin_memory=pin_memory, name=self.name, preprocess=preprocess
        )
        self.pipeline: Pipeline = make_pipeline(
            self._compute,
            batched=self.batched,
            device=backend.device if on_gpu else "cpu",
            options=options,
        )
        self._closed = False
        self._request_lists: ThreadPoolExecutor | None = None
        if backend.handles_request_lists:
            self._request_lists = ThreadPoolExecutor(1, thread_name_prefix=f"{self.name}/requests")

    def submit(self, inputs: Mapping[str, Any]) -> Future[Outputs]:
        """Queue one merged batch; the future holds every configured output."""
        return _map(self.submit_timed(inputs), lambda timed: timed.outputs)

    def submit_timed(self, inputs: Mapping[str, Any]) -> Future[TimedOutputs]:
        """Like ``submit``, with the batch's stage timings."""
        return _map(self._submit([inputs]), lambda r: TimedOutputs(r.outputs, r.times))

    def execute(self, inputs: Mapping[str, Any]) -> Outputs:
        return self.submit(inputs).result()

    def submit_requests(
        self, requests: Sequence[Mapping[str, np.ndarray]]
    ) -> Future[RequestResults]:
        """Execute several requests as one batch; each entry is its request's outputs or error.

        The requests are collated straight into a pipeline slot (no intermediate concatenate).
        """
        return _map(self.submit_requests_timed(requests), lambda timed: timed.results)

    def submit_requests_timed(
        self, requests: Sequence[Mapping[str, np.ndarray]]
    ) -> Future[TimedRequests]:
        """Like ``submit_requests``, with the batch's stage timings."""
        if self._request_lists is not None:
            return self._submit_request_list(requests)
        try:
            sizes = request_sizes(requests, self.batched)
        except HeadraceError as exc:
            failed: Future[TimedRequests] = Future()
            failed.set_exception(exc)
            return failed
        return _map(
            self._submit(requests),
            lambda r: TimedRequests(list(split_outputs(r.outputs, sizes)), r.times),
        )

    @property
    def depth(self) -> int:
        """Batches worth holding in flight at once: the pipeline's slots on a GPU, else one.

        On a GPU the slots overlap copies with compute. On the CPU every stage shares the
        cores that compute, so a second batch in flight only makes each batch smaller.
        """
        return self.num_buffers if self.on_gpu else 1

    @property
    def can_run_now(self) -> bool:
        """Whether :meth:`run_requests_now` may be used (host execution only)."""
        return not self.on_gpu

    def run_requests_now(self, requests: Sequence[Mapping[str, np.ndarray]]) -> TimedRequests:
        """Execute one batch on the calling thread; raises what the batch raised.

        For batches that take less time than handing them to the pipeline's threads. The
        caller must not run it while another batch of this instance is in flight.
        """
        if not self.can_run_now:
            raise Unavailable(f"model instance '{self.name}' runs on {self.backend.device}")
        if self._closed:
            raise Unavailable(f"model instance '{self.name}' is closed")
        if self._request_lists is not None:
            return self._run_request_list(requests)
        sizes = request_sizes(requests, self.batched)
        try:
            result = self.pipeline.run_now(requests)
        except BaseException:
            self.stats.record_failure()
            raise
        self._record(result.times)
        return TimedRequests(list(split_outputs(result.outputs, sizes)), result.times)

    def close(self, *, drain: bool = True) -> None:
        """Finish in-flight batches (or refuse queued ones with ``drain=False``), then unload.

        Call it from outside the instance's futures' callbacks: from one of those (the
        pipeline's hand-over thread) it cannot wait for the batches still in flight.
        """
        self._closed = True
        self.pipeline.close(drain=drain)
        if self._request_lists is not None:
            self._request_lists.shutdown(wait=True, cancel_futures=not drain)
        self.backend.unload()

    def _submit(self, requests: Sequence[Mapping[str, Any]]) -> Future[PipelineResult]:
        try:
            future = self.pipeline.submit(requests)
        except HeadraceError as exc:
            failed: Future[PipelineResult] = Future()
            failed.set_exception(exc)
            return failed
        future.add_done_callback(self._account)
        return future

    def _compute(self, inputs: Mapping[str, Any]) -> Outputs:
        try:
            return self.backend.execute(inputs)
        except HeadraceError:
            raise
        except Exception as exc:
            raise _execution_error(self.name, exc) from exc

    def _account(self, future: Future[PipelineResult]) -> None:
        if future.cancelled() or future.exception() is not None:
            self.stats.record_failure()
            return
        self._record(future.result().times)

    def _record(self, times: StageTimes) -> None:
        self.stats.record(times)
        if self._sink is not None:
            self._sink.record_batch(
                batch_size=times.batch_size,
                compute_input_ns=times.compute_input_ns,
                compute_infer_ns=times.compute_infer_ns,
                compute_output_ns=times.compute_output_ns,
            )

    def _submit_request_list(
        self, requests: Sequence[Mapping[str, np.ndarray]]
    ) -> Future[TimedRequests]:
        future: Future[TimedRequests]
        try:
            if self._request_lists is None:
                raise RuntimeError("no request-list worker")
            future = self._request_lists.submit(self._run_request_list, requests)
        except RuntimeError:
            future = Future()
            future.set_exception(Unavailable(f"model instance '{self.name}' is closed"))
        return future

    def _run_request_list(self, requests: Sequence[Mapping[str, np.ndarray]]) -> TimedRequests:
        start = time.monotonic_ns()
        try:
            results = self.backend.execute_requests(requests)
        except HeadraceError:
            raise
        except Exception as exc:
            raise _execution_error(self.name, exc) from exc
        times = StageTimes(
            batch_size=sum(request_sizes(requests, self.batched)),
            compute_ns=time.monotonic_ns() - start,
        )
        self.stats.record(times)
        return TimedRequests(results, times)


def merge_requests(
    requests: Sequence[Mapping[str, np.ndarray]], batched: bool
) -> tuple[dict[str, np.ndarray], list[int]]:
    """Concatenate requests along the batch dimension; returns the batch and each request's size.

    The pipeline does not use this (it collates straight into its slots); it is kept for
    callers that need a merged batch outside an instance.
    """
    if len(requests) == 1:
        only = requests[0]
        size = _batch_size(only) if batched else 1
        return dict(only), [size]
    if not batched:
        raise InvalidInput("a model without a batch dimension executes one request at a time")
    sizes = [_batch_size(r) for r in requests]
    merged = {name: np.concatenate([r[name] for r in requests]) for name in requests[0]}
    return merged, sizes


def split_outputs(outputs: Outputs, sizes: Sequence[int]) -> list[Outputs]:
    """Split a batch's outputs back into per-request views (no copies)."""
    if len(sizes) == 1:
        return [outputs]
    parts: list[Outputs] = [{} for _ in sizes]
    for name, value in outputs.items():
        start = 0
        for index, size in enumerate(sizes):
            parts[index][name] = value[start : start + size]
            start += size
    return parts


def _map(source: Future[Any], convert: Any) -> Future[Any]:
    """A future completed with ``convert(source.result())`` or ``source``'s exception."""
    target: Future[Any] = Future()

    def done(finished: Future[Any]) -> None:
        if finished.cancelled():
            target.cancel()
            return
        error = finished.exception()
        if error is not None:
            target.set_exception(error)
            return
        try:
            target.set_result(convert(finished.result()))
        except Exception as exc:
            target.set_exception(exc)

    source.add_done_callback(done)
    return target


def _batch_size(inputs: Mapping[str, Any]) -> int:
    for value in inputs.values():
        return int(value.shape[0])
    return 0


def _execution_error(name: str, exc: BaseException) -> ModelExecutionError:
    error = ModelExecutionError(f"model instance '{name}' failed: {type(exc).__name__}: {exc}")
    error.__cause__ = exc
    return error
