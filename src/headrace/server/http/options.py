"""What an HTTP door takes besides the core and its address, whichever server carries it.

One frozen object that both :class:`~headrace.server.http.frontend.HttpFrontend` (aiohttp)
and :class:`~headrace.server.http.granian_frontend.GranianHttpFrontend` take, so the two
cannot drift apart in what they accept, and a new guard is added once.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from headrace.scheduling.backlog import DEFAULT_STREAM_SEND_TIMEOUT_S
from headrace.server.security import (
    DEFAULT_BODY_TIMEOUT_S,
    DEFAULT_HEADER_TIMEOUT_S,
    DEFAULT_KEEPALIVE_TIMEOUT_S,
    RestrictedApis,
)
from headrace.server.tls import HttpTls

__all__ = ["DEFAULT_MAX_BODY_BYTES", "HttpOptions"]

DEFAULT_MAX_BODY_BYTES = 64 * 1024 * 1024
"""Triton's default ``--http-max-input-size``."""


@dataclass(frozen=True)
class HttpOptions:
    """The HTTP door's limits and guards; the defaults restrict nothing and keep the bounds
    that protect every server."""

    max_body_bytes: int = DEFAULT_MAX_BODY_BYTES
    """The largest request body, as sent and once inflated (``--max-body-bytes``)."""
    restricted: RestrictedApis = field(default_factory=RestrictedApis)
    """API groups that need a key (``--http-restricted-api``)."""
    tls: HttpTls = field(default_factory=HttpTls)
    """Serve HTTPS when it names a certificate (``--http-ssl-cert``, ``--http-ssl-key``)."""
    header_timeout_s: float = DEFAULT_HEADER_TIMEOUT_S
    """A client slower than this to send a request's headers loses its connection
    (``--http-header-timeout``)."""
    body_timeout_s: float = DEFAULT_BODY_TIMEOUT_S
    """A client slower than this to send a request's body gets a 400 (``--http-body-timeout``)."""
    keepalive_timeout_s: float = DEFAULT_KEEPALIVE_TIMEOUT_S
    """A connection idle this long between requests is closed (``--http-keepalive-timeout``)."""
    stream_send_timeout_s: float = DEFAULT_STREAM_SEND_TIMEOUT_S
    """An SSE stream whose client reads nothing for this long is ended (``--stream-send-timeout``;
    granian's door paces streams itself, :mod:`~headrace.server.http.send_window`)."""
    shutdown_timeout_s: float = 30.0
    """How long :meth:`stop` waits for requests in flight by default (``--exit-timeout-secs``)."""
    reuse_port: bool = False
    """Bind with ``SO_REUSEPORT``, so several processes share the port."""

    def __post_init__(self) -> None:
        if self.max_body_bytes <= 0:
            raise ValueError(f"--max-body-bytes must be positive, got {self.max_body_bytes}")
