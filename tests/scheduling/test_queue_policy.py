"""Queue policies and priority queues, without a scheduler around them."""

from __future__ import annotations

import asyncio

import numpy as np
import pytest
from tritonclient.grpc import model_config_pb2

from headrace.errors import InvalidConfig, Unavailable
from headrace.scheduling.queue_policy import (
    DEFAULT_MAX_QUEUE_SIZE,
    PriorityQueues,
    QueuedRequest,
    QueuePolicy,
)
from headrace.types import WorkItem


def item(loop: asyncio.AbstractEventLoop, now_ns: int = 0, request_id: str = "") -> QueuedRequest:
    return QueuedRequest(WorkItem({"x": np.zeros((1, 1))}, request_id=request_id), 1, now_ns)


def test_policy_from_proto_and_timeout_override() -> None:
    message = model_config_pb2.ModelQueuePolicy(
        timeout_action=model_config_pb2.ModelQueuePolicy.DELAY,
        default_timeout_microseconds=1000,
        allow_timeout_override=True,
        max_queue_size=3,
    )
    policy = QueuePolicy.from_proto(message)
    assert policy == QueuePolicy("DELAY", 1000, True, 3)
    assert policy.timeout_us(0) == 1000
    assert policy.timeout_us(10) == 10
    assert policy.timeout_us(5000) == 1000  # may shorten, never lengthen
    assert QueuePolicy(default_timeout_us=1000).timeout_us(10) == 1000  # override not allowed
    assert QueuePolicy(allow_timeout_override=True).timeout_us(10) == 0  # no default: none


def test_priority_mapping_follows_triton() -> None:
    queues = PriorityQueues(levels=3, default_level=2)
    assert [queues.level_for(p) for p in (0, 1, 2, 3, 4)] == [2, 1, 2, 3, 2]
    assert PriorityQueues().level_for(7) == 0


def test_order_levels_then_delayed_and_per_level_limits() -> None:
    loop = asyncio.new_event_loop()
    try:
        queues = PriorityQueues(
            levels=2,
            default_level=2,
            default_policy=QueuePolicy(timeout_action="DELAY", default_timeout_us=1),
            level_policies={1: QueuePolicy(max_queue_size=1)},
        )
        a, b, c = item(loop), item(loop), item(loop)
        queues.push(a, 2, 0, now_ns=0)  # deadline 1000 ns
        queues.push(b, 2, 0, now_ns=5000)
        queues.push(c, 1, 0, now_ns=0)
        with pytest.raises(Unavailable, match="level 1"):
            queues.push(item(loop), 1, 0, now_ns=0)
        assert list(queues) == [c, a, b]
        assert queues.next_deadline_ns() == 1000
        assert queues.expire(now_ns=2000) == []  # DELAY keeps a
        assert list(queues) == [c, b, a]
        queues.take([c, b])
        assert list(queues) == [a] and len(queues) == 1
    finally:
        loop.close()


def test_reject_returns_late_requests() -> None:
    loop = asyncio.new_event_loop()
    try:
        queues = PriorityQueues(default_policy=QueuePolicy(default_timeout_us=10))
        late, fresh = item(loop), item(loop)
        queues.push(late, 0, 0, now_ns=0)
        queues.push(fresh, 0, 0, now_ns=50_000)
        assert queues.expire(now_ns=20_000) == [late]
        assert list(queues) == [fresh] and len(queues) == 1
        assert queues.next_deadline_ns() == 60_000
    finally:
        loop.close()


def test_a_full_queue_names_the_model_and_its_limit() -> None:
    loop = asyncio.new_event_loop()
    try:
        queues = PriorityQueues(default_policy=QueuePolicy(max_queue_size=1), model="mlp")
        queues.push(item(loop), 0, 0, now_ns=0)
        with pytest.raises(Unavailable) as refused:
            queues.push(item(loop), 0, 0, now_ns=0)
    finally:
        loop.close()
    assert str(refused.value) == (  # Triton's words first, as tritonclient users match them
        "[request id: <id_unknown>] Exceeds maximum queue size; model 'mlp' has 1 requests "
        "queued (max_queue_size)"
    )


def test_a_level_without_max_queue_size_takes_the_server_default() -> None:
    loop = asyncio.new_event_loop()
    try:
        queues = PriorityQueues(
            levels=2,
            default_level=1,
            level_policies={2: QueuePolicy(max_queue_size=3)},
            model="mlp",
            fallback_size=2,
        )
        for _ in range(2):
            queues.push(item(loop), 1, 0, now_ns=0)
        with pytest.raises(Unavailable) as refused:
            queues.push(item(loop, request_id="r7"), 1, 0, now_ns=0)
        for _ in range(3):  # the level's own max_queue_size wins over the server's default
            queues.push(item(loop), 2, 0, now_ns=0)
        with pytest.raises(Unavailable, match=r"has 3 requests queued at priority level 2 \("):
            queues.push(item(loop), 2, 0, now_ns=0)
    finally:
        loop.close()
    assert str(refused.value) == (
        "[request id: r7] Exceeds maximum queue size; model 'mlp' has 2 requests queued at "
        "priority level 1 (--default-max-queue-size)"
    )


def test_a_server_default_of_zero_leaves_the_queue_unbounded_as_triton() -> None:
    loop = asyncio.new_event_loop()
    try:
        queues = PriorityQueues(model="mlp", fallback_size=0)
        for _ in range(DEFAULT_MAX_QUEUE_SIZE + 1):
            queues.push(item(loop), 0, 0, now_ns=0)
        assert len(queues) == DEFAULT_MAX_QUEUE_SIZE + 1
        bounded = PriorityQueues(model="mlp")  # the default: bounded
        for _ in range(DEFAULT_MAX_QUEUE_SIZE):
            bounded.push(item(loop), 0, 0, now_ns=0)
        with pytest.raises(Unavailable, match="Exceeds maximum queue size"):
            bounded.push(item(loop), 0, 0, now_ns=0)
    finally:
        loop.close()
    with pytest.raises(InvalidConfig, match="--default-max-queue-size must not be negative"):
        PriorityQueues(fallback_size=-1)
