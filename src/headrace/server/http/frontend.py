"""The HTTP/REST frontend on aiohttp: KServe v2 as Triton serves it.

An adapter only: aiohttp routes :data:`~headrace.server.http.routes.ROUTES` to the
framework-neutral :class:`~headrace.server.http.handlers.HttpHandlers`, and one middleware turns
their errors (and aiohttp's own 404/405) into ``{"error": ...}`` bodies. The granian frontend
(:mod:`headrace.server.http.granian_frontend`) adapts the same handlers. Unmodified
``tritonclient.http`` and ``perf_analyzer`` talk to it.

A client that disconnects cancels its handler (aiohttp's ``handler_cancellation``), so the
core withdraws its request: a streamed generate stops its model's responses, an infer leaves
the queue. Model control is shielded from that and always runs to its end. A client slow to
send its headers is cut off by :mod:`~headrace.server.header_deadline`, which is why the
door opens its listening socket itself, with aiohttp's server as the protocol factory.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any

from headrace.errors import HeadraceError, InvalidInput, require
from headrace.server.header_deadline import HeaderDeadline
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
from headrace.server.http.options import DEFAULT_MAX_BODY_BYTES, HttpOptions
from headrace.server.http.restricted import refusal
from headrace.server.http.routes import ROUTES
from headrace.server.security import body_timeout

if TYPE_CHECKING:
    from aiohttp import web

    from headrace.server.core import InferenceServer

__all__ = ["DEFAULT_MAX_BODY_BYTES", "HttpFrontend"]

_log = logging.getLogger(__name__)
_BACKLOG = 128
"""Connections waiting to be accepted, as aiohttp's own sites take them."""
_Handler = Callable[[HttpCall], Awaitable["HttpResponse | StreamedResponse"]]


