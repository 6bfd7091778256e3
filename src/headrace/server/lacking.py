"""Triton's answers for protocol extensions headrace does not have.

A Triton built without tracing or dynamic logging still routes those endpoints and answers
UNAVAILABLE (HTTP 503) with a fixed text, so a client that probes for them gets a clear error
it already knows how to read instead of a 404 route or a gRPC UNIMPLEMENTED. Both doors raise
the same :class:`~headrace.errors.Unavailable` from here.
"""

from __future__ import annotations

from headrace.errors import Unavailable

__all__ = ["NO_LOGGING", "NO_TRACING", "lacking"]

NO_TRACING = "the server does not support tracing"
"""Triton's text for trace settings (HTTP ``v2/trace/setting``, gRPC ``TraceSetting``)."""
NO_LOGGING = "the server does not support dynamic logging"
"""Triton's text for log settings (HTTP ``v2/logging``, gRPC ``LogSettings``)."""


def lacking(message: str) -> Unavailable:
    """The error a door raises for an extension headrace lacks (503 / UNAVAILABLE)."""
    return Unavailable(message)
