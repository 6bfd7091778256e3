"""The HTTP/REST frontend on aiohttp: KServe v2 as Triton serves it.

An adapter only: aiohttp routes :data:`~headrace.server.http.routes.ROUTES` to the
framework-neutral :class:`~headrace.server.http.handlers.HttpHandlers`, and one middleware turns
their errors (and aiohttp's own 404/405) into ``{"error": ...}`` bodies. The granian frontend
(:mod:`headrace.server.http.granian_frontend`) adapts the same handlers. Unmodified
``tritonclient.http`` and ``perf_analyzer`` talk to it.

A client that disconnects cancels its handler (aiohttp's ``handler_cancellation``), so the
core withdraws its request: a streamed generate stops its model's responses, an infer leaves
the queue. Model control is shielded from that and always runs to its end.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any

from headrace.errors import HeadraceError, InvalidInput, require
from headrace.server.http.handlers import (
    DEFAULT_MAX_BODY_BYTES,
    HttpCall,
    HttpHandlers,
    HttpResponse,
    StreamedResponse,
    error_json,
    error_response,
    too_large,
)
from headrace.server.http.restricted import refusal
from headrace.server.http.routes import ROUTES
from headrace.server.security import (
    DEFAULT_BODY_TIMEOUT_S,
    DEFAULT_HEADER_TIMEOUT_S,
    DEFAULT_KEEPALIVE_TIMEOUT_S,
    RestrictedApis,
    body_timeout,
)

if TYPE_CHECKING:
    from aiohttp import web

    from headrace.server.core import InferenceServer
    from headrace.server.tls import HttpTls

__all__ = ["DEFAULT_MAX_BODY_BYTES", "HttpFrontend"]

_log = logging.getLogger(__name__)
_Handler = Callable[[HttpCall], Awaitable["HttpResponse | StreamedResponse"]]


class HttpFrontend:
    """Serves one :class:`InferenceServer` over HTTP/REST on ``host:port`` (0 picks a port)."""

    def __init__(
        self,
        core: InferenceServer,
        host: str = "127.0.0.1",
        port: int = 8000,
        *,
        max_body_bytes: int = DEFAULT_MAX_BODY_BYTES,
        shutdown_timeout_s: float = 30.0,
        reuse_port: bool = False,
        restricted: RestrictedApis | None = None,
        tls: HttpTls | None = None,
        header_timeout_s: float = DEFAULT_HEADER_TIMEOUT_S,
        body_timeout_s: float = DEFAULT_BODY_TIMEOUT_S,
        keepalive_timeout_s: float = DEFAULT_KEEPALIVE_TIMEOUT_S,
    ) -> None:
        """``reuse_port``: as for :class:`~headrace.server.grpc.GrpcFrontend`; the others as
        for :class:`~headrace.server.http.granian_frontend.GranianHttpFrontend`, except that
        aiohttp has no header read timeout (``header_timeout_s`` is taken and not used)."""
        if max_body_bytes <= 0:
            raise ValueError(f"--max-body-bytes must be positive, got {max_body_bytes}")
        self._restricted = restricted if restricted else None  # None: the hot path skips it
        self._tls = tls
        self._body_timeout = body_timeout_s
        self._keepalive_timeout = keepalive_timeout_s
        self._web = require("aiohttp.web", "serve")
        self._handlers = HttpHandlers(core, max_body_bytes)
        self._core = core
        self._host = host
        self._requested_port = port
        self._max_body = max_body_bytes
        self._shutdown_timeout = shutdown_timeout_s
        self._reuse_port = reuse_port
        self._runner: web.AppRunner | None = None
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
        app = web.Application(
            middlewares=[self._make_error_middleware()], client_max_size=self._max_body
        )
        for route in ROUTES:
            handler = getattr(self._handlers, route.handler)
            app.router.add_route(route.method, route.pattern, self._adapt(handler))
        # Bodies are inflated by the handlers, bounded by max_body_bytes, not by aiohttp.
        runner = web.AppRunner(
            app,
            auto_decompress=False,
            access_log=None,
            shutdown_timeout=self._shutdown_timeout,
            handler_cancellation=True,
            keepalive_timeout=self._keepalive_timeout,
        )
        await runner.setup()
        site = web.TCPSite(
            runner,
            self._host,
            self._requested_port,
            reuse_address=True,
            reuse_port=self._reuse_port or None,
            ssl_context=self._tls.context() if self._tls is not None else None,
        )
        try:
            await site.start()
        except BaseException:
            await runner.cleanup()
            raise
        self._runner = runner
        self._port = int(runner.addresses[0][1])

    async def stop(self, grace_s: float | None = None) -> None:
        """Close the listening socket at once (before the first await), let in-flight
        requests finish up to ``grace_s`` (default: the shutdown timeout), cancel the rest,
        then close. Idle keep-alive connections close now, busy ones after their request."""
        runner, self._runner = self._runner, None
        if runner is None:
            return
        for site in list(runner.sites):
            await site.stop()  # closes the listener without suspending
        server = runner.server
        if server is not None:
            server.pre_shutdown()
            grace = self._shutdown_timeout if grace_s is None else grace_s
            await server.shutdown(grace)
        await runner.cleanup()

    # --- the adapter ---------------------------------------------------------------------

    def _adapt(self, handler: _Handler) -> Callable[[web.Request], Awaitable[Any]]:
        """An aiohttp handler calling ``handler`` with the request as an :class:`HttpCall`."""
        too_large_error = self._web.HTTPRequestEntityTooLarge
        limit = self._max_body
        timeout = self._body_timeout

        async def handle(request: web.Request) -> web.StreamResponse:
            async def read() -> bytes:
                try:
                    return await asyncio.wait_for(request.read(), timeout)
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

        @web.middleware
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

        return access
