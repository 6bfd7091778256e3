"""Which HTTP server carries the HTTP door: ``--http-server aiohttp|granian``.

Both adapt the same :mod:`~headrace.server.http.handlers`, so they answer alike; they differ in
what parses and writes HTTP (aiohttp in Python on the loop, granian in Rust threads feeding
the loop) and so in what a request costs. Each is imported only when chosen.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Literal

if TYPE_CHECKING:
    from headrace.server.core import InferenceServer
    from headrace.server.http.frontend import HttpFrontend
    from headrace.server.http.granian_frontend import GranianHttpFrontend
    from headrace.server.http.options import HttpOptions

__all__ = ["DEFAULT_HTTP_SERVER", "HTTP_SERVERS", "HttpServerName", "make_http_frontend"]

HttpServerName = Literal["aiohttp", "granian"]
HTTP_SERVERS: tuple[HttpServerName, ...] = ("aiohttp", "granian")
DEFAULT_HTTP_SERVER: HttpServerName = "granian"
"""granian took 1.00-1.30x aiohttp's throughput at less server CPU per inference, side by side
(``benchmarks/results/serve_ab_http_server.json``, see benchmarks/README.md)."""


def make_http_frontend(
    server: str,
    core: InferenceServer,
    host: str,
    port: int,
    options: HttpOptions | None = None,
) -> HttpFrontend | GranianHttpFrontend:
    """The HTTP frontend on ``server``, both taking the same :class:`HttpOptions`."""
    if server == "aiohttp":
        from headrace.server.http.frontend import HttpFrontend

        return HttpFrontend(core, host, port, options)
    if server == "granian":
        from headrace.server.http.granian_frontend import GranianHttpFrontend

        return GranianHttpFrontend(core, host, port, options)
    raise ValueError(f"unknown HTTP server {server!r}; expected one of {', '.join(HTTP_SERVERS)}")
