"""Run the server core, the HTTP and gRPC frontends and the metrics endpoint on one loop.

Start order: models load first (the core), then the doors open (metrics, HTTP, gRPC), so a
client that can connect finds the models ready. Stop order is the reverse and drains: the
frontends stop accepting and let their in-flight calls finish, then the core drains every
model's queue and unloads. ``serve_forever`` does that on SIGTERM or SIGINT.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import signal
from collections.abc import Coroutine
from dataclasses import dataclass, field
from typing import Any, Protocol

from headrace.errors import InvalidConfig
from headrace.files import atomic_write_bytes
from headrace.server.core import InferenceServer
from headrace.server.http.servers import DEFAULT_HTTP_SERVER, HTTP_SERVERS, make_http_frontend
from headrace.server.metrics import DEFAULT_METRICS_PORT, MetricsEndpoint, ServerMetrics
from headrace.server.security import SecurityOptions

__all__ = ["FrontendOptions", "ServerApp", "run_until_signal"]

_log = logging.getLogger(__name__)
DEFAULT_MAX_BODY_BYTES = 64 * 1024 * 1024


@dataclass(frozen=True)
class FrontendOptions:
    """Where the doors open; a port of None turns that door off, 0 picks a free port."""

    host: str = "127.0.0.1"
    http_port: int | None = 8000
    grpc_port: int | None = 8001
    metrics_port: int | None = DEFAULT_METRICS_PORT
    max_body_bytes: int = DEFAULT_MAX_BODY_BYTES
    gpu_metrics: bool = True
    ports_file: str = ""
    http_server: str = DEFAULT_HTTP_SERVER
    """What carries the HTTP door: ``aiohttp`` or ``granian`` (``--http-server``)."""
    security: SecurityOptions = field(default_factory=SecurityOptions)
    """Restricted APIs, TLS, timeouts and stream bounds (:mod:`headrace.server.security`)."""

    def __post_init__(self) -> None:
        for label in ("http_port", "grpc_port", "metrics_port"):
            port = getattr(self, label)
            if port is not None and not 0 <= port <= 65535:
                raise InvalidConfig(f"{label} must be between 0 and 65535, got {port}")
        if self.max_body_bytes <= 0:
            raise InvalidConfig(f"--max-body-bytes must be positive, got {self.max_body_bytes}")
        if self.http_server not in HTTP_SERVERS:
            raise InvalidConfig(
                f"--http-server must be one of {', '.join(HTTP_SERVERS)}, got {self.http_server!r}"
            )


class _Door(Protocol):
    @property
    def port(self) -> int: ...

    async def start(self) -> None: ...

    async def stop(self) -> None: ...


class ServerApp:
    """One core plus its frontends; ``ports`` holds the bound ports after :meth:`start`."""

    def __init__(self, core: InferenceServer, options: FrontendOptions | None = None) -> None:
        self.core = core
        self.options = options or FrontendOptions()
        self.ports: dict[str, int] = {}
        self._doors: list[tuple[str, _Door]] = []
        self._stopped = asyncio.Event()

    async def start(self) -> None:
        """Load models, then open every enabled door; raises (after closing) if one fails."""
        for warning in self.options.security.exposure_warnings(self.options.host, self.core.mode):
            _log.warning("%s", warning)
        await self.core.start()
        try:
            for label, door in self._make_doors():
                await door.start()
                self._doors.append((label, door))
                self.ports[label] = int(door.port)
        except BaseException:
            await self.stop()
            raise
        _log.info("serving on %s", ", ".join(f"{k} {v}" for k, v in self.ports.items()))
        if self.options.ports_file:
            atomic_write_bytes(self.options.ports_file, json.dumps(self.ports).encode("utf-8"))

    async def stop(self) -> None:
        """Stop accepting, finish in-flight calls, drain and unload the models."""
        for label, door in reversed(self._doors):
            try:
                await door.stop()
            except Exception as exc:
                _log.warning("stopping the %s frontend failed: %s", label, exc)
        self._doors.clear()
        self.ports.clear()
        await self.core.stop()
        self._stopped.set()

    async def wait_stopped(self) -> None:
        await self._stopped.wait()

    def _make_doors(self) -> list[tuple[str, _Door]]:
        options = self.options
        security = options.security
        doors: list[tuple[str, _Door]] = []
        if options.metrics_port is not None:
            metrics = ServerMetrics(
                self.core.metric_samples, gpu=options.gpu_metrics, cache=self.core.cache_report
            )
            endpoint = MetricsEndpoint(
                metrics,
                security.metrics_address or options.host,
                options.metrics_port,
                restriction=security.metrics_restricted,
            )
            doors.append(("metrics", endpoint))
        if options.http_port is not None:
            http = make_http_frontend(
                options.http_server,
                self.core,
                options.host,
                options.http_port,
                max_body_bytes=options.max_body_bytes,
                restricted=security.http_restricted,
                tls=security.http_tls,
                header_timeout_s=security.http_header_timeout_s,
                body_timeout_s=security.http_body_timeout_s,
            )
            doors.append(("http", http))
        if options.grpc_port is not None:
            from headrace.server.grpc.frontend import GrpcFrontend

            doors.append(
                (
                    "grpc",
                    GrpcFrontend(
                        self.core,
                        options.host,
                        options.grpc_port,
                        max_message_bytes=options.max_body_bytes,
                        restricted=security.grpc_restricted,
                        tls=security.grpc_tls,
                        max_concurrent_streams=security.grpc_max_concurrent_streams,
                    ),
                )
            )
        return doors


async def run_until_signal(app: ServerApp, on_started: Any = None) -> None:
    """Start ``app``, serve until SIGTERM/SIGINT, then stop it (draining) and return."""
    loop = asyncio.get_running_loop()
    stop = asyncio.Event()
    installed: list[signal.Signals] = []
    for sig in (signal.SIGTERM, signal.SIGINT):
        with contextlib.suppress(NotImplementedError, RuntimeError):
            loop.add_signal_handler(sig, stop.set)
            installed.append(sig)
    try:
        await app.start()
        if on_started is not None:
            on_started(app)
        await stop.wait()
        _log.info("signal received: draining and stopping")
    finally:
        for sig in installed:
            loop.remove_signal_handler(sig)
        await app.stop()


def new_event_loop() -> asyncio.AbstractEventLoop:
    """uvloop's event loop when it is installed (the ``serve`` extra), asyncio's otherwise."""
    try:
        import uvloop
    except ImportError:
        return asyncio.new_event_loop()
    return uvloop.new_event_loop()


def run(main: Coroutine[Any, Any, None]) -> None:
    """Run ``main`` to completion on a fresh loop from :func:`new_event_loop`."""
    loop = new_event_loop()
    try:
        loop.run_until_complete(main)
        loop.run_until_complete(loop.shutdown_asyncgens())
    finally:
        asyncio.set_event_loop(None)
        loop.close()
