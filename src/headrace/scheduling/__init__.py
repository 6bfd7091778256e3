"""Scheduling: how a model version's requests queue, batch and reach its instances.

``make_scheduler`` picks the scheduler a model configuration asks for, as Triton does:
``sequence_batching`` gets the :class:`SequenceBatcher`, ``dynamic_batching`` the
:class:`DynamicBatcher`, no batcher the :class:`DefaultScheduler`, an ensemble the
:class:`EnsembleScheduler`.
"""

from __future__ import annotations

from typing import Any

from headrace.config.platforms import ENSEMBLE_PLATFORM
from headrace.errors import InvalidConfig
from headrace.scheduling.base import Scheduler, StatsSink
from headrace.scheduling.default import DefaultScheduler
from headrace.scheduling.dispatch import NullStats, QueueingScheduler, execution_timeout_ms
from headrace.scheduling.dynamic import DynamicBatcher
from headrace.scheduling.ensemble import EnsembleScheduler
from headrace.scheduling.pool import BatchOutcome, InstancePool, Lease
from headrace.scheduling.queue_policy import DEFAULT_MAX_QUEUE_SIZE, PriorityQueues, QueuePolicy
from headrace.scheduling.router import NoRouter, Route, Router
from headrace.scheduling.sequence import SequenceBatcher
from headrace.scheduling.sinks import FutureSink, StreamResponse, StreamSink

__all__ = [
    "DEFAULT_MAX_QUEUE_SIZE",
    "BatchOutcome",
    "DefaultScheduler",
    "DynamicBatcher",
    "EnsembleScheduler",
    "FutureSink",
    "InstancePool",
    "Lease",
    "NoRouter",
    "NullStats",
    "PriorityQueues",
    "QueuePolicy",
    "QueueingScheduler",
    "Route",
    "Router",
    "Scheduler",
    "SequenceBatcher",
    "StatsSink",
    "StreamResponse",
    "StreamSink",
    "make_scheduler",
]


def make_scheduler(
    config: Any,
    pool: InstancePool | None,
    stats: StatsSink | None = None,
    source: str = "",
    router: Router | None = None,
    model_dir: str = "",
    default_max_queue_size: int = DEFAULT_MAX_QUEUE_SIZE,
) -> Scheduler:
    """The scheduler for a model version, given its ``ModelConfig`` and instance pool.

    ``router`` reaches the other loaded models: an ensemble (which has no pool) runs its
    steps on theirs, and is checked against them here. Without a router none are reachable.
    ``model_dir`` is where a sequence model's ``initial_state`` files are.
    ``default_max_queue_size`` bounds the queues the config leaves unbounded
    (``--default-max-queue-size``; 0: unbounded, as in Triton).
    """
    if config.platform == ENSEMBLE_PLATFORM:
        ensemble = EnsembleScheduler(config, router or NoRouter(), stats)
        ensemble.check()
        return ensemble
    if pool is None:
        raise InvalidConfig(f"model '{config.name}' has no instances to schedule on")
    if config.HasField("sequence_batching"):
        return SequenceBatcher(
            config, pool, stats, model_dir=model_dir, max_queue_size=default_max_queue_size
        )
    queueing: QueueingScheduler
    if config.HasField("dynamic_batching"):
        queueing = DynamicBatcher(
            config, pool, stats, source=source, default_max_queue_size=default_max_queue_size
        )
    else:
        queueing = DefaultScheduler(
            pool,
            stats,
            name=config.name,
            max_batch_size=int(config.max_batch_size),
            max_queue_size=default_max_queue_size,
        )
    queueing.execution_timeout_ms = execution_timeout_ms(config)
    if queueing.execution_timeout_ms:
        pool.keep_off_the_loop()
    return queueing
