"""The worker process of one model instance: its backend, off the server's GIL.

Triton runs each python-backend model instance in a stub process of its own; headrace can do
the same (:mod:`headrace.engine.process_instance` is the server's half). The worker builds the
backend from the instance's picklable factory and context, wraps it in a
:class:`~headrace.engine.instance.ModelInstance` (so timings, request lists and decoupled
senders behave as in the server), and then runs one batch at a time:

    server ── ("batch", id, items) ──► main thread: instance.run(items)
    server ── keys to cancel, ("ack"|"pause"|"resume", key, …) ──► control thread (:class:`Flow`)
    server ◄── ("result", id, …) / ("send", key, …) / ("fail", key, …) ── outbox (ring + socket)

Each work item here answers through a :class:`WorkerSink`, which forwards ``send`` and ``fail``
to the server, so a decoupled model may answer from any thread, before or after ``execute``
returns. Cancellations come through a socket of their own, read by a thread of their own, so
``is_cancelled()`` is right while ``execute`` runs; pauses come the same way, so a request
whose client is not reading waits in its own send, not in the server's reader. The wire format of the messages is this
module's and :mod:`~headrace.engine.process_instance`'s alone.
"""

from __future__ import annotations

import gc
import os
import pickle
import sys
import threading
import time
from collections.abc import Mapping, Sequence
from multiprocessing.connection import Connection
from multiprocessing.reduction import recv_handle
from typing import Any, NamedTuple

import numpy as np

from headrace.backends.base import BackendFactory, RequestResult, ShippedContext
from headrace.engine.shared_tensors import (
    OutputRing,
    Packed,
    SharedBuffer,
    pack,
    packed_size,
    unpack,
)
from headrace.errors import HeadraceError, ModelExecutionError, Unavailable
from headrace.types import Outputs, WorkItem

__all__ = ["ItemMessage", "PortableError", "worker_main"]


class PortableError(NamedTuple):
    """An error as it crosses between the processes: its headrace class name, message and
    whether the model answered with it (``HeadraceError.answered``)."""

    kind: str
    message: str
    answered: bool = False

    @classmethod
    def of(cls, error: BaseException) -> PortableError:
        if isinstance(error, HeadraceError):
            return cls(type(error).__name__, error.message, error.answered)
        return cls("ModelExecutionError", f"{type(error).__name__}: {error}")

    def rebuild(self) -> HeadraceError:
        from headrace import errors

        kind = getattr(errors, self.kind, None)
        if not (isinstance(kind, type) and issubclass(kind, HeadraceError)):
            kind = ModelExecutionError
        error = kind(self.message)
        error.answered = self.answered
        return error


class ItemMessage(NamedTuple):
    """One work item of a batch, without its sink; ``key`` names it in later messages."""

    key: int
    inputs: Packed
    request_id: str
    sequence_id: int | str
    sequence_start: bool
    sequence_end: bool
    priority: int
    timeout_us: int
    parameters: dict[str, Any]
    requested_outputs: tuple[str, ...] | None


class Outbox:
    """The worker's sending half: tensors into the ring, descriptions through the pipe."""

    def __init__(self, conn: Connection, ring: OutputRing) -> None:
        self._conn = conn
        self._ring = ring

    def send(self, head: tuple[Any, ...], arrays: Sequence[Mapping[str, np.ndarray]]) -> None:
        """Send ``head + (packed arrays, ring mark)``; arrays too large for the ring go pickled."""
        sizes = [packed_size(group) for group in arrays]
        size = sum(sizes)
        with self._ring.lock:
            if size and self._ring.fits(size):
                offset, mark = self._ring.allocate(size)
                packed = []
                for group, group_size in zip(arrays, sizes):
                    packed.append(pack(group, self._ring.buffer, offset))
                    offset += group_size
            else:
                packed, mark = [dict(group) for group in arrays], 0
            self._conn.send((*head, packed, mark))


