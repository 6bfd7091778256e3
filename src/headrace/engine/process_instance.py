"""A model instance in a worker process of its own, driven by the instance pool.

Why: a python-backend ``model.py`` (or a bound function) run on the server's threads holds
the server's GIL while its Python code runs, so the frontends, the schedulers and the other
models wait for it. Triton runs every python model instance in a stub process; so can
headrace: :class:`ProcessExecutor` is a placement builder (as :class:`RayExecutor` is) that
starts one worker (:mod:`headrace.engine.process_worker`) per planned instance and hands the
pool a :class:`ProcessInstance` for each.

How a batch travels: the pool's thread writes the inputs into the instance's input arena
(shared memory, :mod:`headrace.engine.shared_tensors`) and sends their description; the worker
runs the batch and sends the results, whose tensors the reader thread here copies out of the
worker's output ring. Responses a decoupled model sends reach each request's sink the same
way, in the order the model sent them. This thread carries every request's responses, so it
never waits for one slow client: when a stream's client is not reading, the sink has the worker
pause that request's sends and resume them once the client has read enough (a send paused past
``--stream-send-timeout`` fails its request in the worker). Cancellations travel the same
way: while a request answered through its sink is open, the reader thread checks its sink every
50 ms and tells the worker when the client has gone.

A worker that dies fails only what it had: the batch it was running and the open requests of a
decoupled model, each with an error that names the instance, the process and how it ended.
The reader thread then starts a new worker (the model's ``initialize`` runs again); until one
is up, batches fail at once with Unavailable.
"""

from __future__ import annotations

import itertools
import logging
import os
import pickle
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Mapping, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from multiprocessing.connection import Connection
from multiprocessing.reduction import send_handle
from typing import TYPE_CHECKING, Any

import numpy as np

from headrace.backends.base import BackendContext, BackendFactory, RequestResult, ShippedContext
from headrace.engine.instance import Request, TimedRequests
from headrace.engine.process_worker import ACK_EVERY, ItemMessage, PortableError
from headrace.engine.shared_tensors import OutputRing, SharedBuffer, pack, packed_size, unpack
from headrace.engine.stats import StageTimes
from headrace.errors import HeadraceError, InternalError, InvalidConfig, Unavailable
from headrace.types import PausableBacklog, WorkItem, sending_without_waiting

if TYPE_CHECKING:
    from headrace.engine.placement import InstanceSpec, PlacementOptions

__all__ = ["DEFAULT_RING_BYTES", "ProcessExecutor", "ProcessInstance"]

_log = logging.getLogger(__name__)

DEFAULT_RING_BYTES = 64 << 20
"""The worker's output ring; messages over half of it travel pickled instead."""
_FIRST_ARENA_BYTES = 1 << 20
_CANCEL_CHECK_S = 0.05
_SEND_HERE_BYTES = 256 << 10
"""Batches with up to this many bytes of inputs are sent on the caller's thread."""
_KEYS = itertools.count(1)


class ProcessExecutor:
    """Places instances in worker processes on this machine (a placement builder)."""

    def __init__(self, *, ring_bytes: int = DEFAULT_RING_BYTES) -> None:
        self.ring_bytes = ring_bytes

    def __call__(
        self,
        specs: Sequence[InstanceSpec],
        factory: BackendFactory,
        base: BackendContext,
        options: PlacementOptions,
    ) -> list[ProcessInstance]:
        import dataclasses

        instances: list[ProcessInstance] = []
        try:
            for spec in specs:
                context = dataclasses.replace(base, device=spec.device, instance_name=spec.name)
                instances.append(ProcessInstance(factory, context, ring_bytes=self.ring_bytes))
        except BaseException:
            for instance in instances:
                instance.close(drain=False)
            raise
        return instances


@dataclass(frozen=True, slots=True)
class _Batch:
    """The batch a worker is running: its requests and the keys they travel under."""

    id: int
    future: Future[TimedRequests]
    items: list[WorkItem]
    keys: list[int]


