"""The HTTP/REST frontend on granian: HTTP parsed and written in Rust, handlers on our loop.

An adapter over the same :class:`~headrace.server.http.handlers.HttpHandlers` as the aiohttp
frontend, so both answer alike. granian's RSGI worker is embedded in headrace's process and
its asyncio loop, the way ``granian.server.embed`` does it: the worker's Rust threads (one
here) accept connections and parse requests, then schedule each request's callback as a task
on the loop given to it, headrace's loop. So handlers reach the core with no thread hop: there
is no bridge to pay for. The socket is bound here (so port 0 works and a taken port fails at
:meth:`start` with ``OSError``) and handed to the worker.

Timeouts: hyper's one HTTP/1 timer (``header_read_timeout``, from the end of a response or the
connect until the next request's headers are in) is set to the keep-alive timeout, and
:class:`~headrace.server.http.header_watch.HeaderWatch` enforces the header timeout apart from
it, so an idle kept-alive connection is not closed at the header timeout (where the watch
cannot run, the timer stays at the header timeout).

A client that disconnects cancels its request's task, as aiohttp's ``handler_cancellation``
does: granian's ``client_disconnect`` future cancels it. :meth:`stop` closes the listening
socket at once (new connections are refused), then waits for in-flight requests to end.

It drives granian's worker (``granian._granian.RSGIWorker``) rather than granian's embedded
``Server``, which would reconfigure logging when built; that is private API, hence the pinned
version range in the ``serve`` extra.
"""

from __future__ import annotations

import asyncio
import logging
import socket
import time
from collections.abc import Awaitable, Callable
from functools import partial
from typing import TYPE_CHECKING, Any

from headrace.errors import HeadraceError, InvalidInput, Unsupported, require
from headrace.server.http.deadlines import ReadDeadlines
from headrace.server.http.handlers import (
    HttpCall,
    HttpHandlers,
    HttpResponse,
    StreamedResponse,
    error_json,
    error_response,
    too_large,
)
from headrace.server.http.header_watch import HeaderWatch, peer_of, supported
from headrace.server.http.linger import drain
from headrace.server.http.options import HttpOptions
from headrace.server.http.restricted import refusal
from headrace.server.http.routes import RouteError, Router
from headrace.server.http.send_window import SendWindow, StalledClient
from headrace.server.security import body_timeout

if TYPE_CHECKING:
    from headrace.server.core import InferenceServer

__all__ = ["EXTRA", "GranianHttpFrontend"]

EXTRA = "serve"
"""The optional dependency group that installs granian (with the rest of the server)."""

_log = logging.getLogger(__name__)
_BACKLOG = 1024
_CUT_OFF = "server is shutting down: the exit timeout expired before this request finished"


