"""A model instance: one backend plus the execution pipeline that feeds it.

The server's schedulers, the offline runner and the benchmarks all execute batches through
this class; none of them talks to a backend directly.

Which pipeline half: a backend that handles request lists (Triton's python backend) gets the
request-list stages (the work items themselves, no collation); a backend that
``accepts_torch`` on a ``cuda:N`` device gets the CUDA stages (pinned slots, H2D/compute/D2H
streams, on the backend's own ``compute_stream`` when it has one); every other backend gets
the CPU stages (stage, compute and hand-over overlapping on threads). All of them run on the
same :class:`~headrace.engine.pipeline.Pipeline`: ordering, threads, ``run_now``, draining
and timings are the same for every backend.

Requests are :class:`~headrace.types.WorkItem` objects or bare input mappings (offline runs,
benchmarks); a backend that wants arrays only ever sees the inputs.

A configuration's ``reshape`` is applied here, for every backend and every door
(:mod:`headrace.engine.reshape`): batches and request lists arrive in the protocol's shapes
(``dims``), the backend gets the reshaped ones, and its outputs (returned or sent through a
request's sink) go back in their ``dims``.

Timings: ``submit_timed`` / ``submit_requests_timed`` return each batch's :class:`StageTimes`
(``compute_input_ns`` / ``compute_infer_ns`` / ``compute_output_ns`` are Triton's
statistics); every batch is also added to ``stats`` and sent to ``stats_sink`` when given.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import Future
from dataclasses import dataclass
from typing import Any, TypeVar

import numpy as np

from headrace.backends.base import Backend, RequestResult
from headrace.engine.buffers import request_sizes
from headrace.engine.pipeline import (
    Pipeline,
    PipelineOptions,
    PipelineResult,
    Preprocess,
    make_pipeline,
)
from headrace.engine.request_lists import RequestListStages
from headrace.engine.reshape import Reshapes
from headrace.engine.slots import split_outputs
from headrace.engine.stats import InstanceStats, StageTimes, StatsSink
from headrace.errors import HeadraceError, InvalidInput, ModelExecutionError, Unavailable
from headrace.types import Outputs, WorkItem

__all__ = [
    "ModelInstance",
    "Request",
    "TimedOutputs",
    "TimedRequests",
    "merge_requests",
    "split_outputs",
]

Request = WorkItem | Mapping[str, np.ndarray]
"""One request of a batch: a work item, or (offline runs, benchmarks) its inputs alone."""

RequestResults = list[RequestResult]
T = TypeVar("T")


@dataclass(slots=True)
class TimedOutputs:
    """One merged batch's outputs and how long each pipeline stage took."""

    outputs: Outputs
    times: StageTimes


@dataclass(slots=True)
class TimedRequests:
    """Per-request outputs (or that request's error, or None when the backend answered through
    the request's sink) of one batch, with the batch's timings."""

    results: RequestResults
    times: StageTimes


