"""Response sinks for callers on the asyncio loop: one response (a future) or a stream.

A sink may be fed from any thread (a decoupled python model sends from its own), but its
receiver lives on the loop. Calls on the loop thread act at once; calls from another thread
are handed over with ``call_soon_threadsafe``. Plain models are answered by their scheduler
on the loop thread, so the common case costs no hand-over at all.

A :class:`StreamSink` counts what it holds in a :class:`~headrace.scheduling.backlog.StreamBacklog`:
a sender on another thread waits while its client is not reading, and fails its request when
the wait passes the backlog's timeout.
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import AsyncIterator, Mapping
from dataclasses import dataclass
from typing import Any

from headrace.errors import InternalError, Unavailable
from headrace.scheduling.backlog import StreamBacklog
from headrace.types import Outputs, no_wait_hook

__all__ = ["FutureSink", "StreamResponse", "StreamSink"]


class _LoopSink:
    """What both sinks share: the loop, its thread, and the hand-over to it."""

    __slots__ = ("_loop", "_thread")

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self._loop = loop
        self._thread = threading.get_ident()

    def _call(self, function: Any, *args: Any) -> None:
        if threading.get_ident() == self._thread:
            function(*args)
            return
        try:
            self._loop.call_soon_threadsafe(function, *args)
        except RuntimeError:
            pass  # the loop closed: nobody is left to answer


class FutureSink(_LoopSink):
    """Resolves one asyncio future with the first response (or the failure).

    For callers that expect exactly one response (unary HTTP and gRPC inference). A final
    flag without any response before it fails the future: the model answered nothing.
    Create it on the loop thread.
    """

    __slots__ = ("future",)

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        # One per request: the base class's fields set here, without a super() call.
        self._loop = loop
        self._thread = threading.get_ident()
        self.future: asyncio.Future[Outputs] = loop.create_future()

    @property
    def done(self) -> bool:
        return self.future.done()

    def send(
        self,
        outputs: Outputs | None,
        *,
        final: bool = True,
        parameters: Mapping[str, Any] | None = None,
    ) -> None:
        if threading.get_ident() == self._thread:
            self._resolve(outputs)  # the scheduler answering on the loop: the common case
        else:
            self._call(self._resolve, outputs)

    def fail(self, error: BaseException, *, final: bool = True) -> None:
        self._call(self._reject, error)

    def _resolve(self, outputs: Outputs | None) -> None:
        if self.future.done():
            return
        if outputs is None:
            self.future.set_exception(InternalError("the model sent no response"))
        else:
            self.future.set_result(outputs)

    def _reject(self, error: BaseException) -> None:
        if not self.future.done():
            self.future.set_exception(error)


@dataclass(frozen=True)
class StreamResponse:
    """One response of a stream: outputs, or an error, or (both None) a bare final flag."""

    outputs: Outputs | None
    final: bool
    parameters: Mapping[str, Any] | None = None
    error: BaseException | None = None


class StreamSink(_LoopSink):
    """Collects any number of responses, then the final one, for ``async for``.

    For decoupled models over a stream. Errors come as responses too (a final one ends the
    stream); ``close`` (the receiver went away) makes the sink ``done`` so the model's further
    responses are dropped. Create it on the loop thread.

    Every response is counted in ``backlog`` when sent; whoever reads :meth:`responses`
    releases it there once the client has it. While the backlog is full, ``send`` from another
    thread waits; past the backlog's timeout it fails the request (a final error response after
    those pending) and raises :class:`~headrace.errors.Unavailable` to the sender.
    """

    __slots__ = ("_closed", "_finished", "_gave_up", "_queue", "backlog")

    def __init__(
        self, loop: asyncio.AbstractEventLoop, backlog: StreamBacklog | None = None
    ) -> None:
        super().__init__(loop)
        self._queue: asyncio.Queue[StreamResponse] = asyncio.Queue()
        self._finished = False
        self._closed = False
        self._gave_up = False  # a send timed out: the request is failed, drop the rest
        self.backlog = backlog or StreamBacklog()

    @property
    def done(self) -> bool:
        return self._finished or self._closed

    def send(
        self,
        outputs: Outputs | None,
        *,
        final: bool = True,
        parameters: Mapping[str, Any] | None = None,
    ) -> None:
        if self._gave_up:
            return
        if threading.get_ident() == self._thread:
            self.backlog.add()  # the loop must not wait
        elif (on_full := no_wait_hook()) is not None:
            self.backlog.add()  # a thread that serves many requests pauses this one instead
            if self.backlog.full and not self.done:
                on_full(self.backlog)
        elif not self.backlog.reserve(lambda: self.done):
            self._overrun()
        self._call(self._put, StreamResponse(outputs, final, parameters))

    def fail(self, error: BaseException, *, final: bool = True) -> None:
        self.backlog.add()  # failures never wait: at most one final one per request
        self._call(self._put, StreamResponse(None, final, None, error))

    def close(self) -> None:
        """The receiver is gone: drop whatever comes from now on."""
        self._closed = True
        self.backlog.wake()

    def _overrun(self) -> None:
        error = Unavailable(self.backlog.overrun_message)
        self.backlog.overruns += 1  # only this sink's sending thread gets here
        self._gave_up = True
        self.fail(error, final=True)
        raise error

    def _put(self, item: StreamResponse) -> None:
        if self.done:
            self.backlog.release()  # dropped: nobody will read it
            return
        self._finished = item.final
        self._queue.put_nowait(item)

    async def responses(self) -> AsyncIterator[StreamResponse]:
        """Every response in the order sent, up to and including the final one."""
        while True:
            item = await self._queue.get()
            yield item
            if item.final:
                return