SEND_WINDOW = 64
"""Responses of one request a worker sends ahead of the server's acknowledgement: what a
request whose client stopped reading can still have in flight when the server pauses it."""
ACK_EVERY = SEND_WINDOW // 2
"""The server acknowledges a request's responses in groups this large (at most half the window,
so a worker at the window's end always gets an acknowledgement)."""


class Flow:
    """What the server says about open requests, filled by the control thread: which were
    cancelled (their clients went away), how far each may send ahead, and which are paused
    (their clients are not reading, so the server withholds acknowledgements).

    Control messages: a key (cancel it), ``("ack", key, n)``, ``("pause", key, timeout_s,
    message)`` and ``("resume", key, n)``. A send waits while its request has
    :data:`SEND_WINDOW` unacknowledged responses; while paused, past ``timeout_s`` it gives up
    with ``message``.
    """

    def __init__(self) -> None:
        self.cancelled: set[int] = set()
        self._ahead: dict[int, int] = {}
        self._paused: dict[int, tuple[float, str]] = {}
        self._cond = threading.Condition()

    def take(self, message: Any) -> None:
        with self._cond:
            if isinstance(message, int):
                self.cancelled.add(message)
            elif message[0] == "ack":
                self._ahead[message[1]] = self._ahead.get(message[1], 0) - message[2]
            elif message[0] == "pause":
                self._paused[message[1]] = (message[2], message[3])
            elif message[0] == "resume":
                self._paused.pop(message[1], None)
                self._ahead[message[1]] = self._ahead.get(message[1], 0) - message[2]
            self._cond.notify_all()

    def admit(self, key: int) -> str | None:
        """Wait for room to send one more of ``key``'s responses and count it; the server's
        message instead when a pause outlasted its timeout."""
        with self._cond:
            deadline: float | None = None
            while self._ahead.get(key, 0) >= SEND_WINDOW and key not in self.cancelled:
                if key not in self._paused:
                    deadline = None
                    self._cond.wait()
                    continue
                timeout_s, message = self._paused[key]
                if deadline is None:
                    deadline = time.monotonic() + timeout_s
                left = deadline - time.monotonic()
                if left <= 0:
                    del self._paused[key]
                    return message
                self._cond.wait(left)
            self._ahead[key] = self._ahead.get(key, 0) + 1
            return None

    def forget(self, key: int) -> None:
        with self._cond:
            self.cancelled.discard(key)
            self._ahead.pop(key, None)
            self._paused.pop(key, None)


class WorkerSink:
    """A work item's sink in the worker: forwards to the server, where the real sink is.

    A send waits while its request is :data:`SEND_WINDOW` ahead of the server's
    acknowledgements; when the server paused the request (its client is not reading) and that
    lasts past the pause's timeout, it fails the request and raises
    :class:`~headrace.errors.Unavailable`.
    """

    __slots__ = ("_box", "_closed", "_flow", "key")

    def __init__(self, key: int, box: Outbox, flow: Flow) -> None:
        self.key = key
        self._box = box
        self._flow = flow
        self._closed = False

    def send(
        self,
        outputs: Outputs | None,
        *,
        final: bool = True,
        parameters: Mapping[str, Any] | None = None,
    ) -> None:
        if self._closed:
            return
        if (gave_up := self._flow.admit(self.key)) is not None:
            self.fail(Unavailable(gave_up), final=True)
            raise Unavailable(gave_up)
        self._closed = final
        if final:
            self._flow.forget(self.key)
        extra = dict(parameters) if parameters else None
        self._box.send(("send", self.key, outputs is not None, final, extra), [outputs or {}])

    def fail(self, error: BaseException, *, final: bool = True) -> None:
        if self._closed:
            return
        self._closed = final
        if final:
            self._flow.forget(self.key)
        self._box.send(("fail", self.key, PortableError.of(error), final), [])

    @property
    def done(self) -> bool:
        return self._closed or self.key in self._flow.cancelled


