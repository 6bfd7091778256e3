"""``--max-stream-pending-responses``: a client that stops reading a stream does not make the
server buffer without bound.

A tritonclient gRPC stream sends requests to ``flood_decoupled`` (hundreds of 1 KiB responses
each, from the model's own threads) and stops reading (its callback blocks). The stream's
backlog, the core's count of responses sent and not yet written, fills to the bound and goes no
further while the model's sends wait; another client is served all the while; once the first
resumes it gets every response of every request, in order. Past ``--stream-send-timeout`` the
request fails with an error response after those pending instead. The same bound holds for an
HTTP ``generate_stream`` (SSE) client that does not read, on both HTTP servers.
"""

from __future__ import annotations

import json
import shutil
import socket
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import tritonclient.grpc as grpcclient
from door_thread import serving

from headrace.engine.process_worker import SEND_WINDOW
from headrace.server.app import FrontendOptions, ServerApp
from headrace.server.options import ServerOptions

MODELS = Path(__file__).parent.parent / "data" / "python_models"
LIMIT = 32
REQUESTS = 6
COUNT = 300
SIZE = 256  # 1 KiB a response: 1.8 MiB in all, far past a 64 KiB HTTP/2 window
EXTRA = 100
TOTAL = REQUESTS * COUNT + EXTRA
WAIT_S = 60.0
HELD_S = 2.0
"""How long a stalled stream is watched to be still held back (a wait, not a timing check)."""
NO_WINDOW_GROWTH = [("grpc.http2.bdp_probe", 0)]
"""The client's HTTP/2 window stays at its 64 KiB start, so what it absorbs is known."""


@pytest.fixture
def repository(tmp_path: Path) -> Path:
    shutil.copytree(MODELS / "flood_decoupled", tmp_path / "flood_decoupled")
    return tmp_path


def _serve(
    repository: Path,
    http_server: str = "granian",
    timeout_s: float = 60.0,
    python_runtime: str = "in-server",
) -> Any:
    options = FrontendOptions(http_port=0, grpc_port=0, metrics_port=None, http_server=http_server)
    core_options = ServerOptions(
        max_stream_pending_responses=LIMIT,
        stream_send_timeout_s=timeout_s,
        python_runtime=python_runtime,
    )
    return serving(options, repository=repository, options=core_options)


def _wait_for(condition: Callable[[], bool], what: str, wait_s: float = WAIT_S) -> None:
    """Poll ``condition`` until true; the deadline only turns a hang into a failure."""
    deadline = time.monotonic() + wait_s
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.01)


def _peak(app: ServerApp) -> int:
    return max((b.peak for b in app.core.stream_backlogs()), default=0)


def _pending(app: ServerApp) -> int:
    return max((b.pending for b in app.core.stream_backlogs()), default=0)


def _inputs(count: int, size: int) -> list[grpcclient.InferInput]:
    inputs = []
    for name, value in (("COUNT", count), ("SIZE", size)):
        tensor = grpcclient.InferInput(name, [1], "INT32")
        tensor.set_data_from_numpy(np.array([value], dtype=np.int32))
        inputs.append(tensor)
    return inputs


class _PausedReader:
    """A stream callback that stops reading while ``paused`` is set, and keeps what it got."""

    def __init__(self) -> None:
        self.resume = threading.Event()
        self.lock = threading.Lock()
        self.got: list[tuple[str, int | None, str | None]] = []

    def __call__(self, result: Any, error: Any) -> None:
        self.resume.wait(WAIT_S)  # blocks the client's reading thread: nothing more is read
        with self.lock:
            if error is not None:
                self.got.append(("", None, str(error)))
            else:
                index = result.as_numpy("INDEX")
                request_id = result.get_response().id
                self.got.append((request_id, None if index is None else int(index[0]), None))

    def count(self) -> int:
        with self.lock:
            return len(self.got)


