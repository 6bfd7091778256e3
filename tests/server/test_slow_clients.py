"""Slow and hostile HTTP clients: one that sends its headers a byte at a time is cut off by
``--http-header-timeout`` (granian; on a new connection or a kept-alive one), one that stalls in its body gets a 400 after
``--http-body-timeout`` (both servers), and a normal client is served all the while."""

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


@pytest.fixture(scope="module")
def granian_port() -> Iterator[int]:
    pytest.importorskip("granian")
    with serving(_options("granian")) as app:
        yield app.ports["http"]


def _trickle(port: int, data: bytes, result: dict[str, object]) -> None:
    """Send ``data`` a byte at a time; record how many bytes went out before the server hung up."""
    with socket.create_connection(("127.0.0.1", port), timeout=30) as sock:
        result["sent"] = _send_slowly(sock, data)


def test_a_slow_header_client_is_cut_off_while_others_are_served(granian_port: int) -> None:
    result: dict[str, object] = {}
    slow = threading.Thread(target=_trickle, args=(granian_port, REQUEST, result))
    slow.start()
    client = httpclient.InferenceServerClient(f"127.0.0.1:{granian_port}")
    try:
        while slow.is_alive():  # a normal client keeps being served meanwhile
            assert client.is_server_live()
            slow.join(0.2)
    finally:
        client.close()
    assert isinstance(result["sent"], int)
    assert result["sent"] < len(REQUEST), "the slow client sent its whole header unhindered"


def test_a_slow_header_on_a_kept_alive_connection_is_cut_off(granian_port: int) -> None:
    """Idle time between requests is not header time (see test_http_keepalive.py), but
    once the next request's first byte is in, its headers must follow within the timeout."""
    with socket.create_connection(("127.0.0.1", granian_port), timeout=30) as sock:
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
