"""A sequence model shared by several frontends: its sequence batcher runs in the instances' actors.

    frontend A ─┐  correlation id → instance (the same rule in every frontend)
    frontend B ─┼─► actor 0: SequenceBatcher (slots, implicit state, idle release) + instance
                └─► actor 1: SequenceBatcher + instance

The sequence batcher (:mod:`.sequence`) keeps each sequence's slot and implicit state in the
process that runs it. Behind one frontend that process is the frontend; behind several
(``headrace serve --ray-share``, the instances shared as Ray actors) a sequence whose requests
enter different frontends would meet a different batcher each time. So here every frontend
routes a request by its correlation id alone, to instance ``id mod N`` (a string id: its
SHA-256 mod N), the same instance from every frontend serving the same configuration, and the
batcher runs inside that instance's actor over that one instance: the state lives with the
actor. A sequence is then batched with the other sequences of its actor, as the batcher would
do behind one frontend.

Costs and limits: one actor call per request rather than per batch; ``withdraw`` cannot recall
a request already sent (its answer is dropped); an actor that dies loses its sequences' state,
so their next requests must START again (the batcher refuses them with the id named) and the
requests in flight fail with Unavailable naming the model. The statistics the actor's batcher
records come back with each answer and are replayed into this frontend's, so each frontend
counts the requests it carried.
"""

from __future__ import annotations

import asyncio
import hashlib
import time
from collections.abc import Awaitable, Callable, Sequence
from concurrent.futures import Future
from typing import Any, Protocol

from headrace.errors import HeadraceError, InvalidConfig, Unavailable
from headrace.scheduling.base import Scheduler, StatsSink
from headrace.scheduling.dispatch import NullStats
from headrace.scheduling.pool import InstancePool
from headrace.scheduling.queue_policy import DEFAULT_MAX_QUEUE_SIZE
from headrace.scheduling.sinks import FutureSink
from headrace.types import Outputs, WorkItem

__all__ = ["RemoteInstance", "RoutedSequenceScheduler", "route"]


class RemoteInstance(Protocol):
    """An instance that runs the caller's coroutine next to itself (a Ray actor's)."""

    name: str

    def call(self, fn: Callable[..., Awaitable[Any]], *args: Any) -> Future[Any]: ...


def route(sequence_id: int | str, count: int) -> int:
    """The instance a sequence belongs to: the same in every process."""
    if isinstance(sequence_id, str):
        digest = hashlib.sha256(sequence_id.encode("utf-8")).digest()
        return int.from_bytes(digest[:8], "big") % count
    return int(sequence_id) % count


class RoutedSequenceScheduler(Scheduler):
    """Sends each request to its sequence's instance, whose actor batches it."""

    def __init__(
        self,
        config: Any,
        instances: Sequence[RemoteInstance],
        stats: StatsSink | None = None,
        *,
        model_dir: str = "",
        max_queue_size: int = DEFAULT_MAX_QUEUE_SIZE,
    ) -> None:
        """``max_queue_size`` bounds each actor's batcher, as it bounds a local one."""
        if not instances:
            raise InvalidConfig(f"model '{config.name}' has no instances to schedule on")
        self.name = config.name
        self._config = config.SerializeToString()
        self._instances = list(instances)
        self._stats: StatsSink = stats if stats is not None else NullStats()
        self._model_dir = model_dir
        self._max_queue_size = max_queue_size
        self._pending = 0
        self._draining = False
        self._idle = asyncio.Event()
        self._idle.set()

    @property
    def pending(self) -> int:
        return self._pending

    def submit(self, item: WorkItem) -> WorkItem:
        if self._draining:
            raise Unavailable(f"model '{self.name}' is shutting down; request refused")
        from headrace.engine.ray_executor import portable_request

        loop = asyncio.get_running_loop()
        instance = self._instances[route(item.sequence_id, len(self._instances))]
        start_ns = time.monotonic_ns()
        sent = instance.call(
            _in_actor,
            self._config,
            self._model_dir,
            self._max_queue_size,
            portable_request(item),
        )
        self._pending += 1
        self._idle.clear()

        def done(finished: Future[Any]) -> None:
            try:
                loop.call_soon_threadsafe(self._answer, item, finished, start_ns)
            except RuntimeError:
                pass  # the loop closed: nobody is left to answer

        sent.add_done_callback(done)
        return item

    def withdraw(self, ticket: Any) -> None:
        """A request already sent runs; its answer is dropped by its sink."""

    async def drain(self) -> None:
        self._draining = True
        await self._idle.wait()

    def _answer(self, item: WorkItem, finished: Future[Any], start_ns: int) -> None:
        self._pending -= 1
        if self._pending == 0:
            self._idle.set()
        lost = finished.exception()
        if lost is not None:  # the actor died, or never ran it: nothing was recorded there
            total = time.monotonic_ns() - start_ns
            self._stats.record_request(success=False, queue_ns=0, total_ns=total)
            item.sink.fail(lost)
            return
        outputs, error, records = finished.result()
        for kind, fields in records:
            if kind == "request":
                self._stats.record_request(**fields)
            else:
                self._stats.record_batch(**fields)
        if error is not None:
            item.sink.fail(error)
        else:
            item.sink.send(outputs, final=True)


