"""Idle keep-alive connections outlive --http-header-timeout: a client that reuses its
connection after a longer pause is answered on it (granian closed it at the header timeout,
racing such a client's next request); --http-keepalive-timeout closes idle ones."""

from __future__ import annotations

import http.client
import select
import socket
import time
from collections.abc import Iterator

import pytest
import tritonclient.http as httpclient
from door_thread import serving

from headrace.server.app import FrontendOptions
from headrace.server.http.header_watch import supported
from headrace.server.security import DEFAULT_KEEPALIVE_TIMEOUT_S, SecurityOptions

HEADER_TIMEOUT_S = 0.5
IDLE_S = 2.0
"""The pause: four header timeouts, two ticks of the header watch at least."""
WAIT_S = 30.0


def _options(http_server: str, keepalive_s: float = DEFAULT_KEEPALIVE_TIMEOUT_S) -> FrontendOptions:
    security = SecurityOptions(
        http_header_timeout_s=HEADER_TIMEOUT_S, http_keepalive_timeout_s=keepalive_s
    )
    return FrontendOptions(
        http_port=0, grpc_port=None, metrics_port=None, http_server=http_server, security=security
    )


@pytest.fixture(scope="module", params=["granian", "aiohttp"])
def port(request: pytest.FixtureRequest) -> Iterator[int]:
    pytest.importorskip(request.param)
    if request.param == "granian" and not supported():
        pytest.skip("the header watch needs Linux's /proc and TCP_INFO")
    with serving(_options(request.param)) as app:
        yield app.ports["http"]


def test_a_connection_idle_longer_than_the_header_timeout_is_reused(port: int) -> None:
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=WAIT_S)
    try:
        connection.request("GET", "/v2/health/live")
        assert connection.getresponse().read() == b""
        local = connection.sock.getsockname()
        time.sleep(IDLE_S)  # the client's pause between two requests: what this is about
        readable, _, _ = select.select([connection.sock], [], [], 0)
        assert not readable, "the server closed the idle connection"
        connection.request("POST", "/v2/repository/index", body=b"{}")
        answer = connection.getresponse()
        assert answer.status == 200, answer.read()
        assert connection.sock.getsockname() == local  # the same connection, not a new one
    finally:
        connection.close()


def test_tritonclient_is_answered_after_a_pause_longer_than_the_header_timeout(
    port: int,
) -> None:
    client = httpclient.InferenceServerClient(f"127.0.0.1:{port}")
    try:
        assert client.is_server_live()
        time.sleep(IDLE_S)  # as the soak's control client pauses between its reloads
        assert client.get_model_repository_index() == []  # a POST, which no client retries
        assert client.is_server_ready()
    finally:
        client.close()


@pytest.mark.parametrize("http_server", ["granian", "aiohttp"])
def test_the_keepalive_timeout_closes_an_idle_connection(http_server: str) -> None:
    pytest.importorskip(http_server)
    with (
        serving(_options(http_server, keepalive_s=1.0)) as app,
        socket.create_connection(("127.0.0.1", app.ports["http"]), timeout=WAIT_S) as sock,
    ):
        sock.sendall(b"GET /v2/health/live HTTP/1.1\r\nHost: x\r\n\r\n")
        assert sock.recv(4096).startswith(b"HTTP/1.1 200")
        readable, _, _ = select.select([sock], [], [], WAIT_S)  # bounded wait for the close
        assert readable
        assert sock.recv(4096) == b"", "the idle connection was not closed"
