"""One client process of the load generator: keeps requests in flight and times each one.

The parent (:mod:`headrace.bench.load`) starts several of these so that the client is not the
bottleneck, and talks to each over a pipe:

- the worker builds its request once (the serialized bytes are reused for every request)
  and answers ``"ready"``; each thread opens its connection or stream at its first request;
- ``("start",)`` starts the load: ``concurrency`` requests always in flight (closed loop), or
  one request every ``1 / rate`` seconds (open loop, at most ``max_in_flight`` outstanding);
- ``("collect", end_ns)`` returns the requests that completed up to ``end_ns`` (a
  ``time.monotonic_ns`` value, one clock for every process on the machine) and forgets them;
- ``("stop",)`` ends the load, closes the connections and answers ``"stopped"``.

Every request in flight is one thread's blocking call (:mod:`headrace.bench.load_blocking`),
which costs the client less per request than an event loop. Each request is timed from just
before it is handed to the transport to the moment its whole response has arrived; the
response is checked for success, not decoded (as perf_analyzer does). A decoupled model's
request is timed to its last response with outputs, as perf_analyzer does, and holds its slot
until its final response; its responses are counted for the response throughput.
"""

from __future__ import annotations

import contextlib
import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from multiprocessing.connection import Connection

import numpy as np

from headrace.bench.load_blocking import (
    BlockingCall,
    describe,
    grpc_call,
    grpc_stream_call,
    http_call,
)
from headrace.bench.load_h2 import DecoupledAnswer
from headrace.bench.load_inputs import (
    ModelTarget,
    grpc_request_bytes,
    http_message,
    random_inputs,
)

__all__ = ["Collected", "WorkerPlan", "worker_main"]

_ERROR_BACKOFF_S = 0.01
"""A failed closed-loop request waits this long before its slot sends again, so a refusing
server is not hammered in a tight loop."""
_STOP_JOIN_S = 2.0
"""How long stopping threads may finish their requests before the connections are closed."""


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
    grpc_streams_per_connection: int = 1


@dataclass(frozen=True)
class Collected:
    """The requests one worker completed up to a window's end."""

    latencies_us: np.ndarray
    errors: int
    first_error: str
    skipped: int
    """Open loop only: requests not sent because ``max_in_flight`` were outstanding."""
    responses: int = 0
    """Responses of the requests in ``latencies_us`` (one each, but for a decoupled model)."""


