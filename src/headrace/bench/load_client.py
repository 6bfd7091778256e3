"""One client process of the load generator: an asyncio loop that keeps requests in flight.

The parent (:mod:`headrace.bench.load`) starts several of these so that the client is not the
bottleneck, and talks to each over a pipe:

- the worker builds its request body, connects, and answers ``"ready"``;
- ``("start",)`` starts the load: ``concurrency`` requests always in flight (closed loop), or
  one request every ``1 / rate`` seconds (open loop, at most ``max_in_flight`` outstanding);
- ``("collect", end_ns)`` returns the requests that completed up to ``end_ns`` (a
  ``time.monotonic_ns`` value, one clock for every process on the machine) and forgets them;
- ``("stop",)`` ends the load, closes the connections and answers ``"stopped"``.

Each request is timed from just before it is handed to the transport to the moment its whole
response has arrived; the response is checked for success, not decoded (as perf_analyzer does).
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from multiprocessing.connection import Connection
from typing import Any

import numpy as np

from headrace.bench.load_inputs import (
    ModelTarget,
    grpc_request_bytes,
    http_request,
    random_inputs,
)

__all__ = ["Collected", "WorkerPlan", "worker_main"]

_GRPC_SERVICE = "/inference.GRPCInferenceService"
_GRPC_OPTIONS = [
    ("grpc.max_send_message_length", -1),
    ("grpc.max_receive_message_length", -1),
]
_ERROR_BACKOFF_S = 0.01
"""A failed closed-loop request waits this long before its slot sends again, so a refusing
server is not hammered in a tight loop."""


@dataclass(frozen=True)
class WorkerPlan:
    """What one client process sends, where and how fast."""

    target: ModelTarget
    address: str
    """host:port, no scheme."""
    protocol: str
    streaming: bool
    batch_size: int
    concurrency: int = 0
    """Closed loop: requests always in flight in this process (0 with ``rate``)."""
    rate: float = 0.0
    """Open loop: requests per second from this process (0 with ``concurrency``)."""
    rate_offset_s: float = 0.0
    """Delay of this process's first request, interleaving the processes' schedules."""
    max_in_flight: int = 1024
    string_length: int = 128
    timeout_s: float = 60.0
    seed: int = 0


@dataclass(frozen=True)
class Collected:
    """The requests one worker completed up to a window's end."""

    latencies_us: np.ndarray
    errors: int
    first_error: str
    skipped: int
    """Open loop only: requests not sent because ``max_in_flight`` were outstanding."""


class _Record:
    """Completions since the last collect: end times, latencies, errors."""

    def __init__(self) -> None:
        self.ends: list[int] = []
        self.latencies: list[int] = []
        self.error_ends: list[int] = []
        self.first_error = ""
        self.skipped = 0

    def ok(self, start_ns: int) -> None:
        end = time.monotonic_ns()
        self.ends.append(end)
        self.latencies.append(end - start_ns)

    def failed(self, error: BaseException) -> None:
        self.error_ends.append(time.monotonic_ns())
        if not self.first_error:
            self.first_error = f"{type(error).__name__}: {error}"[:500]

    def take(self, end_ns: int) -> Collected:
        ends = np.asarray(self.ends, dtype=np.int64)
        keep = ends <= end_ns
        latencies = np.asarray(self.latencies, dtype=np.int64)
        taken = latencies[keep].astype(np.float64) / 1000.0
        self.ends = ends[~keep].tolist()
        self.latencies = latencies[~keep].tolist()
        errors = sum(1 for e in self.error_ends if e <= end_ns)
        self.error_ends = [e for e in self.error_ends if e > end_ns]
        collected = Collected(taken, errors, self.first_error, self.skipped)
        self.skipped = 0
        return collected


Send = Callable[[int], Awaitable[None]]
"""Send one request using pre-built request ``slot`` and wait for its response."""