@pytest.mark.parametrize("python_runtime", ["in-server", "process"])
def test_a_grpc_stream_that_stops_reading_is_bounded_and_loses_nothing(
    repository: Path, python_runtime: str
) -> None:
    # a worker process may have SEND_WINDOW responses of each request in flight when paused
    bound = LIMIT if python_runtime == "in-server" else LIMIT + REQUESTS * SEND_WINDOW
    with _serve(repository, python_runtime=python_runtime) as app:
        url = f"127.0.0.1:{app.ports['grpc']}"
        reader = _PausedReader()
        client = grpcclient.InferenceServerClient(url, channel_args=NO_WINDOW_GROWTH)
        client.start_stream(reader)
        try:
            for index in range(REQUESTS):
                client.async_stream_infer(
                    "flood_decoupled", _inputs(COUNT, SIZE), request_id=f"r{index}"
                )
            _wait_for(lambda: _peak(app) >= LIMIT, "the stream's backlog to fill")
            assert _peak(app) <= bound
            for index in range(EXTRA):  # requests the server should not read while full
                client.async_stream_infer(
                    "flood_decoupled", _inputs(1, SIZE), request_id=f"e{index}"
                )

            # another client is served while the first one's model threads wait
            with grpcclient.InferenceServerClient(url) as other:
                done = threading.Event()
                answers: list[Any] = []

                def collect(result: Any, error: Any) -> None:
                    answers.append(error or int(result.as_numpy("INDEX")[0]))
                    if len(answers) == 3:
                        done.set()

                other.start_stream(collect)
                other.async_stream_infer("flood_decoupled", _inputs(3, 4), request_id="o")
                assert done.wait(WAIT_S), answers
                other.stop_stream()
                assert answers == [0, 1, 2]

            assert reader.count() < REQUESTS * COUNT  # still not reading
            assert _peak(app) <= bound
            # the stream's later requests wait unread: one is read only when a response has
            # left for the client's 64 KiB window, which holds fewer than EXTRA of them
            executed = app.core.statistics("flood_decoupled")[0].inference_count
            assert executed < REQUESTS + EXTRA + 1, executed  # +1: the other client's
            reader.resume.set()
            _wait_for(lambda: reader.count() >= TOTAL, "every response")
        finally:
            reader.resume.set()
            client.stop_stream()
            client.close()
        assert [got for got in reader.got if got[2] is not None] == []
        for index in range(REQUESTS):
            indexes = [i for rid, i, _ in reader.got if rid == f"r{index}"]
            assert indexes == list(range(COUNT))  # every response, in the order sent
        for index in range(EXTRA):
            assert [i for rid, i, _ in reader.got if rid == f"e{index}"] == [0]
        assert len(reader.got) == TOTAL
        assert _peak(app) <= bound


def test_a_send_that_waits_past_the_timeout_fails_its_request(repository: Path) -> None:
    # in-server: the backlog's count tells when the send gave up (the worker process's
    # give-up is tests/engine/test_process_flow.py's)
    with _serve(repository, timeout_s=0.5) as app:
        url = f"127.0.0.1:{app.ports['grpc']}"
        reader = _PausedReader()
        client = grpcclient.InferenceServerClient(url, channel_args=NO_WINDOW_GROWTH)
        client.start_stream(reader)
        try:
            client.async_stream_infer("flood_decoupled", _inputs(COUNT * 4, SIZE), request_id="t")
            overruns = lambda: sum(b.overruns for b in app.core.stream_backlogs())  # noqa: E731
            _wait_for(lambda: overruns() >= 1, "the send to give up")
            reader.resume.set()
            _wait_for(lambda: any(error for _, _, error in reader.got), "the error response")
        finally:
            reader.resume.set()
            client.stop_stream()
            client.close()
        errors = [error for _, _, error in reader.got if error is not None]
        assert len(errors) == 1
        assert "did not read this stream's responses" in errors[0]
        assert "--max-stream-pending-responses" in errors[0]
        indexes = [index for _, index, error in reader.got if error is None]
        assert indexes == list(range(len(indexes)))  # those sent before, in order
        assert len(indexes) < COUNT * 4
        stats = app.core.statistics("flood_decoupled")[0]
        assert stats.inference_count >= 1


@pytest.mark.parametrize("http_server", ["aiohttp", "granian"])
def test_an_sse_client_that_stops_reading_is_bounded(repository: Path, http_server: str) -> None:
    count, size = 400, 4096  # ~20 KB an event, 8 MB in all: past what the sockets buffer
    with _serve(repository, http_server) as app:
        body = json.dumps({"COUNT": count, "SIZE": size}).encode()
        head = (
            "POST /v2/models/flood_decoupled/generate_stream HTTP/1.1\r\n"
            f"Host: 127.0.0.1\r\nContent-Type: application/json\r\n"
            f"Content-Length: {len(body)}\r\n\r\n"
        ).encode()
        with socket.socket() as sock:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
            sock.connect(("127.0.0.1", app.ports["http"]))
            sock.sendall(head + body)
            _wait_for(lambda: _peak(app) >= LIMIT, "the SSE stream's backlog to fill", HELD_S * 10)
            time.sleep(HELD_S)  # the client still reads nothing: the model must stay held back
            held = _pending(app)
            assert held > LIMIT // 2, f"{held} responses held: the rest went into the door"
            assert _peak(app) <= LIMIT
            received = _read_events(sock, count)
        assert received == list(range(count))
        assert _peak(app) <= LIMIT


def _read_events(sock: socket.socket, count: int) -> list[int]:
    """The INDEX of each server-sent event, until ``count`` have come (chunked or not)."""
    sock.settimeout(WAIT_S)
    data = b""
    indexes: list[int] = []
    while len(indexes) < count:
        chunk = sock.recv(1 << 16)
        if not chunk:
            break
        data += chunk
        while (start := data.find(b"data: ")) >= 0 and (end := data.find(b"\n\n", start)) >= 0:
            event = json.loads(data[start + 6 : end])
            indexes.append(event["INDEX"])
            data = data[end + 2 :]
    return indexes
