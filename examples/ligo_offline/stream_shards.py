"""One client streaming its shards through ``streaming_detector`` on one gRPC stream.

Each shard is one sequence on the client's correlation id: update 0 carries
``sequence_start``, the last one ``sequence_end``; at most ``max_in_flight`` updates are
unanswered at once, and the client waits for a shard's last answer before it starts the next
shard's sequence on the same id (a new start on a live sequence would cut it short). Every
wait is bounded by the client's deadline. Answers are kept per shard: the detector's
probability for each update and the cleaned samples that update brought (the newest
``update_size`` of the cleaned snapshot), so a shard's cleaned series is their concatenation.
"""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass, field
from typing import Any

import numpy as np

__all__ = ["MODEL", "ShardAnswers", "stream_client"]

MODEL = "streaming_detector"


@dataclass
class ShardAnswers:
    """What came back for one shard: ``cleaned`` [channels, updates * update_size] and
    ``probability`` [updates], NaN where an update went unanswered."""

    cleaned: np.ndarray
    probability: np.ndarray
    answered: int = 0


@dataclass
class _State:
    lock: threading.Lock = field(default_factory=threading.Lock)
    pending: set[str] = field(default_factory=set)
    drained: threading.Event = field(default_factory=threading.Event)
    errors: list[str] = field(default_factory=list)


def stream_client(
    url: str,
    sequence_id: int,
    shards: dict[int, np.ndarray],
    *,
    max_in_flight: int = 4,
    timeout_s: float = 120.0,
) -> tuple[dict[int, ShardAnswers], list[str]]:
    """Stream ``shards`` (``{shard: [updates, channels, update_size]}``, in key order) to the
    server at ``url`` on ``sequence_id``; return the answers per shard and any errors."""
    import tritonclient.grpc as grpcclient

    deadline = time.monotonic() + timeout_s
    state = _State()
    slots = threading.Semaphore(max_in_flight)
    answers = {
        shard: ShardAnswers(
            cleaned=np.full((data.shape[1], data.shape[0] * data.shape[2]), np.nan, np.float32),
            probability=np.full(data.shape[0], np.nan, np.float32),
        )
        for shard, data in shards.items()
    }

    def callback(result: Any, error: Any) -> None:
        with state.lock:
            if error is not None:
                state.errors.append(str(error))
                state.pending.clear()
            else:
                request_id = result.get_response().id
                state.pending.discard(request_id)
                shard, index = (int(part) for part in request_id.split(":"))
                update_size = shards[shard].shape[2]
                cleaned = result.as_numpy("cleaned").reshape(shards[shard].shape[1], -1)
                span = slice(index * update_size, (index + 1) * update_size)
                answers[shard].cleaned[:, span] = cleaned[:, -update_size:]
                answers[shard].probability[index] = result.as_numpy("probability").reshape(-1)[0]
                answers[shard].answered += 1
            if not state.pending:
                state.drained.set()
        slots.release()

    client = grpcclient.InferenceServerClient(url)
    client.start_stream(callback=callback)
    try:
        for shard in sorted(shards):
            data = shards[shard]
            for index in range(data.shape[0]):
                if state.errors or not slots.acquire(timeout=max(0.0, deadline - time.monotonic())):
                    return answers, state.errors or [f"shard {shard}: out of time at {index}"]
                tensor = grpcclient.InferInput("update", [1, *data.shape[1:]], "FP32")
                tensor.set_data_from_numpy(np.ascontiguousarray(data[index][None]))
                request_id = f"{shard}:{index}"
                with state.lock:
                    state.pending.add(request_id)
                    state.drained.clear()
                client.async_stream_infer(
                    MODEL,
                    [tensor],
                    request_id=request_id,
                    sequence_id=sequence_id,
                    sequence_start=index == 0,
                    sequence_end=index == data.shape[0] - 1,
                )
            if not state.drained.wait(timeout=max(0.0, deadline - time.monotonic())):
                return answers, [f"shard {shard}: answers missing at the deadline"]
        return answers, state.errors
    finally:
        client.stop_stream()
        client.close()