def worker_main(plan: WorkerPlan, conn: Connection) -> None:
    """Process entry point: run the worker's event loop until told to stop.

    A failure is sent to the parent as ``("failed", message)`` instead of a silent exit."""
    try:
        asyncio.run(_Worker(plan, conn).run())
    except Exception as error:
        with contextlib.suppress(OSError):
            conn.send(("failed", f"{type(error).__name__}: {error}"))
        raise


class _Worker:
    def __init__(self, plan: WorkerPlan, conn: Connection) -> None:
        self.plan = plan
        self.conn = conn
        self.record = _Record()
        self.running = False
        self.tasks: set[asyncio.Task[None]] = set()
        self.commands: asyncio.Queue[tuple[Any, ...]] = asyncio.Queue()
        self.free_slots: list[int] = []

    async def run(self) -> None:
        loop = asyncio.get_running_loop()
        loop.add_reader(self.conn.fileno(), self._on_command)
        slots = self.plan.concurrency or self.plan.max_in_flight
        self.free_slots = list(range(slots))
        async with contextlib.AsyncExitStack() as stack:
            send = await self._transport(stack, slots)
            self.conn.send("ready")
            while True:
                command = await self.commands.get()
                if command[0] == "start":
                    self.running = True
                    self._spawn(self._load(send))
                elif command[0] == "collect":
                    self.conn.send(self.record.take(int(command[1])))
                elif command[0] == "stop":
                    break
            self.running = False
            for task in list(self.tasks):
                task.cancel()
            await asyncio.gather(*self.tasks, return_exceptions=True)
        loop.remove_reader(self.conn.fileno())
        self.conn.send("stopped")

    def _on_command(self) -> None:
        try:
            self.commands.put_nowait(self.conn.recv())
        except EOFError:  # the parent is gone: stop rather than load a server forever
            asyncio.get_running_loop().remove_reader(self.conn.fileno())
            self.commands.put_nowait(("stop",))

    def _spawn(self, coroutine: Awaitable[None]) -> None:
        task = asyncio.ensure_future(coroutine)
        self.tasks.add(task)
        task.add_done_callback(self.tasks.discard)

    async def _load(self, send: Send) -> None:
        if self.plan.concurrency:
            for slot in range(self.plan.concurrency):
                self._spawn(self._closed_loop(send, slot))
            return
        interval_ns = int(1e9 / self.plan.rate)
        next_ns = time.monotonic_ns() + int(self.plan.rate_offset_s * 1e9)
        while self.running:
            delay = (next_ns - time.monotonic_ns()) / 1e9
            if delay > 0:
                await asyncio.sleep(delay)
            next_ns += interval_ns
            if not self.free_slots:
                self.record.skipped += 1
                continue
            self._spawn(self._one(send, self.free_slots.pop()))

    async def _closed_loop(self, send: Send, slot: int) -> None:
        while self.running:
            if not await self._timed(send, slot):
                await asyncio.sleep(_ERROR_BACKOFF_S)

    async def _one(self, send: Send, slot: int) -> None:
        try:
            await self._timed(send, slot)
        finally:
            self.free_slots.append(slot)

    async def _timed(self, send: Send, slot: int) -> bool:
        start = time.monotonic_ns()
        try:
            await asyncio.wait_for(send(slot), self.plan.timeout_s)
        except asyncio.CancelledError:
            raise
        except Exception as error:
            self.record.failed(error)
            return False
        self.record.ok(start)
        return True

    async def _transport(self, stack: contextlib.AsyncExitStack, slots: int) -> Send:
        plan = self.plan
        values = random_inputs(plan.target, plan.batch_size, plan.seed, plan.string_length)
        if plan.protocol == "http":
            return await _http_sender(stack, plan, values)
        import grpc

        channel = grpc.aio.insecure_channel(plan.address, options=_GRPC_OPTIONS)
        await stack.enter_async_context(channel)
        if not plan.streaming:
            body = grpc_request_bytes(plan.target, values)
            infer = channel.unary_unary(f"{_GRPC_SERVICE}/ModelInfer")

            async def unary(slot: int) -> None:
                await infer(body)

            return unary
        bodies = [grpc_request_bytes(plan.target, values, str(i)) for i in range(slots)]
        stream = _Stream(channel, bodies)
        self._spawn(stream.read())
        return stream.send


