"""The load generator's blocking HTTP connection against canned responses, and its records."""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Callable, Iterator

import pytest

from headrace.bench.load_blocking import HttpConnection, describe, http_call
from headrace.bench.load_client import _Record

OK = b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nhello"
CHUNKED = b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n2\r\nde\r\n0\r\n\r\n"
CLOSE = b"HTTP/1.1 200 OK\r\nConnection: close\r\nContent-Length: 2\r\n\r\nok"
REFUSED = b'HTTP/1.1 400 Bad Request\r\nContent-Length: 17\r\n\r\n{"error":"nope"}\n'


class CannedServer:
    """Answers each request (one ``recv``) with the next canned response; counts connections."""

    def __init__(self, responses: list[bytes]) -> None:
        self.responses = list(responses)
        self.connections = 0
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.port = self.listener.getsockname()[1]
        self.thread = threading.Thread(target=self._serve, daemon=True)
        self.thread.start()

    def _serve(self) -> None:
        while self.responses:
            conn, _ = self.listener.accept()
            self.connections += 1
            with conn:
                while self.responses and conn.recv(65536):
                    response = self.responses.pop(0)
                    # split the answer to exercise reads that need more than one recv
                    conn.sendall(response[:7])
                    conn.sendall(response[7:])
                    if b"Connection: close" in response:
                        break

    def close(self) -> None:
        self.listener.close()


@pytest.fixture
def canned() -> Iterator[Callable[[list[bytes]], CannedServer]]:
    servers: list[CannedServer] = []

    def make(responses: list[bytes]) -> CannedServer:
        server = CannedServer(responses)
        servers.append(server)
        return server

    yield make
    for server in servers:
        server.close()


def test_keep_alive_requests_reuse_one_connection(
    canned: Callable[[list[bytes]], CannedServer],
) -> None:
    server = canned([OK, CHUNKED, OK])
    connection = HttpConnection("127.0.0.1", server.port, 5.0)
    for _ in range(3):
        connection.post(b"POST / HTTP/1.1\r\nContent-Length: 0\r\n\r\n")
    connection.close()
    assert server.connections == 1


def test_connection_close_reconnects(canned: Callable[[list[bytes]], CannedServer]) -> None:
    server = canned([CLOSE, OK])
    connection = HttpConnection("127.0.0.1", server.port, 5.0)
    connection.post(b"POST / HTTP/1.1\r\n\r\n")
    connection.post(b"POST / HTTP/1.1\r\n\r\n")
    connection.close()
    assert server.connections == 2


def test_a_refusal_names_the_status_and_body(canned: Callable[[list[bytes]], CannedServer]) -> None:
    server = canned([REFUSED])
    call = http_call(f"127.0.0.1:{server.port}", b"POST / HTTP/1.1\r\n\r\n", 5.0)
    with pytest.raises(RuntimeError, match=r"HTTP 400: b'\{\"error\":\"nope\"\}"):
        call.send()
    call.close()


def test_a_closed_server_is_an_error_not_a_hang(
    canned: Callable[[list[bytes]], CannedServer],
) -> None:
    server = canned([b""])  # accepts, reads, then closes without an answer
    connection = HttpConnection("127.0.0.1", server.port, 5.0)
    with pytest.raises(ConnectionError, match="closed the connection"):
        connection.post(b"POST / HTTP/1.1\r\n\r\n")


def test_records_split_at_the_window_end_and_count_errors() -> None:
    record = _Record()
    record.ends, record.latencies = [100, 200, 300], [10_000, 20_000, 30_000]
    record.responses = [1, 3, 2]  # a decoupled model's responses per request
    record.error_ends = [150, 350]
    record.first_error = "RuntimeError: x"
    record.skip()
    first = record.take(200)
    assert first.latencies_us.tolist() == [10.0, 20.0]
    assert (first.errors, first.skipped, first.first_error) == (1, 1, "RuntimeError: x")
    assert first.responses == 4
    second = record.take(400)
    assert second.latencies_us.tolist() == [30.0]
    assert (second.errors, second.skipped, second.responses) == (1, 0, 2)


def test_a_decoupled_request_is_timed_to_the_time_its_answer_gives() -> None:
    record = _Record()
    start = time.monotonic_ns()
    record.ok(start, (start + 5_000, 3))
    record.ok(start)  # one response, timed to the end of the call
    taken = record.take(time.monotonic_ns())
    assert taken.latencies_us[0] == 5.0
    assert taken.latencies_us[1] > 0
    assert taken.responses == 4


def test_describe_gives_a_grpc_errors_code_and_details() -> None:
    class FakeRpcError(Exception):
        def code(self) -> str:
            return "StatusCode.UNAVAILABLE"

        def details(self) -> str:
            return "connection refused"

    assert describe(FakeRpcError("long repr")) == (
        "FakeRpcError: StatusCode.UNAVAILABLE: connection refused"
    )
    assert describe(ValueError("bad")) == "ValueError: bad"
