"""benchmarks/http_c1_clients.py: its floor client and its summary (medians, ratios to raw)."""

from __future__ import annotations

import socketserver
import threading
from collections.abc import Iterator
from pathlib import Path
from types import ModuleType

import pytest
from bench_scripts import load_script

SCRIPT = Path(__file__).resolve().parents[2] / "benchmarks" / "http_c1_clients.py"
REQUEST = b"POST /v2/models/m/infer HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\n\r\nhello"


@pytest.fixture(scope="module")
def bench() -> ModuleType:
    return load_script(SCRIPT, "http_c1_clients_benchmark")


class _Answer(socketserver.BaseRequestHandler):
    """Keep-alive HTTP/1.1 by hand: each whole request (head and Content-Length body, however
    it arrives) gets ``status`` with an 11-byte body."""

    status = b"200 OK"
    requests: list[bytes]

    def handle(self) -> None:
        buffer = b""
        while True:
            while b"\r\n\r\n" not in buffer:
                chunk = self.request.recv(65536)
                if not chunk:
                    return
                buffer += chunk
            head, _, rest = buffer.partition(b"\r\n\r\n")
            length = int(head.lower().split(b"content-length:")[1].split(b"\r\n")[0])
            while len(rest) < length:
                rest += self.request.recv(65536)
            self.requests.append(head + b"\r\n\r\n" + rest[:length])
            buffer = rest[length:]
            self.request.sendall(
                b"HTTP/1.1 " + self.status + b"\r\nContent-Length: 11\r\n\r\nhello world"
            )


def _serve(status: bytes) -> Iterator[tuple[str, list[bytes]]]:
    requests: list[bytes] = []
    handler = type("Handler", (_Answer,), {"status": status, "requests": requests})
    server = socketserver.ThreadingTCPServer(("127.0.0.1", 0), handler)
    server.daemon_threads = True
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"127.0.0.1:{server.server_address[1]}", requests
    finally:
        server.shutdown()
        server.server_close()


@pytest.fixture
def ok_server() -> Iterator[tuple[str, list[bytes]]]:
    yield from _serve(b"200 OK")


@pytest.mark.parametrize("split", [False, True])
def test_the_floor_client_sends_whole_requests_and_counts_answers(
    bench: ModuleType, ok_server: tuple[str, list[bytes]], split: bool
) -> None:
    address, requests = ok_server
    result = bench.raw_client(address, REQUEST, split=split, seconds=0.2)
    assert result["requests"] > 0
    assert result["throughput"] > 0 and result["p50_us"] > 0
    # the warm-up's requests are answered too, not counted
    assert len(requests) > result["requests"]
    assert set(requests) == {REQUEST}


def test_the_floor_client_refuses_an_error_status(bench: ModuleType) -> None:
    for address, _ in _serve(b"400 Bad Request"):
        with pytest.raises(RuntimeError, match="400"):
            bench.raw_client(address, REQUEST, split=False, seconds=0.1)


def test_split_sends_the_head_and_the_body_apart(bench: ModuleType) -> None:
    sent: list[bytes] = []

    class Recorder:
        def sendall(self, data: bytes) -> None:
            sent.append(data)

        def recv(self, size: int) -> bytes:
            return b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nokHTTP/1.1"

    left = bench._exchange(Recorder(), [REQUEST[:-5], REQUEST[-5:]], b"")
    assert sent == [REQUEST[:-5], b"hello"]
    assert left == b"HTTP/1.1"  # the next response's start stays buffered


def test_summary_medians_ratios_and_time_over_the_floor(bench: ModuleType) -> None:
    records = [
        {"client": "raw", "round": 0, "throughput": 1000.0, "p50_us": 400.0},
        {"client": "raw", "round": 1, "throughput": 1100.0, "p50_us": 380.0},
        {"client": "raw", "round": 2, "throughput": 900.0, "p50_us": 420.0},
        {"client": "perf_analyzer", "round": 0, "throughput": 800.0, "p50_us": 450.0},
        {"client": "perf_analyzer", "round": 1, "throughput": 900.0, "p50_us": 440.0},
        {"client": "perf_analyzer", "round": 2, "throughput": 700.0, "p50_us": 460.0},
    ]
    summary = bench.summarize(records)
    rows = {row["client"]: row for row in summary["clients"]}
    assert set(rows) == {"raw", "perf_analyzer"}  # clients that did not run are left out
    assert rows["raw"]["throughput"] == 1000.0 and rows["raw"]["ratio_to_raw"] == 1.0
    assert rows["perf_analyzer"]["throughput"] == 800.0
    assert rows["perf_analyzer"]["ratio_to_raw"] == pytest.approx(0.8)
    assert rows["perf_analyzer"]["p50_over_raw_us"] == pytest.approx(50.0)
    assert rows["perf_analyzer"]["rounds"] == 3