def worker_main(fd: int, control_fd: int) -> None:
    """The worker process: build the instance, say ready (or why not), run batches until closed.

    ``fd`` is this end of the server's data socket: the server first sends its ``sys.path`` and
    the pickled factory and context, then the output ring's size and descriptor. Cancellations
    come through ``control_fd``, so they arrive while a batch runs.
    """
    conn = Connection(fd)
    path, payload = conn.recv()
    sys.path[:] = path + [entry for entry in sys.path if entry not in path]
    # The parent server pickled these over a private socketpair; no client bytes get here.
    factory, shipped = pickle.loads(payload)  # noqa: S301
    _serve(conn, Connection(control_fd), factory, shipped)


def _serve(
    conn: Connection, control: Connection, factory: BackendFactory, shipped: ShippedContext
) -> None:
    from headrace.engine.instance import ModelInstance

    context = shipped.unpack()
    ring = OutputRing(SharedBuffer(conn.recv(), recv_handle(conn)))
    box = Outbox(conn, ring)
    try:
        instance = ModelInstance(
            factory(context), num_buffers=1, name=context.instance_name, pin_memory=False
        )
    except BaseException as exc:  # the server reports it as the load's error
        conn.send(("failed", PortableError.of(exc)))
        return
    gc.collect()
    gc.freeze()  # the model and its libraries live as long as the worker: keep them out of GC
    conn.send(("ready", os.getpid()))
    copy_inputs = bool(context.config.model_transaction_policy.decoupled)
    flow = Flow()
    threading.Thread(
        target=_take_control, args=(control, flow), name="control", daemon=True
    ).start()
    arena: SharedBuffer | None = None
    try:
        while True:
            try:
                message = conn.recv()
            except (EOFError, OSError):
                break
            kind = message[0]
            if kind == "batch":
                work = [_work_item(item, arena, box, flow, copy_inputs) for item in message[2]]
                _run_batch(instance, box, message[1], work)
            elif kind == "arena":
                if arena is not None:
                    arena.close()
                arena = SharedBuffer(message[1], recv_handle(conn))
            elif kind == "close":
                break
    finally:
        instance.close()


def _work_item(
    item: ItemMessage,
    arena: SharedBuffer | None,
    box: Outbox,
    flow: Flow,
    copy_inputs: bool,
) -> WorkItem:
    return WorkItem(
        unpack(item.inputs, arena, copy=copy_inputs),
        WorkerSink(item.key, box, flow),
        request_id=item.request_id,
        sequence_id=item.sequence_id,
        sequence_start=item.sequence_start,
        sequence_end=item.sequence_end,
        priority=item.priority,
        timeout_us=item.timeout_us,
        parameters=item.parameters,
        requested_outputs=item.requested_outputs,
    )


def _run_batch(instance: Any, box: Outbox, batch_id: int, work: list[WorkItem]) -> None:
    try:
        if instance.can_run_now:
            timed = instance.run_requests_now(work)
        else:
            timed = instance.submit_requests_timed(work).result()
    except BaseException as exc:
        box.send(("failed_batch", batch_id, PortableError.of(exc)), [])
        return
    _send_results(box, batch_id, timed.results, timed.times)


def _send_results(box: Outbox, batch_id: int, results: list[RequestResult], times: Any) -> None:
    kinds: list[Any] = []
    arrays: list[Mapping[str, np.ndarray]] = []
    for result in results:
        if result is None:
            kinds.append(None)
        elif isinstance(result, BaseException):
            kinds.append(PortableError.of(result))
        else:
            kinds.append(len(arrays))
            arrays.append(result)
    box.send(("result", batch_id, kinds, times), arrays)


def _take_control(control: Connection, flow: Flow) -> None:
    """Cancel, pause and resume requests as the server says, until it closes the socket."""
    try:
        while True:
            flow.take(control.recv())
    except (EOFError, OSError):
        pass


if __name__ == "__main__":
    from headrace.engine.process_worker import worker_main as _main  # this module, by name

    _main(int(sys.argv[1]), int(sys.argv[2]))