class _Worker:
    """One started worker process: its socket, its shared buffers."""

    def __init__(
        self, process: subprocess.Popen[bytes], conn: Connection, control: Connection, pid: int
    ) -> None:
        self.process = process
        self.conn = conn
        self.control = control
        self.pid = pid
        self.ring: OutputRing | None = None  # the server reads it and moves its read mark
        self.arena: SharedBuffer | None = None

    def close(self) -> None:
        for buffer in (self.arena, self.ring.buffer if self.ring is not None else None):
            if buffer is not None:
                buffer.close()
        self.conn.close()
        self.control.close()


class ProcessInstance:
    """One model instance whose backend runs in a worker process (see the module's doc)."""

    depth = 1
    can_run_now = False

    def __init__(
        self,
        factory: BackendFactory,
        context: BackendContext,
        *,
        ring_bytes: int = DEFAULT_RING_BYTES,
    ) -> None:
        self.name = context.instance_name or context.model_name
        self._model = context.model_name
        self._factory = factory
        self._shipped = ShippedContext.of(context)
        self._ring_bytes = ring_bytes
        self._lock = threading.Lock()
        self._batch: _Batch | None = None
        self._open: dict[int, WorkItem] = {}
        self._cancelled: set[int] = set()
        self._paused: set[int] = set()
        """Requests whose clients are not reading: their responses go unacknowledged."""
        self._delivered: dict[int, int] = {}
        """Responses of each open request handed to its sink and not yet acknowledged."""
        self._control_lock = threading.Lock()  # the two above, from the reader and the loop
        self._send_lock = threading.Lock()  # the control socket, from the reader and the loop
        self._batch_ids = itertools.count(1)
        self._closing = False
        self._broken: HeadraceError | None = None
        self._sender = ThreadPoolExecutor(1, thread_name_prefix=f"{self.name}-send")
        self._worker = self._start()
        self._reader = threading.Thread(target=self._read, name=f"{self.name}-read", daemon=True)
        self._reader.start()

    @property
    def pid(self) -> int:
        """The worker process's id (a new one after a restart)."""
        return self._worker.pid

    # -- Executor ---------------------------------------------------------------------------

    def submit_requests_timed(self, requests: Sequence[Request]) -> Future[TimedRequests]:
        future: Future[TimedRequests] = Future()
        items = [r if isinstance(r, WorkItem) else WorkItem(dict(r)) for r in requests]
        sizes = [packed_size(item.inputs) for item in items]
        if sum(sizes) <= _SEND_HERE_BYTES:
            self._send_batch(items, sizes, future)
        else:  # copying many megabytes would hold up the caller (the event loop)
            self._sender.submit(self._send_batch, items, sizes, future)
        return future

    def run_requests_now(self, requests: Sequence[Request]) -> TimedRequests:
        raise Unavailable(f"model instance '{self.name}' runs in a worker process")

    def close(self, *, drain: bool = True) -> None:
        """Let the worker finish its batch (when ``drain``), finalize the model and exit."""
        self._sender.shutdown(wait=drain)
        with self._lock:
            self._closing = True
            batch = self._batch
        if drain and batch is not None:
            try:
                batch.future.result(timeout=60)
            except Exception:  # noqa: S110 - the batch's own caller sees its error
                pass
        worker = self._worker
        try:
            worker.conn.send(("close",))
        except (OSError, ValueError):
            pass
        if not _wait(worker.process, 30):
            _log.warning("worker of model instance '%s' did not exit; killing it", self.name)
            worker.process.kill()
            _wait(worker.process, 5)
        self._reader.join(timeout=5)
        worker.close()

    # -- starting ---------------------------------------------------------------------------

    def _start(self) -> _Worker:
        """Start a worker and wait until its model is loaded (or raise why it is not)."""
        ours, theirs = socket.socketpair()
        control, their_control = socket.socketpair()
        fds = [theirs.fileno(), their_control.fileno()]
        try:
            process = subprocess.Popen(  # noqa: S603 - our own interpreter and module
                [sys.executable, "-m", "headrace.engine.process_worker", *map(str, fds)],
                pass_fds=fds,
                env=_worker_environment(),
            )
        finally:
            theirs.close()
            their_control.close()
        conn = Connection(ours.detach())
        worker = _Worker(process, conn, Connection(control.detach()), process.pid)
        try:
            conn.send((list(sys.path), _pickled(self._factory, self._shipped, self.name)))
            worker.ring = OutputRing(SharedBuffer(self._ring_bytes))
            conn.send(self._ring_bytes)
            send_handle(conn, worker.ring.buffer.fd, worker.pid)
            while not conn.poll(0.2):
                if process.poll() is not None:
                    raise EOFError
            message = conn.recv()
        except (EOFError, OSError) as exc:
            _wait(process, 5)
            worker.close()
            raise InternalError(
                f"the worker process of model instance '{self.name}' ended while loading the "
                f"model ({_ending(process)})"
            ) from exc
        except BaseException:
            process.kill()
            _wait(process, 5)
            worker.close()
            raise
        if message[0] != "ready":
            _wait(process, 10)
            worker.close()
            raise message[1].rebuild()
        return worker

    # -- sending ----------------------------------------------------------------------------

    def _send_batch(
        self, items: list[WorkItem], sizes: list[int], future: Future[TimedRequests]
    ) -> None:
        """On the sender thread: inputs into the arena, the batch's description to the worker."""
        keys = [next(_KEYS) for _ in items]
        with self._lock:
            error = self._broken or (
                Unavailable(f"model instance '{self.name}' is closing") if self._closing else None
            )
            if error is None:
                batch = _Batch(next(self._batch_ids), future, items, keys)
                self._batch = batch
                self._open.update(zip(keys, items))
            worker = self._worker
        if error is not None:
            future.set_result(_failed(items, error))
            return
        try:
            arena = self._arena_for(worker, sum(sizes))
            messages, offset = [], 0
            for key, item, size in zip(keys, items, sizes):
                messages.append(_item_message(key, item, pack(item.inputs, arena, offset)))
                offset += size
            worker.conn.send(("batch", batch.id, messages))
        except (OSError, ValueError) as exc:
            _log.debug("sending a batch to a worker failed: %s", exc)  # the reader reports it

    def _arena_for(self, worker: _Worker, size: int) -> SharedBuffer:
        arena = worker.arena
        if arena is None or arena.size < size:
            new_size = max(_FIRST_ARENA_BYTES, 1 << max(0, size - 1).bit_length())
            arena = SharedBuffer(new_size)
            worker.conn.send(("arena", new_size))
            send_handle(worker.conn, arena.fd, worker.pid)
            if worker.arena is not None:
                worker.arena.close()
            worker.arena = arena
        return arena

    # -- reading ----------------------------------------------------------------------------

    def _read(self) -> None:
        """The reader thread: the worker's messages, its death, and restarting it."""
        while True:
            worker = self._worker
            try:
                self._read_worker(worker)
            except (EOFError, OSError):
                pass
            with self._lock:
                if self._closing:
                    return
            self._on_death(worker)
            if not self._restart():
                return

    def _read_worker(self, worker: _Worker) -> None:
        conn = worker.conn
        checked = time.monotonic()
        while True:
            if self._open_answers():
                ready = conn.poll(_CANCEL_CHECK_S)
                now = time.monotonic()
                if now - checked >= _CANCEL_CHECK_S:
                    checked = now
                    self._check_cancellations()
                if not ready:
                    continue
            message = conn.recv()
            kind = message[0]
            if kind == "result":
                self._on_result(worker, message)
            elif kind == "send":
                self._on_send(worker, message)
            elif kind == "fail":
                _, key, error, final = message[:4]
                item = self._open.pop(key, None) if final else self._open.get(key)
                if item is not None:
                    item.sink.fail(error.rebuild(), final=final)
                if final:
                    self._acknowledge(worker, key, final)
            elif kind == "failed_batch":
                self._finish_batch(message[1], error=message[2].rebuild())

    def _open_answers(self) -> bool:
        """Whether requests answered through their sinks are open (and need watching)."""
        batch = self._batch
        return len(self._open) > (len(batch.keys) if batch is not None else 0)

    def _check_cancellations(self) -> None:
        batch = self._batch
        running = set(batch.keys) if batch is not None else set()
        for key, item in list(self._open.items()):
            if key not in self._cancelled and key not in running and item.sink.done:
                self._cancelled.add(key)
                self._control(self._worker, key)

    def _on_result(self, worker: _Worker, message: tuple[Any, ...]) -> None:
        _, batch_id, kinds, times, packed, mark = message
        outputs = [self._copy_out(worker, group) for group in packed]
        if mark:
            self._release(worker, mark)
        batch = self._batch
        if batch is None or batch.id != batch_id:
            return
        results: list[RequestResult] = []
        for key, kind in zip(batch.keys, kinds):
            if kind is None:
                results.append(None)  # answered through its sink: stays open until final
                continue
            self._open.pop(key, None)
            results.append(kind.rebuild() if isinstance(kind, PortableError) else outputs[kind])
        self._finish_batch(batch_id, results=TimedRequests(results, times))

    def _on_send(self, worker: _Worker, message: tuple[Any, ...]) -> None:
        _, key, has_outputs, final, parameters, packed, mark = message
        outputs = self._copy_out(worker, packed[0]) if has_outputs else None
        if mark:
            self._release(worker, mark)
        item = self._open.pop(key, None) if final else self._open.get(key)
        if final:
            self._cancelled.discard(key)
        if item is None:
            self._acknowledge(worker, key, final)
            return
        with sending_without_waiting(lambda backlog: self._pause(worker, key, backlog)):
            item.sink.send(outputs, final=final, parameters=parameters)
        self._acknowledge(worker, key, final)

    def _acknowledge(self, worker: _Worker, key: int, final: bool) -> None:
        """Let the worker send further responses of ``key``, unless its client is behind."""
        with self._control_lock:
            if final:
                self._delivered.pop(key, None)
                self._paused.discard(key)
                return
            count = self._delivered[key] = self._delivered.get(key, 0) + 1
            if key in self._paused or count < ACK_EVERY:
                return
            self._delivered[key] = 0
        self._control(worker, ("ack", key, count))

    def _pause(self, worker: _Worker, key: int, backlog: PausableBacklog) -> None:
        """The client of request ``key`` is not reading: stop acknowledging its responses, so
        the worker holds its sends (not this thread, which carries every request's), until
        there is room again."""
        with self._control_lock:
            if key in self._paused:
                return
            self._paused.add(key)
        self._control(worker, ("pause", key, backlog.timeout_s, backlog.overrun_message))
        backlog.when_room(lambda: self._resume(worker, key))

    def _resume(self, worker: _Worker, key: int) -> None:
        with self._control_lock:
            if key not in self._paused:
                return
            self._paused.discard(key)
            count = self._delivered.pop(key, 0)
        self._control(worker, ("resume", key, count))

    def _control(self, worker: _Worker, message: Any) -> None:
        """Send to the worker's control thread; from the reader's thread or the loop's."""
        with self._send_lock:
            try:
                worker.control.send(message)
            except OSError:
                pass  # the worker is gone: its requests fail with it

    def _finish_batch(
        self,
        batch_id: int,
        *,
        results: TimedRequests | None = None,
        error: HeadraceError | None = None,
    ) -> None:
        with self._lock:
            batch = self._batch
            if batch is None or batch.id != batch_id:
                return
            self._batch = None
        if error is not None:
            for key in batch.keys:
                self._open.pop(key, None)
            batch.future.set_exception(error)
        else:
            assert results is not None
            batch.future.set_result(results)

    @staticmethod
    def _copy_out(worker: _Worker, packed: Mapping[str, Any]) -> dict[str, np.ndarray]:
        assert worker.ring is not None
        return unpack(packed, worker.ring.buffer, copy=True)

    @staticmethod
    def _release(worker: _Worker, mark: int) -> None:
        assert worker.ring is not None
        worker.ring.release(mark)

    # -- failure ----------------------------------------------------------------------------

    def _on_death(self, worker: _Worker) -> None:
        _wait(worker.process, 5)
        error = Unavailable(
            f"the worker process (pid {worker.pid}) of model instance '{self.name}' of model "
            f"'{self._model}' {_ending(worker.process)} while it had this request; the "
            "instance is being restarted"
        )
        _log.error("%s", error.message)
        with self._lock:
            batch, self._batch = self._batch, None
            open_items, self._open = self._open, {}
            self._cancelled = set()
            self._broken = Unavailable(
                f"model instance '{self.name}' of model '{self._model}' is restarting its "
                f"worker process (pid {worker.pid} {_ending(worker.process)})"
            )
        with self._control_lock:
            self._paused.clear()
            self._delivered.clear()
        running = set(batch.keys) if batch is not None else set()
        for key, item in open_items.items():
            if key not in running:
                item.sink.fail(error, final=True)
        if batch is not None:
            batch.future.set_result(_failed(batch.items, error))
        worker.close()

    def _restart(self) -> bool:
        """Start a new worker; keep trying, a second apart, until one loads or we close."""
        while True:
            with self._lock:
                if self._closing:
                    return False
            try:
                worker = self._start()
            except HeadraceError as exc:
                with self._lock:
                    self._broken = Unavailable(
                        f"model instance '{self.name}' of model '{self._model}' cannot restart "
                        f"its worker process: {exc.message}"
                    )
                _log.error("%s", self._broken.message)
                time.sleep(1.0)
                continue
            with self._lock:
                self._worker = worker
                self._broken = None
            _log.warning(
                "model instance '%s' runs in a new worker process (pid %d)", self.name, worker.pid
            )
            return True