class ModelInstance:
    """Executes batches on one backend, in submission order.

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
        self._reshapes = Reshapes.of(backend.context.config)
        self.takes_work_items = backend.handles_request_lists
        on_gpu = (
            not self.takes_work_items
            and backend.accepts_torch
            and backend.device.startswith("cuda")
        )
        self.on_gpu = on_gpu
        options = PipelineOptions(
            num_buffers=num_buffers,
            pin_memory=pin_memory,
            name=self.name,
            preprocess=preprocess,
            compute_stream=getattr(backend, "compute_stream", None) if on_gpu else None,
        )
        self.pipeline = _make_pipeline(self, options)
        self._closed = False

    # -- merged batches (offline runs, benchmarks) ------------------------------------------

    def submit(self, inputs: Mapping[str, Any]) -> Future[Outputs]:
        """Queue one merged batch; the future holds every configured output."""
        return _map(self.submit_timed(inputs), lambda timed: timed.outputs)

    def submit_timed(self, inputs: Mapping[str, Any]) -> Future[TimedOutputs]:
        """Like ``submit``, with the batch's stage timings."""
        return _map(self._submit([inputs]), _merged)

    def execute(self, inputs: Mapping[str, Any]) -> Outputs:
        return self.submit(inputs).result()

    # -- request batches (the server's schedulers) ------------------------------------------

    def submit_requests(self, requests: Sequence[Request]) -> Future[RequestResults]:
        """Execute several requests as one batch; each entry is its request's result.

        The requests are collated straight into a pipeline slot (no intermediate concatenate).
        """
        return _map(self.submit_requests_timed(requests), lambda timed: timed.results)

    def submit_requests_timed(self, requests: Sequence[Request]) -> Future[TimedRequests]:
        """Like ``submit_requests``, with the batch's stage timings."""
        return _map(self._submit(self._prepare(requests)), _per_request)

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

    def run_requests_now(self, requests: Sequence[Request]) -> TimedRequests:
        """Execute one batch on the calling thread; raises what the batch raised.

        For batches that take less time than handing them to the pipeline's threads. The
        caller must not run it while another batch of this instance is in flight.
        """
        if not self.can_run_now:
            raise Unavailable(f"model instance '{self.name}' runs on {self.backend.device}")
        if self._closed:
            raise Unavailable(f"model instance '{self.name}' is closed")
        try:
            result = self.pipeline.run_now(self._prepare(requests))
        except BaseException:
            self.stats.record_failure()
            raise
        self._record(result.times)
        return _per_request(result)

    def close(self, *, drain: bool = True) -> None:
        """Finish in-flight batches (or refuse queued ones with ``drain=False``), then unload.

        Call it from outside the instance's futures' callbacks: from one of those (the
        pipeline's hand-over thread) it cannot wait for the batches still in flight.
        """
        self._closed = True
        self.pipeline.close(drain=drain)
        self.backend.unload()

    # -- internals --------------------------------------------------------------------------

    def _prepare(self, requests: Sequence[Request]) -> list[Any]:
        """What the pipeline takes: work items for request lists, input mappings otherwise."""
        if self.takes_work_items:
            return [r if isinstance(r, WorkItem) else WorkItem(r) for r in requests]
        return [r.inputs if isinstance(r, WorkItem) else r for r in requests]

    def _submit(self, requests: Sequence[Any]) -> Future[PipelineResult]:
        try:
            future = self.pipeline.submit(requests)
        except HeadraceError as exc:
            failed: Future[PipelineResult] = Future()
            failed.set_exception(exc)
            return failed
        future.add_done_callback(self._account)
        return future

    def _compute(self, inputs: Mapping[str, Any]) -> Outputs:
        reshapes = self._reshapes
        try:
            if reshapes is None:
                return self.backend.execute(inputs)
            outputs = self.backend.execute(reshapes.model_inputs(inputs))
            return reshapes.protocol_outputs(outputs) or {}
        except HeadraceError:
            raise
        except Exception as exc:
            raise _execution_error(self.name, exc) from exc

    def _execute_requests(self, items: Sequence[WorkItem]) -> list[RequestResult]:
        reshapes = self._reshapes
        try:
            if reshapes is None:
                return self.backend.execute_requests(items)
            results = self.backend.execute_requests(reshapes.model_items(items))
            return [_protocol_result(reshapes, result) for result in results]
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


def _make_pipeline(instance: ModelInstance, options: PipelineOptions) -> Pipeline:
    backend = instance.backend
    if instance.takes_work_items:
        stages = RequestListStages(instance._execute_requests, instance.batched, instance.name)
        return Pipeline(stages, options)
    device = backend.device if instance.on_gpu else "cpu"
    return make_pipeline(
        instance._compute, batched=instance.batched, device=device, options=options
    )


def _protocol_result(reshapes: Reshapes, result: RequestResult) -> RequestResult:
    """One request's result with its reshaped outputs in their dims (errors stay as they are)."""
    if result is None or isinstance(result, BaseException):
        return result
    try:
        return reshapes.protocol_outputs(result)
    except HeadraceError as exc:
        return exc


def _merged(result: PipelineResult) -> TimedOutputs:
    return TimedOutputs(result.outputs, result.times)


def _per_request(result: PipelineResult) -> TimedRequests:
    return TimedRequests(result.results(), result.times)


def merge_requests(
    requests: Sequence[Mapping[str, np.ndarray]], batched: bool
) -> tuple[dict[str, np.ndarray], list[int]]:
    """Concatenate requests along the batch dimension; returns the batch and each request's size.

    The pipeline does not use this (it collates straight into its slots); it is kept for
    callers that need a merged batch outside an instance.
    """
    if len(requests) == 1:
        only = requests[0]
        return dict(only), request_sizes([only], batched)
    if not batched:
        raise InvalidInput("a model without a batch dimension executes one request at a time")
    sizes = request_sizes(requests, batched)
    merged = {name: np.concatenate([r[name] for r in requests]) for name in requests[0]}
    return merged, sizes


def _map(source: Future[Any], convert: Callable[[Any], T]) -> Future[T]:
    """A future completed with ``convert(source.result())`` or ``source``'s exception."""
    target: Future[T] = Future()

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


def _execution_error(name: str, exc: BaseException) -> ModelExecutionError:
    error = ModelExecutionError(f"model instance '{name}' failed: {type(exc).__name__}: {exc}")
    error.__cause__ = exc
    return error