# -- inside the actor ---------------------------------------------------------------------


class _Recorder:
    """The actor's StatsSink: keeps what the batcher records until an answer carries it."""

    def __init__(self) -> None:
        self.records: list[tuple[str, dict[str, Any]]] = []

    def record_request(self, *, success: bool, queue_ns: int, total_ns: int) -> None:
        self.records.append(
            ("request", {"success": success, "queue_ns": queue_ns, "total_ns": total_ns})
        )

    def record_batch(
        self,
        *,
        batch_size: int,
        compute_input_ns: int,
        compute_infer_ns: int,
        compute_output_ns: int,
    ) -> None:
        fields: dict[str, Any] = {
            "batch_size": batch_size,
            "compute_input_ns": compute_input_ns,
            "compute_infer_ns": compute_infer_ns,
            "compute_output_ns": compute_output_ns,
        }
        self.records.append(("batch", fields))

    def take(self) -> list[tuple[str, dict[str, Any]]]:
        records, self.records = self.records, []
        return records


class _Host:
    """The model's sequence batcher over the actor's one instance, and its recorder."""

    def __init__(
        self, instance: Any, config_bytes: bytes, model_dir: str, max_queue_size: int
    ) -> None:
        from headrace.config import ModelConfig
        from headrace.scheduling.sequence import SequenceBatcher

        config = ModelConfig()
        config.ParseFromString(config_bytes)
        self.recorder = _Recorder()
        self.batcher = SequenceBatcher(
            config,
            InstancePool([instance]),
            self.recorder,
            model_dir=model_dir,
            max_queue_size=max_queue_size,
        )


_Records = list[tuple[str, dict[str, Any]]]
_Answer = tuple[Outputs | None, HeadraceError | None, _Records]

_HOSTS: dict[int, _Host] = {}
"""Per actor process: the batcher of each instance it holds (one), by the instance's id."""


async def _in_actor(
    instance: Any, config_bytes: bytes, model_dir: str, max_queue_size: int, item: WorkItem
) -> _Answer:
    """Run ``item`` through the actor's sequence batcher: its outputs or its error (as a value,
    so the frontend tells it from the actor's death), and what the batcher recorded since."""
    host = _HOSTS.get(id(instance))
    if host is None:
        host = _HOSTS[id(instance)] = _Host(instance, config_bytes, model_dir, max_queue_size)
    sink = FutureSink(asyncio.get_running_loop())
    item.sink = sink
    try:
        host.batcher.submit(item)
        outputs: Outputs | None = await sink.future
    except HeadraceError as exc:
        return None, exc, host.recorder.take()
    return outputs, None, host.recorder.take()