class _Record:
    """Completions since the last collect: end times, latencies, errors (thread-safe)."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.ends: list[int] = []
        self.latencies: list[int] = []
        self.responses: list[int] = []
        self.error_ends: list[int] = []
        self.first_error = ""
        self.skipped = 0

    def ok(self, start_ns: int, answer: DecoupledAnswer | None = None) -> None:
        end = time.monotonic_ns()
        answered, responses = answer if answer is not None else (end, 1)
        with self.lock:
            self.ends.append(end)
            self.latencies.append(answered - start_ns)
            self.responses.append(responses)

    def failed(self, error: BaseException) -> None:
        end = time.monotonic_ns()
        with self.lock:
            self.error_ends.append(end)
            if not self.first_error:
                self.first_error = describe(error)[:500]

    def skip(self) -> None:
        with self.lock:
            self.skipped += 1

    def take(self, end_ns: int) -> Collected:
        with self.lock:
            ends = np.asarray(self.ends, dtype=np.int64)
            latencies = np.asarray(self.latencies, dtype=np.int64)
            responses = np.asarray(self.responses, dtype=np.int64)
            keep = ends <= end_ns
            self.ends = ends[~keep].tolist()
            self.latencies = latencies[~keep].tolist()
            self.responses = responses[~keep].tolist()
            errors = sum(1 for e in self.error_ends if e <= end_ns)
            self.error_ends = [e for e in self.error_ends if e > end_ns]
            skipped, self.skipped = self.skipped, 0
            first_error = self.first_error
        return Collected(
            latencies[keep].astype(np.float64) / 1000.0,
            errors,
            first_error,
            skipped,
            int(responses[keep].sum()),
        )


def worker_main(plan: WorkerPlan, conn: Connection) -> None:
    """Process entry point: run the load until told to stop.

    A failure is sent to the parent as ``("failed", message)`` instead of a silent exit."""
    try:
        _Worker(plan, conn).run()
    except Exception as error:
        with contextlib.suppress(OSError):
            conn.send(("failed", f"{type(error).__name__}: {error}"))
        raise


class _Worker:
    """A thread per closed-loop slot, or a paced pool of threads for a rate."""

    def __init__(self, plan: WorkerPlan, conn: Connection) -> None:
        self.plan = plan
        self.conn = conn
        self.record = _Record()
        self.stopping = threading.Event()
        self.threads: list[threading.Thread] = []

    def run(self) -> None:
        call = self._call()
        try:
            self.conn.send("ready")
            while True:
                try:
                    command = self.conn.recv()
                except EOFError:  # the parent is gone: stop rather than load a server forever
                    break
                if command[0] == "start" and not self.threads:
                    self._start(call)
                elif command[0] == "collect":
                    self.conn.send(self.record.take(int(command[1])))
                elif command[0] == "stop":
                    break
        finally:
            self._stop(call)
        with contextlib.suppress(OSError):
            self.conn.send("stopped")

    def _call(self) -> BlockingCall:
        plan = self.plan
        values = random_inputs(plan.target, plan.batch_size, plan.seed, plan.string_length)
        shared = plan.grpc_streams_per_connection
        if plan.streaming:
            decoupled = plan.target.decoupled
            body = grpc_request_bytes(plan.target, values, empty_final=decoupled)
            return grpc_stream_call(plan.address, body, plan.timeout_s, shared, decoupled)
        if plan.protocol == "grpc":
            body = grpc_request_bytes(plan.target, values)
            return grpc_call(plan.address, body, plan.timeout_s, shared)
        return http_call(
            plan.address, http_message(plan.address, plan.target, values), plan.timeout_s
        )

    def _start(self, call: BlockingCall) -> None:
        if self.plan.concurrency:
            targets = [self._closed_loop] * self.plan.concurrency
        else:
            targets = [self._open_loop]
        for target in targets:
            thread = threading.Thread(target=target, args=(call.send,), daemon=True)
            thread.start()
            self.threads.append(thread)

    def _stop(self, call: BlockingCall) -> None:
        self.stopping.set()
        deadline = time.monotonic() + _STOP_JOIN_S
        for thread in self.threads:
            thread.join(max(0.0, deadline - time.monotonic()))
        call.close()  # ends the calls still waiting on the server
        for thread in self.threads:
            thread.join(_STOP_JOIN_S)

    def _closed_loop(self, send: Callable[[], DecoupledAnswer | None]) -> None:
        record, stopping = self.record, self.stopping
        while not stopping.is_set():
            start = time.monotonic_ns()
            try:
                answer = send()
            except Exception as error:
                if stopping.is_set():
                    return
                record.failed(error)
                stopping.wait(_ERROR_BACKOFF_S)
                continue
            record.ok(start, answer)

    def _open_loop(self, send: Callable[[], DecoupledAnswer | None]) -> None:
        plan, record, stopping = self.plan, self.record, self.stopping
        room = threading.BoundedSemaphore(plan.max_in_flight)

        def one() -> None:
            start = time.monotonic_ns()
            try:
                answer = send()
            except Exception as error:
                if not stopping.is_set():
                    record.failed(error)
            else:
                record.ok(start, answer)
            finally:
                room.release()

        interval_ns = int(1e9 / plan.rate)
        next_ns = time.monotonic_ns() + int(plan.rate_offset_s * 1e9)
        with ThreadPoolExecutor(plan.max_in_flight, thread_name_prefix="load") as pool:
            while not stopping.wait(max(0.0, (next_ns - time.monotonic_ns()) / 1e9)):
                next_ns += interval_ns
                if room.acquire(blocking=False):
                    pool.submit(one)
                else:
                    record.skip()