class HttpFrontend:
    """Serves one :class:`InferenceServer` over HTTP/REST on ``host:port`` (0 picks a port)."""

    def __init__(
        self,
        core: InferenceServer,
        host: str = "127.0.0.1",
        port: int = 8000,
        options: HttpOptions | None = None,
    ) -> None:
        """``options``: limits, guards and timeouts, as for granian's door; the header
        timeout is kept here (:mod:`~headrace.server.header_deadline`), aiohttp having
        none."""
        options = options or HttpOptions()
        self._options = options
        self._restricted = options.restricted or None  # None: the hot path skips it
        self._web = require("aiohttp.web", "serve")
        self._handlers = HttpHandlers(core, options.max_body_bytes)
        self._core = core
        self._host = host
        self._requested_port = port
        self._runner: web.AppRunner | None = None
        self._listener: asyncio.AbstractServer | None = None
        self._deadlines: dict[Any, HeaderDeadline] = {}
        """Each open connection's header deadline, by aiohttp's protocol for it."""
        self._port: int | None = None

    @property
    def port(self) -> int:
        """The bound port; only known after :meth:`start`."""
        if self._port is None:
            raise RuntimeError("HttpFrontend.port is unknown until start() has bound the socket")
        return self._port

    @property
    def url(self) -> str:
        """``host:port`` as tritonclient takes it."""
        return f"{self._host}:{self.port}"

    async def start(self) -> None:
        """Bind and start serving; returns once the socket accepts connections."""
        if self._runner is not None:
            raise RuntimeError("HttpFrontend is already started")
        web = self._web
        options = self._options
        app = web.Application(
            middlewares=[self._make_error_middleware()], client_max_size=options.max_body_bytes
        )
        for route in ROUTES:
            handler = getattr(self._handlers, route.handler)
            app.router.add_route(route.method, route.pattern, self._adapt(handler))
        # Bodies are inflated by the handlers, bounded by max_body_bytes, not by aiohttp.
        runner = web.AppRunner(
            app,
            auto_decompress=False,
            access_log=None,
            shutdown_timeout=options.shutdown_timeout_s,
            handler_cancellation=True,
            keepalive_timeout=options.keepalive_timeout_s,
        )
        await runner.setup()
        server = runner.server
        assert server is not None  # setup() made it
        deadlines = self._deadlines
        timeout = options.header_timeout_s
        try:
            # aiohttp's server is the protocol factory, as in aiohttp's low-level serving;
            # each connection's protocol sits behind its header deadline
            listener = await asyncio.get_running_loop().create_server(
                lambda: HeaderDeadline(server, timeout, deadlines),
                self._host,
                self._requested_port,
                ssl=options.tls.context(),
                reuse_address=True,
                reuse_port=options.reuse_port or None,
                backlog=_BACKLOG,
            )
        except BaseException:
            await runner.cleanup()
            raise
        self._runner, self._listener = runner, listener
        self._port = int(listener.sockets[0].getsockname()[1])

    async def stop(self, grace_s: float | None = None) -> None:
        """Close the listening socket at once (before the first await), let in-flight
        requests finish up to ``grace_s`` (default: the shutdown timeout), cancel the rest,
        then close. Idle keep-alive connections close now, busy ones after their request."""
        runner, self._runner = self._runner, None
        if runner is None:
            return
        if self._listener is not None:
            self._listener.close()  # the listening socket closes now; connections stay
            self._listener = None
        server = runner.server
        if server is not None:
            server.pre_shutdown()
            grace = self._options.shutdown_timeout_s if grace_s is None else grace_s
            await server.shutdown(grace)
        await runner.cleanup()

    # --- the adapter ---------------------------------------------------------------------

    def _adapt(self, handler: _Handler) -> Callable[[web.Request], Awaitable[Any]]:
        """An aiohttp handler calling ``handler`` with the request as an :class:`HttpCall`."""
        too_large_error = self._web.HTTPRequestEntityTooLarge
        limit = self._options.max_body_bytes
        timeout = self._options.body_timeout_s
        deadlines = ReadDeadlines(timeout)

        async def handle(request: web.Request) -> web.StreamResponse:
            async def read() -> bytes:
                try:
                    return await deadlines.within(request.read(), asyncio.current_task())
                except too_large_error:
                    raise InvalidInput(too_large(limit, request.content_length)) from None
                except asyncio.TimeoutError:
                    raise InvalidInput(body_timeout(timeout)) from None

            call = HttpCall(request.path, request.match_info, request.headers, read)
            response = await handler(call)
            if isinstance(response, HttpResponse):
                return self._response(response)
            return await self._stream(request, response)

        return handle

    def _response(self, response: HttpResponse) -> web.Response:
        return self._web.Response(
            status=response.status,
            body=response.body or None,
            content_type=response.content_type,
            headers=dict(response.headers) if response.headers else None,
        )

    async def _stream(self, request: web.Request, streamed: StreamedResponse) -> Any:
        try:
            response = self._web.StreamResponse(
                status=streamed.status, headers={"Content-Type": streamed.content_type}
            )
            await response.prepare(request)
            async for data in streamed.chunks:
                await response.write(data)
            await response.write_eof()
            return response
        finally:
            await streamed.chunks.aclose()  # a client gone mid-stream cancels the request here

    def _make_error_middleware(self) -> Any:
        """Errors become responses: the handlers' through :func:`error_response`, aiohttp's
        own (404, 405) with their reason; with ``--log-requests``, each answer is logged."""
        web = self._web
        payload_error = require("aiohttp.web_protocol", "serve").RequestPayloadError

        restricted = self._restricted

        deadlines = self._deadlines

        @web.middleware
        async def headers_in(request: Any, handler: Any) -> Any:
            deadline = deadlines.get(request.protocol)
            if deadline is None:
                return await access(request, handler)
            deadline.request_started()  # the headers are in: --http-header-timeout stops
            try:
                return await access(request, handler)
            finally:
                deadline.request_ended()

        async def access(request: Any, handler: Any) -> Any:
            log = self._core.access_log
            if log is None:
                return await errors(request, handler)
            started = time.perf_counter()
            status = 499  # the client went away before the answer
            try:
                response = await errors(request, handler)
                status = response.status
                return response
            finally:
                model = request.match_info.get("model", "")
                log.record("http", f"{request.method} {request.path}", model, status, started)

        async def errors(request: Any, handler: Any) -> Any:
            if restricted is not None:
                refused = refusal(restricted, request.path, request.headers)
                if refused is not None:
                    return self._response(refused)
            try:
                return await handler(request)
            except HeadraceError as exc:
                return self._response(error_response(exc))
            except web.HTTPException as exc:
                if exc.status < 400:
                    raise
                return self._response(error_json(exc.status, exc.reason))
            except (ConnectionError, payload_error):
                raise  # the client went away mid-body; nobody to answer
            except Exception as exc:
                return self._response(error_response(exc, f"{request.method} {request.path}"))

        return headers_in
