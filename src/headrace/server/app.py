"""Run the server core, the HTTP and gRPC frontends and the metrics endpoint on one loop.

Start order: models load first (the core), then the doors open (metrics, HTTP, gRPC), so a
client that can connect finds the models ready. Stopping drains, within one budget
(``--exit-timeout-secs``, as tritonserver's flag): the core refuses new requests and every door
stops accepting at once: the HTTP door closes its listening socket, the gRPC door refuses every
new call with UNAVAILABLE and closes its port once its clients have gone quiet (so gRPC cancels
no call waiting in its queue, :mod:`headrace.server.grpc.closing`); the requests already
accepted run to their end; then the core unloads the models. What is still
running when the budget is spent is cancelled and the :class:`DrainReport` says so.
:func:`run_until_signal` does all that on SIGTERM or SIGINT.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import signal
import time
from collections.abc import Callable, Coroutine
from dataclasses import dataclass, field
from typing import Any, Protocol, TypeVar

from headrace.errors import InvalidConfig
from headrace.files import atomic_write_bytes
from headrace.server.core import InferenceServer
from headrace.server.http.options import DEFAULT_MAX_BODY_BYTES, HttpOptions
from headrace.server.http.servers import DEFAULT_HTTP_SERVER, HTTP_SERVERS, make_http_frontend
from headrace.server.metrics import DEFAULT_METRICS_PORT, MetricsEndpoint, ServerMetrics
from headrace.server.security import SecurityOptions

__all__ = [
    "DEFAULT_EXIT_TIMEOUT_S",
    "DrainReport",
    "FrontendOptions",
    "ServerApp",
    "run_until_signal",
]

_log = logging.getLogger(__name__)
T = TypeVar("T")
DEFAULT_EXIT_TIMEOUT_S = 30.0
"""tritonserver's ``--exit-timeout-secs`` default: how long a shutdown waits for accepted work."""
_UNLOAD_S = 1.0
"""Time the models get to unload once the doors are closed, when the budget is spent already."""


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
    reuse_port: bool = False
    """Several processes may bind the HTTP and gRPC ports (``--reuse-port``)."""
    security: SecurityOptions = field(default_factory=SecurityOptions)
    """Restricted APIs, TLS, timeouts and stream bounds (:mod:`headrace.server.security`)."""
    exit_timeout_s: float = DEFAULT_EXIT_TIMEOUT_S
    """How long stopping waits for accepted requests before cancelling them
    (``--exit-timeout-secs``)."""

    def __post_init__(self) -> None:
        for label in ("http_port", "grpc_port", "metrics_port"):
            port = getattr(self, label)
            if port is not None and not 0 <= port <= 65535:
                raise InvalidConfig(f"{label} must be between 0 and 65535, got {port}")
        if self.max_body_bytes <= 0:
            raise InvalidConfig(f"--max-body-bytes must be positive, got {self.max_body_bytes}")
        if not self.exit_timeout_s >= 0:
            raise InvalidConfig(
                f"--exit-timeout-secs must not be negative, got {self.exit_timeout_s}"
            )
        if self.http_server not in HTTP_SERVERS:
            raise InvalidConfig(
                f"--http-server must be one of {', '.join(HTTP_SERVERS)}, got {self.http_server!r}"
            )


class _Door(Protocol):
    """A frontend. ``stop`` stops accepting (closes the listening socket, or refuses every new
    call) before its first suspension point (so doors stopped together stop accepting
    together), waits up to ``grace_s`` for the calls in flight, cancels the rest and closes."""

    @property
    def port(self) -> int: ...

    async def start(self) -> None: ...

    async def stop(self, grace_s: float | None = None) -> None: ...