class GranianHttpFrontend:
    """Serves one :class:`InferenceServer` over HTTP/REST on granian; the same constructor
    and lifecycle as :class:`~headrace.server.http.frontend.HttpFrontend`."""

    def __init__(
        self,
        core: InferenceServer,
        host: str = "127.0.0.1",
        port: int = 8000,
        options: HttpOptions | None = None,
    ) -> None:
        """``options``: limits, guards and timeouts (:class:`HttpOptions`); a connection idle
        for ``keepalive_timeout_s`` between requests is closed by granian's HTTP/1 timer, and
        the header timeout is kept apart from it by :class:`HeaderWatch` where it can be."""
        options = options or HttpOptions()
        max_body_bytes = options.max_body_bytes
        self._header_timeout = options.header_timeout_s
        self._watched = supported()
        timer_s = options.keepalive_timeout_s if self._watched else options.header_timeout_s
        self._http1 = require("granian.http", EXTRA).HTTP1Settings(
            header_read_timeout=max(1, round(timer_s * 1000))
        )
        self._watch: HeaderWatch | None = None
        self._restricted = options.restricted or None  # None: the hot path skips it
        self._tls = options.tls
        self._body_timeout = options.body_timeout_s
        self._body_deadlines = ReadDeadlines(options.body_timeout_s)
        self._stream_send_timeout = options.stream_send_timeout_s
        self._native = require("granian._granian", EXTRA)
        self._futures = require("granian._futures", EXTRA)
        rsgi = require("granian.rsgi", EXTRA)
        self._gone = (rsgi.ProtocolClosed, rsgi.ProtocolError, ConnectionError)
        self._handlers = HttpHandlers(core, max_body_bytes)
        self._core = core
        self._router = Router(self._handlers)
        self._host = host
        self._requested_port = port
        self._max_body = max_body_bytes
        self._shutdown_timeout = options.shutdown_timeout_s
        self._reuse_port = options.reuse_port
        self._port: int | None = None
        self._signal: Any = None
        self._worker: Any = None
        self._done: asyncio.Future[None] | None = None
        self._inflight = 0
        self._tasks: set[asyncio.Task[Any]] = set()
        self._cut_off = False
        self._idle = asyncio.Event()
        self._idle.set()

    @property
    def port(self) -> int:
        """The bound port; only known after :meth:`start`."""
        if self._port is None:
            raise RuntimeError(
                "GranianHttpFrontend.port is unknown until start() has bound the socket"
            )
        return self._port

    @property
    def url(self) -> str:
        """``host:port`` as tritonclient takes it."""
        return f"{self._host}:{self.port}"

    async def start(self) -> None:
        """Bind, then hand the socket to a granian worker serving on the running loop."""
        if self._worker is not None:
            raise RuntimeError("GranianHttpFrontend is already started")
        native, futures = self._native, self._futures
        loop = asyncio.get_running_loop()
        tls = self._tls_args()
        sock = self._bind()
        port = int(sock.getsockname()[1])
        holder = native.SocketHolder(sock.detach(), False, _BACKLOG)
        try:
            # As granian.server.embed builds it: worker id, (spec, socket), runtime threads 1,
            # runtime blocking threads 512, Python blocking threads 1 (idle 30 s), backpressure,
            # HTTP/1 (our header timeout) and /2 ("auto", default settings), no websockets, no
            # static files, TLS (enabled, cert, key, key password, min protocol, CA, CRL,
            # client verification), no metrics.
            worker = native.RSGIWorker(
                1, (None, holder), None, 1, 512, 1, 30, _BACKLOG, "auto", self._http1, None,
                False, None, *tls, (None, None),
            )  # fmt: skip
        except TypeError as exc:
            raise Unsupported(
                f"this granian's worker API differs from the one headrace drives ({exc}); "
                f"install a supported one with pip install 'headrace[{EXTRA}]', or use "
                "--http-server aiohttp"
            ) from exc
        scheduler = futures._new_cbscheduler(
            loop, futures._future_watcher_wrapper(self._serve_one), impl_asyncio=True
        )
        self._signal = native.WorkerSignal()
        done: asyncio.Future[None] = loop.create_future()

        def settle() -> None:
            if not done.done():
                done.set_result(None)

        def finished() -> None:  # granian calls this from its thread once the worker has ended
            loop.call_soon_threadsafe(settle)

        self._signal.add_cb(finished)
        worker.serve_async(scheduler, loop, self._signal)
        self._worker, self._port, self._done = worker, port, done
        if self._watched:
            self._watch = HeaderWatch(port, self._header_timeout)
            self._watch.start()

    def _tls_args(self) -> tuple[Any, ...]:
        """granian's TLS arguments; the files are checked here so a bad one fails the start."""
        if not self._tls.enabled:
            return (False, None, None, None, "tls1.3", None, [], False)
        self._tls.check()
        return (True, self._tls.cert, self._tls.key, None, "tls1.2", None, [], False)

    def _bind(self) -> socket.socket:
        family = socket.AF_INET6 if ":" in self._host else socket.AF_INET
        sock = socket.socket(family, socket.SOCK_STREAM)
        try:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            if self._reuse_port:
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
            sock.bind((self._host, self._requested_port))
            sock.listen(_BACKLOG)
        except BaseException:
            sock.close()
            raise
        return sock

    async def stop(self, grace_s: float | None = None) -> None:
        """Close the listening socket at once (before the first await), let in-flight
        requests finish up to ``grace_s`` (default: the shutdown timeout), cancel the rest,
        then let the worker go."""
        signal, self._signal = self._signal, None
        if signal is None or self._done is None:
            return
        signal.set()
        grace = self._shutdown_timeout if grace_s is None else grace_s
        watch, self._watch = self._watch, None
        if watch is not None:
            await watch.stop()
        try:
            await asyncio.wait_for(self._idle.wait(), grace)
        except asyncio.TimeoutError:
            _log.warning(
                "HTTP: %d requests still running after %.1f s; cancelling them",
                self._inflight,
                grace,
            )
            self._cut_off = True
            for task in list(self._tasks):
                task.cancel()
            await asyncio.gather(*self._tasks, return_exceptions=True)
        try:
            await asyncio.wait_for(asyncio.shield(self._done), max(grace, 1.0))
        except asyncio.TimeoutError:
            _log.warning("HTTP: granian's worker did not end; stopping without it")
        self._worker = None

    # --- one request -----------------------------------------------------------------------

    async def _serve_one(self, scope: Any, proto: Any) -> None:
        """granian's callback for one request, run as a task on the loop."""
        self._inflight += 1
        self._idle.clear()
        task = asyncio.current_task()
        if task is not None:
            self._tasks.add(task)
        log = self._core.access_log
        started = time.perf_counter()
        status = 499  # the client went away before the answer
        watch = self._watch
        peer = None
        if watch is not None:
            peer = peer_of(scope.client)
            watch.begin(peer, scope.http_version)
        try:
            status = await self._answer(scope, proto, task)
        finally:
            if peer is not None:
                watch.end(peer)  # type: ignore[union-attr]
            self._tasks.discard(task)  # type: ignore[arg-type]
            if log is not None:
                path = scope.path
                log.record("http", f"{scope.method} {path}", _model_in(path), status, started)
            self._inflight -= 1
            if self._inflight == 0:
                self._idle.set()

    async def _answer(self, scope: Any, proto: Any, task: asyncio.Task[Any] | None) -> int:
        """Answer one request; returns the status sent (499: the client went away)."""
        path = scope.path
        if self._restricted is not None:
            refused = refusal(self._restricted, path, scope.headers)
            if refused is not None:
                await self._linger(proto, scope.headers)
                self._send(proto, refused)
                return refused.status
        try:
            handler, params = self._router.match(scope.method, path)
        except RouteError as exc:
            await self._linger(proto, scope.headers)
            self._send(proto, error_json(exc.status, exc.reason))
            return exc.status
        headers = scope.headers
        disconnected = proto.client_disconnect()

        def cancel(_: Any) -> None:
            if task is not None:
                task.cancel()

        disconnected.add_done_callback(cancel)
        status = 499
        try:
            body = _Body(partial(self._read, proto, headers, task))
            try:
                call = HttpCall(path, params, headers, body.read)
                response = await handler(call)
            except HeadraceError as exc:
                response = error_response(exc)
            status = response.status
            if not body.touched:  # answered early: let the client finish sending first
                await self._linger(proto, headers)
            if isinstance(response, HttpResponse):
                self._send(proto, response)
            else:
                await self._stream(scope, proto, response)
        except asyncio.CancelledError:
            if self._cut_off:  # stop() gave up on it: answer, rather than drop the connection
                self._send(proto, error_json(503, _CUT_OFF))
                return 503
            if not disconnected.done():
                raise
            # the client went away: the core has withdrawn the request, nobody to answer
        except self._gone:
            pass  # the client went away mid-body or mid-stream
        except Exception as exc:
            status = 500
            self._send(proto, error_response(exc, f"{scope.method} {path}"))
        finally:
            disconnected.remove_done_callback(cancel)
            if not disconnected.done():
                # granian keeps a pending watcher for the life of the connection: one per
                # request on a keep-alive connection grew RSS ~1.1 KB a request (the soak)
                disconnected.cancel()
        return status

    @staticmethod
    def _send(proto: Any, response: HttpResponse) -> None:
        headers = list(response.headers)
        if response.content_type is not None:
            headers.append(("content-type", response.content_type))
        if response.body:
            proto.response_bytes(response.status, headers, response.body)
        else:
            proto.response_empty(response.status, headers)

    async def _stream(self, scope: Any, proto: Any, streamed: StreamedResponse) -> None:
        """Send the chunks as they come, paced by the client's reading (:mod:`.send_window`:
        granian itself would take them all)."""
        window = SendWindow(None, 0.0)
        if self._watched and self._port is not None:
            window = await asyncio.to_thread(
                SendWindow.open, self._port, peer_of(scope.client), self._stream_send_timeout
            )
        try:
            transport = proto.response_stream(
                streamed.status, [("content-type", streamed.content_type)]
            )
            async for data in streamed.chunks:
                await window.room(len(data))
                await transport.send_bytes(data)
        except StalledClient as exc:
            _log.warning("HTTP: stream to %s ended: %s", scope.client, exc)
        finally:
            window.close()
            await streamed.chunks.aclose()  # a client gone mid-stream cancels the request here

    @staticmethod
    async def _linger(proto: Any, headers: Any) -> None:
        """Read and drop the unread rest of a body before answering early (see
        :mod:`~headrace.server.http.linger`); a request without a body has nothing to drop."""
        length = headers.get("content-length")
        if length is not None and length.strip() == "0":
            return
        await drain(proto.__aiter__())

    async def _read(self, proto: Any, headers: Any, task: asyncio.Task[Any] | None) -> bytes:
        """The raw body, by ``--http-body-timeout``; without a Content-Length it is read in
        chunks up to the limit (the handlers refuse a declared length over it before reading)."""
        read = proto() if headers.get("content-length") is not None else self._read_chunks(proto)
        try:
            return bytes(await self._body_deadlines.within(read, task))
        except asyncio.TimeoutError:
            raise InvalidInput(body_timeout(self._body_timeout)) from None

    async def _read_chunks(self, proto: Any) -> bytes:
        parts: list[bytes] = []
        size = 0
        chunks = proto.__aiter__()  # granian's body iterates once: one iterator throughout
        while True:
            try:
                chunk = await chunks.__anext__()
            except StopAsyncIteration:
                break
            size += len(chunk)
            if size > self._max_body:
                # granian reads a body once: drop the rest now, before the 400 goes out
                await drain(chunks)
                raise InvalidInput(too_large(self._max_body, None))
            parts.append(chunk)
        return b"".join(parts)


def _model_in(path: str) -> str:
    """The model a ``/v2/models/{model}...`` path names, for the access log ("" for none)."""
    parts = path.split("/", 4)
    if len(parts) < 4 or parts[1] != "v2" or parts[2] != "models" or path == "/v2/models/stats":
        return ""
    return parts[3]


class _Body:
    """A request's body reader that remembers whether reading began: a body never touched
    is drained before an early answer; one begun was read to its end, drained past the
    limit already, or stalled past ``--http-body-timeout`` (nothing to wait for)."""

    __slots__ = ("_read", "touched")

    def __init__(self, read: Callable[[], Awaitable[bytes]]) -> None:
        self._read = read
        self.touched = False

    async def read(self) -> bytes:
        self.touched = True
        return await self._read()
