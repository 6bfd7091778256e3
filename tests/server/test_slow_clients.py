"""Slow and hostile HTTP clients: one that sends its headers a byte at a time is cut off by
``--http-header-timeout`` (on a new connection or a kept-alive one), one that stalls in its
body gets a 400 after ``--http-body-timeout`` (both servers), and a normal client is served
all the while."""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Iterator

import pytest
import tritonclient.http as httpclient
from door_thread import serving

from headrace.server.app import FrontendOptions
from headrace.server.security import SecurityOptions

HEADER_TIMEOUT_S = 1.0
BODY_TIMEOUT_S = 1.0
BYTE_EVERY_S = 0.25
REQUEST = b"GET /v2/health/live HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Slow: " + b"s" * 40 + b"\r\n\r\n"
"""About 90 bytes: 22 s at one byte every 0.25 s, far past the 1 s header timeout."""


def _options(http_server: str) -> FrontendOptions:
    security = SecurityOptions(
        http_header_timeout_s=HEADER_TIMEOUT_S, http_body_timeout_s=BODY_TIMEOUT_S
    )
    return FrontendOptions(
        http_port=0, grpc_port=None, metrics_port=None, http_server=http_server, security=security
    )


@pytest.fixture(scope="module", params=["aiohttp", "granian"])
def http_port(request: pytest.FixtureRequest) -> Iterator[int]:
    pytest.importorskip(request.param)
    with serving(_options(request.param)) as app:
        yield app.ports["http"]


def _trickle(port: int, data: bytes, result: dict[str, object]) -> None:
    """Send ``data`` a byte at a time; record how many bytes went out before the server hung up."""
    with socket.create_connection(("127.0.0.1", port), timeout=30) as sock:
        result["sent"] = _send_slowly(sock, data)


def test_a_slow_header_client_is_cut_off_while_others_are_served(http_port: int) -> None:
    result: dict[str, object] = {}
    slow = threading.Thread(target=_trickle, args=(http_port, REQUEST, result))
    slow.start()
    client = httpclient.InferenceServerClient(f"127.0.0.1:{http_port}")
    try:
        while slow.is_alive():  # a normal client keeps being served meanwhile
            assert client.is_server_live()
            slow.join(0.2)
    finally:
        client.close()
    assert isinstance(result["sent"], int)
    assert result["sent"] < len(REQUEST), "the slow client sent its whole header unhindered"


def test_a_slow_header_on_a_kept_alive_connection_is_cut_off(http_port: int) -> None:
    """Idle time between requests is not header time (see test_http_keepalive.py), but
    once the next request's first byte is in, its headers must follow within the timeout."""
    with socket.create_connection(("127.0.0.1", http_port), timeout=30) as sock:
        sock.sendall(b"GET /v2/health/live HTTP/1.1\r\nHost: x\r\n\r\n")
        assert sock.recv(4096).startswith(b"HTTP/1.1 200")
        sent = _send_slowly(sock, REQUEST)
    assert sent < len(REQUEST), "the slow client sent its whole header unhindered"


def _send_slowly(sock: socket.socket, data: bytes) -> int:
    """Send ``data`` a byte at a time; how many bytes went out before the server hung up."""
    sent = 0
    try:
        for byte in data:
            sock.sendall(bytes([byte]))
            sent += 1
            time.sleep(BYTE_EVERY_S)  # the slow client itself: this is what it does
            sock.setblocking(False)
            try:
                if sock.recv(1024) == b"":
                    break  # the server closed the connection
            except BlockingIOError:
                pass
            finally:
                sock.setblocking(True)
    except (ConnectionResetError, BrokenPipeError):
        pass
    return sent


