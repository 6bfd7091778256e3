"""The SSE send window of the granian door: paced by what the client acknowledges."""

from __future__ import annotations

import asyncio
import os
import socket
import sys

import pytest

from headrace.server.http.send_window import SendWindow, StalledClient

pytestmark = pytest.mark.skipif(sys.platform != "linux", reason="TCP_INFO's bytes acked: Linux")


def _pair(small_buffer: bool = True) -> tuple[socket.socket, socket.socket, socket.socket]:
    listener = socket.create_server(("127.0.0.1", 0))
    client = socket.socket()
    if small_buffer:  # what the client's stack takes without reading stays small
        client.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    client.connect(listener.getsockname())
    server, _ = listener.accept()
    return listener, client, server


def test_a_window_finds_the_connection_of_a_peer_on_the_port() -> None:
    listener, client, server = _pair()
    try:
        host, port = client.getsockname()[:2]
        window = SendWindow.open(listener.getsockname()[1], (host, port), 1.0)
        assert window.paced
        window.close()
        assert not SendWindow.open(listener.getsockname()[1], (host, port + 1), 1.0).paced
    finally:
        for sock in (client, server, listener):
            sock.close()


def test_a_client_that_reads_nothing_stalls_the_stream_then_ends_it() -> None:
    listener, client, server = _pair()
    server.setblocking(False)
    window = SendWindow(socket.socket(fileno=os.dup(server.fileno())), 0.3, 64 << 10)

    async def flood() -> int:
        sent = 0
        chunk = b"x" * 4096
        while sent < 64 << 20:  # bounded: far past any socket buffer
            await window.room(len(chunk))
            try:
                server.send(chunk)
            except BlockingIOError:
                pass  # what the kernel does not take is dropped here; the window counts it
            sent += len(chunk)
        return sent

    try:
        with pytest.raises(StalledClient, match="--stream-send-timeout"):
            asyncio.run(flood())
    finally:
        window.close()
        for sock in (client, server, listener):
            sock.close()


def test_a_reading_client_keeps_the_stream_going() -> None:
    listener, client, server = _pair(small_buffer=False)
    window = SendWindow(socket.socket(fileno=os.dup(server.fileno())), 5.0, 64 << 10)
    total = 4 << 20

    async def stream() -> None:
        loop = asyncio.get_running_loop()
        reader = loop.run_in_executor(None, _read_all, client, total)
        chunk = b"y" * 16384
        for _ in range(total // len(chunk)):
            await window.room(len(chunk))
            await loop.sock_sendall(server, chunk)
        assert await reader == total

    server.setblocking(False)
    try:
        asyncio.run(stream())
    finally:
        window.close()
        for sock in (client, server, listener):
            sock.close()


def _read_all(sock: socket.socket, total: int) -> int:
    got = 0
    while got < total:
        data = sock.recv(1 << 16)
        if not data:
            break
        got += len(data)
    return got


def test_a_chunk_larger_than_the_window_goes_once_the_client_caught_up() -> None:
    listener, client, server = _pair(small_buffer=False)
    window = SendWindow(socket.socket(fileno=os.dup(server.fileno())), 5.0, 64 << 10)
    big = b"z" * (256 << 10)

    async def stream() -> None:
        loop = asyncio.get_running_loop()
        reader = loop.run_in_executor(None, _read_all, client, 3 * len(big))
        for _ in range(3):
            await window.room(len(big))
            await loop.sock_sendall(server, big)
        assert await reader == 3 * len(big)

    server.setblocking(False)
    try:
        asyncio.run(stream())
    finally:
        window.close()
        for sock in (client, server, listener):
            sock.close()