def _item_message(key: int, item: WorkItem, inputs: Any) -> ItemMessage:
    return ItemMessage(
        key,
        inputs,
        request_id=item.request_id,
        sequence_id=item.sequence_id,
        sequence_start=item.sequence_start,
        sequence_end=item.sequence_end,
        priority=item.priority,
        timeout_us=item.timeout_us,
        parameters=dict(item.parameters),
        requested_outputs=item.requested_outputs,
    )


def _failed(items: Sequence[WorkItem], error: HeadraceError) -> TimedRequests:
    return TimedRequests([error for _ in items], StageTimes(batch_size=len(items)))


def _ending(process: subprocess.Popen[bytes]) -> str:
    code = process.poll()
    if code is None:
        return "stopped answering"
    if code < 0:
        try:
            return f"was killed by {signal.Signals(-code).name}"
        except ValueError:
            return f"was killed by signal {-code}"
    return f"exited with code {code}"


def _wait(process: subprocess.Popen[bytes], timeout_s: float) -> bool:
    """Whether ``process`` ended within ``timeout_s``."""
    try:
        process.wait(timeout_s)
    except subprocess.TimeoutExpired:
        return False
    return True


def _worker_environment() -> dict[str, str]:
    """This environment, with headrace importable by the worker before it takes our path."""
    root = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(p for p in (root, env.get("PYTHONPATH", "")) if p)
    return env


def _pickled(factory: BackendFactory, shipped: ShippedContext, name: str) -> bytes:
    """The factory and context as the worker unpickles them (cloudpickle for lambdas)."""
    try:
        return pickle.dumps((factory, shipped))
    except (pickle.PicklingError, AttributeError, TypeError) as exc:
        try:
            import cloudpickle
        except ImportError:
            raise InvalidConfig(
                f"model instance '{name}' cannot run in a worker process: its backend factory "
                f"cannot be pickled ({exc}); install cloudpickle or define it at module level"
            ) from exc
        return bytes(cloudpickle.dumps((factory, shipped)))