@pytest.mark.parametrize("http_server", ["aiohttp", "granian"])
def test_a_stalled_body_gets_a_400_after_the_body_timeout(http_server: str) -> None:
    pytest.importorskip(http_server)
    with serving(_options(http_server)) as app:
        port = app.ports["http"]
        with socket.create_connection(("127.0.0.1", port), timeout=30) as sock:
            sock.sendall(
                b"POST /v2/repository/index HTTP/1.1\r\nHost: x\r\n"
                b"Content-Type: application/json\r\nContent-Length: 100\r\n\r\n{"
            )
            answer = b""
            while b"\r\n\r\n" not in answer or b"}" not in answer.split(b"\r\n\r\n", 1)[1]:
                chunk = sock.recv(4096)
                if not chunk:
                    break
                answer += chunk
        assert answer.startswith(b"HTTP/1.1 400"), answer
        assert b"request body not received within 1 s (--http-body-timeout)" in answer
        client = httpclient.InferenceServerClient(f"127.0.0.1:{port}")
        try:
            assert client.is_server_live()
        finally:
            client.close()


def _answer(sock: socket.socket) -> bytes:
    """One HTTP/1.1 response: its head and its Content-Length body."""
    data = b""
    while b"\r\n\r\n" not in data:
        chunk = sock.recv(4096)
        assert chunk, f"the server closed the connection after {data!r}"
        data += chunk
    head, body = data.split(b"\r\n\r\n", 1)
    length = 0
    for line in head.split(b"\r\n")[1:]:
        name, _, value = line.partition(b":")
        if name.strip().lower() == b"content-length":
            length = int(value)
    while len(body) < length:
        body += sock.recv(4096)
    return head


def _closed_by_server(sock: socket.socket) -> bool:
    try:
        return sock.recv(1024) == b""
    except ConnectionResetError:
        return True


@pytest.fixture(scope="module")
def aiohttp_port() -> Iterator[int]:
    pytest.importorskip("aiohttp")
    with serving(_options("aiohttp")) as app:
        yield app.ports["http"]


def test_aiohttp_cuts_off_a_client_that_connects_and_sends_nothing(aiohttp_port: int) -> None:
    with socket.create_connection(("127.0.0.1", aiohttp_port), timeout=30) as sock:
        assert _closed_by_server(sock)  # within the header timeout, not the socket's 30 s


def test_aiohttp_keeps_an_idle_keep_alive_connection_and_times_its_next_headers(
    aiohttp_port: int,
) -> None:
    live = b"GET /v2/health/live HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n"
    with socket.create_connection(("127.0.0.1", aiohttp_port), timeout=30) as sock:
        sock.sendall(live)
        assert _answer(sock).startswith(b"HTTP/1.1 200")
        time.sleep(HEADER_TIMEOUT_S * 1.5)  # idle between requests: not the header timeout's
        sock.sendall(live)
        assert _answer(sock).startswith(b"HTTP/1.1 200")
        sent = 0
        for byte in REQUEST:  # the next request's headers, a byte at a time
            try:
                sock.sendall(bytes([byte]))
            except (ConnectionResetError, BrokenPipeError):
                break
            sent += 1
            time.sleep(BYTE_EVERY_S)  # the slow client itself
        assert sent < len(REQUEST), "the slow headers of a second request were not cut off"


def test_the_metrics_port_cuts_off_a_slow_header_scraper_while_serving_others() -> None:
    pytest.importorskip("aiohttp")
    security = SecurityOptions(http_header_timeout_s=HEADER_TIMEOUT_S)
    options = FrontendOptions(http_port=None, grpc_port=None, metrics_port=0, security=security)
    scrape = b"GET /metrics HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Slow: " + b"s" * 40 + b"\r\n\r\n"
    with serving(options) as app:
        port = app.ports["metrics"]
        result: dict[str, object] = {}
        slow = threading.Thread(target=_trickle, args=(port, scrape, result))
        slow.start()
        while slow.is_alive():  # a normal scraper keeps being served meanwhile
            with socket.create_connection(("127.0.0.1", port), timeout=30) as sock:
                sock.sendall(b"GET /metrics HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n")
                assert _answer(sock).startswith(b"HTTP/1.1 200")
            slow.join(0.2)
        with socket.create_connection(("127.0.0.1", port), timeout=30) as sock:
            assert _closed_by_server(sock)  # connects, sends nothing: cut off too
    assert isinstance(result["sent"], int)
    assert result["sent"] < len(scrape), "the slow scraper sent its whole header unhindered"