@dataclass(frozen=True)
class DrainReport:
    """How a stop went: what was in flight when it began, what was cut off, how long it took."""

    in_flight: int
    """Inference requests accepted and unanswered when the doors closed."""
    unfinished: int
    """Of those, how many were still running when the exit timeout expired (cancelled)."""
    seconds: float
    timeout_s: float
    unloaded: bool = True
    """Whether the models unloaded within the budget (a hung model keeps its thread)."""

    @property
    def complete(self) -> bool:
        """Every accepted request finished and every model unloaded in time."""
        return self.unfinished == 0 and self.unloaded

    def describe(self) -> str:
        """One line for the log."""
        if self.complete:
            return f"drained {self.in_flight} requests in flight in {self.seconds:.2f} s"
        what = f"{self.unfinished} of {self.in_flight} requests still in flight"
        if self.unfinished == 0:
            what = "a model still unloading"
        return (
            f"exit timeout expired (--exit-timeout-secs {self.timeout_s:g}) with {what} after "
            f"{self.seconds:.2f} s; cancelled"
        )


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

    async def stop(self, on_closed: Callable[[int], None] | None = None) -> DrainReport:
        """Stop accepting on every door at once, let accepted requests finish (up to
        ``exit_timeout_s``, then cancel them), then unload the models.

        ``on_closed`` gets the number of requests in flight once every door refuses new
        connections.
        """
        timeout = self.options.exit_timeout_s
        began = time.monotonic()
        deadline = began + timeout
        self.core.stop_accepting()
        doors, self._doors = list(reversed(self._doors)), []
        stops = [
            asyncio.ensure_future(self._stop_door(label, door, timeout)) for label, door in doors
        ]
        await asyncio.sleep(0)  # each door has run up to its first await: it accepts no more
        in_flight = self.core.in_flight
        _log.info("stopped accepting; %d requests in flight", in_flight)
        if on_closed is not None:
            on_closed(in_flight)
        unfinished = 0
        try:
            await asyncio.wait_for(self.core.wait_drained(), timeout)
        except asyncio.TimeoutError:
            unfinished = self.core.in_flight
        await asyncio.gather(*stops)
        self.ports.clear()
        # Not wait_for: cancelling an unload that joins a hung model's thread would wait for it.
        unloading = asyncio.ensure_future(self.core.stop())
        done, _ = await asyncio.wait(
            {unloading}, timeout=max(deadline - time.monotonic(), _UNLOAD_S)
        )
        unloaded = unloading in done
        if not unloaded:
            unloading.cancel()
        self._stopped.set()
        report = DrainReport(in_flight, unfinished, time.monotonic() - began, timeout, unloaded)
        (_log.info if report.complete else _log.warning)("%s", report.describe())
        return report

    @staticmethod
    async def _stop_door(label: str, door: _Door, grace_s: float) -> None:
        try:
            await door.stop(grace_s)
        except Exception as exc:
            _log.warning("stopping the %s frontend failed: %s", label, exc)

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
                header_timeout_s=security.http_header_timeout_s,
            )
            doors.append(("metrics", endpoint))
        if options.http_port is not None:
            http = make_http_frontend(
                options.http_server,
                self.core,
                options.host,
                options.http_port,
                HttpOptions(
                    max_body_bytes=options.max_body_bytes,
                    restricted=security.http_restricted,
                    tls=security.http_tls,
                    header_timeout_s=security.http_header_timeout_s,
                    body_timeout_s=security.http_body_timeout_s,
                    keepalive_timeout_s=security.http_keepalive_timeout_s,
                    stream_send_timeout_s=self.core.options.stream_send_timeout_s,
                    shutdown_timeout_s=options.exit_timeout_s,
                    reuse_port=options.reuse_port,
                ),
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
                        shutdown_timeout_s=options.exit_timeout_s,
                        reuse_port=options.reuse_port,
                    ),
                )
            )
        return doors


async def run_until_signal(
    app: ServerApp, on_started: Any = None, on_closed: Callable[[int], None] | None = None
) -> DrainReport:
    """Start ``app``, serve until SIGTERM/SIGINT, then stop it (draining); how it went."""
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
    except BaseException:
        for sig in installed:
            loop.remove_signal_handler(sig)
        await app.stop()
        raise
    for sig in installed:
        loop.remove_signal_handler(sig)
    return await app.stop(on_closed)


def new_event_loop() -> asyncio.AbstractEventLoop:
    """uvloop's event loop when it is installed (the ``serve`` extra), asyncio's otherwise."""
    try:
        import uvloop
    except ImportError:
        return asyncio.new_event_loop()
    return uvloop.new_event_loop()


def run(main: Coroutine[Any, Any, T]) -> T:
    """Run ``main`` to completion on a fresh loop from :func:`new_event_loop`; its result."""
    loop = new_event_loop()
    try:
        result = loop.run_until_complete(main)
        loop.run_until_complete(loop.shutdown_asyncgens())
        return result
    finally:
        asyncio.set_event_loop(None)
        loop.close()
