"""A model instance: one backend plus the execution pipeline that feeds it.

The server's schedulers, the offline runner and the benchmarks all execute batches through
this class; none of them talks to a backend directly.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from concurrent.futures import Future
from typing import Any

import numpy as np

from headrace.backends.base import Backend, Outputs
from headrace.errors import HeadraceError, InvalidInput, ModelExecutionError

__all__ = ["ModelInstance", "merge_requests", "split_outputs"]


class ModelInstance:
    """Executes merged batches (or request lists) on one backend, in submission order.

    ``submit`` and ``submit_requests`` may be called from any thread; results come back as
    futures, completed in submission order. A failing batch fails only its own future.
    """

    def __init__(self, backend: Backend, *, num_buffers: int = 2, name: str = "") -> None:
        self.backend = backend
        self.name = name or backend.context.instance_name or backend.context.model_name
        self.num_buffers = num_buffers
        self.batched = backend.context.config.max_batch_size > 0

    def submit(self, inputs: Mapping[str, Any]) -> Future[Outputs]:
        """Queue one merged batch; the future holds every configured output."""
        future: Future[Outputs] = Future()
        try:
            future.set_result(self.backend.execute(inputs))
        except HeadraceError as exc:
            future.set_exception(exc)
        except Exception as exc:
            future.set_exception(_execution_error(self.name, exc))
        return future

    def execute(self, inputs: Mapping[str, Any]) -> Outputs:
        return self.submit(inputs).result()

    def submit_requests(
        self, requests: Sequence[Mapping[str, np.ndarray]]
    ) -> Future[list[Outputs | BaseException]]:
        """Execute several requests as one batch; each entry is its request's outputs or error."""
        future: Future[list[Outputs | BaseException]] = Future()
        if self.backend.handles_request_lists:
            try:
                future.set_result(self.backend.execute_requests(requests))
            except Exception as exc:
                future.set_exception(_execution_error(self.name, exc))
            return future
        try:
            merged, sizes = merge_requests(requests, self.batched)
        except HeadraceError as exc:
            future.set_exception(exc)
            return future

        def done(batch: Future[Outputs]) -> None:
            error = batch.exception()
            if error is not None:
                future.set_exception(error)
            else:
                future.set_result(list(split_outputs(batch.result(), sizes)))

        self.submit(merged).add_done_callback(done)
        return future

    def close(self) -> None:
        """Finish in-flight batches, then unload the backend."""
        self.backend.unload()


def merge_requests(
    requests: Sequence[Mapping[str, np.ndarray]], batched: bool
) -> tuple[dict[str, np.ndarray], list[int]]:
    """Concatenate requests along the batch dimension; returns the batch and each request's size."""
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


def _batch_size(inputs: Mapping[str, Any]) -> int:
    for value in inputs.values():
        return int(value.shape[0])
    return 0


def _execution_error(name: str, exc: BaseException) -> ModelExecutionError:
    error = ModelExecutionError(f"model instance '{name}' failed: {type(exc).__name__}: {exc}")
    error.__cause__ = exc
    return error
