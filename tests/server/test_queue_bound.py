"""``--default-max-queue-size`` over the wire: a model whose config sets no ``max_queue_size``
(Triton: unbounded) refuses a request past the server's bound at once, with 503 / UNAVAILABLE
and Triton's words for a full queue, through unmodified ``tritonclient``."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pytest

from headrace.server.app import FrontendOptions
from headrace.server.binding import DynamicBatching, Server, Tensor
from headrace.server.options import ServerOptions
from one_infer import infer_or_refusal

WAIT_S = 30.0


class Gate:
    """A model that holds its one batch until the test opens the gate."""

    def __init__(self) -> None:
        self.started = threading.Event()
        self.open = threading.Event()

    def __call__(self, x: np.ndarray) -> dict[str, np.ndarray]:
        self.started.set()
        self.open.wait(WAIT_S)
        return {"y": x}


@pytest.fixture
def gated() -> Iterator[tuple[Server, Gate]]:
    gate = Gate()
    server = Server(
        FrontendOptions(http_port=0, grpc_port=0, metrics_port=None),
        options=ServerOptions(default_max_queue_size=1, run_now_below_us=0),
    )
    server.bind(
        "gated",
        gate,
        inputs=[Tensor("x", np.float32, (1,))],
        outputs=[Tensor("y", np.float32, (1,))],
        max_batch_size=1,
        batching=DynamicBatching(),  # no max_queue_size: the server's bound applies
    )
    server.start()
    try:
        yield server, gate
    finally:
        gate.open.set()
        server.stop()


def _wait_until_pending(server: Server, count: int) -> None:
    """Poll the model's scheduler; the deadline only turns a hang into a failure."""
    deadline = time.monotonic() + WAIT_S
    while not any(v.scheduler.pending >= count for v in server.core.loaded_versions()):
        assert time.monotonic() < deadline, f"{count} requests never reached the scheduler"
        time.sleep(0.01)


@pytest.mark.parametrize(
    ("protocol", "status"), [("http", "503"), ("grpc", "StatusCode.UNAVAILABLE")]
)
def test_a_request_past_the_default_bound_is_refused_in_tritons_words(
    gated: tuple[Server, Gate], protocol: str, status: str
) -> None:
    server, gate = gated
    port = server.http_port if protocol == "http" else server.grpc_port
    call = (infer_or_refusal, protocol, f"127.0.0.1:{port}", "gated", "x")
    with ThreadPoolExecutor(2) as pool:
        running = pool.submit(*call)
        assert gate.started.wait(WAIT_S)
        queued = pool.submit(*call)
        _wait_until_pending(server, 2)  # one running, one queued: the queue is full
        refused = infer_or_refusal(*call[1:])
        gate.open.set()
        assert (running.result(WAIT_S), queued.result(WAIT_S)) == ("ok", "ok")
    assert refused == (
        f"{status}: [request id: <id_unknown>] Exceeds maximum queue size; model 'gated' has 1 "
        "requests queued (--default-max-queue-size)"
    )


def test_the_flag_shows_its_default_and_zero_means_unbounded() -> None:
    import argparse

    from headrace.errors import InvalidConfig
    from headrace.scheduling import DEFAULT_MAX_QUEUE_SIZE
    from headrace.server.security_cli import add_security_arguments

    parser = argparse.ArgumentParser()
    add_security_arguments(parser)
    assert parser.parse_args([]).default_max_queue_size == DEFAULT_MAX_QUEUE_SIZE
    assert parser.parse_args(["--default-max-queue-size=0"]).default_max_queue_size == 0
    assert f"(default {DEFAULT_MAX_QUEUE_SIZE})" in " ".join(parser.format_help().split())
    with pytest.raises(InvalidConfig, match="--default-max-queue-size must not be negative"):
        ServerOptions(default_max_queue_size=-1)