async def _http_sender(
    stack: contextlib.AsyncExitStack, plan: WorkerPlan, values: dict[str, np.ndarray]
) -> Send:
    path, headers, body = http_request(plan.target, values)
    host, _, port = plan.address.rpartition(":")
    head = "".join(f"{k}: {v}\r\n" for k, v in headers.items())
    message = (
        f"POST {path} HTTP/1.1\r\nHost: {plan.address}\r\n{head}Content-Length: {len(body)}\r\n\r\n"
    ).encode() + body
    pool = _HttpPool(host, int(port))
    stack.callback(pool.close)

    async def send(slot: int) -> None:
        await pool.post(message)

    return send


class _HttpPool:
    """Keep-alive HTTP/1.1 connections, one per request in flight, each request one write.

    A minimal client on purpose: the load generator must cost the machine as little CPU per
    request as it can (client and server often share it), so it sends pre-built bytes and reads
    only the status line, the headers it needs and the body's length, never decoding it."""

    def __init__(self, host: str, port: int) -> None:
        self.host, self.port = host, port
        self.idle: list[tuple[asyncio.StreamReader, asyncio.StreamWriter]] = []
        self.all: list[asyncio.StreamWriter] = []

    async def post(self, message: bytes) -> None:
        if self.idle:
            reader, writer = self.idle.pop()
        else:
            reader, writer = await asyncio.open_connection(self.host, self.port)
            self.all.append(writer)
        try:
            writer.write(message)
            status, keep_alive, body = await _read_response(reader)
        except BaseException:
            writer.close()
            raise
        if keep_alive:
            self.idle.append((reader, writer))
        else:
            writer.close()
        if status != 200:
            raise RuntimeError(f"HTTP {status}: {body[:300]!r}")

    def close(self) -> None:
        for writer in self.all:
            writer.close()


async def _read_response(reader: asyncio.StreamReader) -> tuple[int, bool, bytes]:
    """Status, whether the connection stays open, and the body (kept only for errors)."""
    head = await reader.readuntil(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    status = int(lines[0].split(" ", 2)[1])
    fields = {}
    for line in lines[1:]:
        name, _, value = line.partition(":")
        fields[name.strip().lower()] = value.strip().lower()
    keep_alive = fields.get("connection") != "close"
    if "content-length" in fields:
        body = await reader.readexactly(int(fields["content-length"]))
    elif fields.get("transfer-encoding") == "chunked":
        parts = []
        while True:
            size = int((await reader.readuntil(b"\r\n")).split(b";")[0], 16)
            parts.append(await reader.readexactly(size + 2))
            if size == 0:
                break
        body = b"".join(part[:-2] for part in parts)
    else:
        body = await reader.read()
        keep_alive = False
    return status, keep_alive, body


class _Stream:
    """One ``ModelStreamInfer`` stream shared by a worker's slots; a request's id is its slot."""

    def __init__(self, channel: Any, bodies: list[bytes]) -> None:
        self.call = channel.stream_stream(f"{_GRPC_SERVICE}/ModelStreamInfer")()
        self.bodies = bodies
        self.pending: dict[str, asyncio.Future[None]] = {}
        self.lock = asyncio.Lock()

    async def send(self, slot: int) -> None:
        future = asyncio.get_running_loop().create_future()
        self.pending[str(slot)] = future
        async with self.lock:  # grpc.aio streams take one write at a time
            await self.call.write(self.bodies[slot])
        await future

    async def read(self) -> None:
        from tritonclient.grpc import service_pb2

        try:
            async for raw in self.call:
                response = service_pb2.ModelStreamInferResponse.FromString(raw)
                future = self.pending.pop(response.infer_response.id, None)
                if future is None or future.done():
                    continue
                if response.error_message:
                    future.set_exception(RuntimeError(response.error_message))
                else:
                    future.set_result(None)
        except Exception as error:
            for future in self.pending.values():
                if not future.done():
                    future.set_exception(error)
            raise
