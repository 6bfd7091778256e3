"""The one table from :class:`headrace.errors.ErrorCode` to an HTTP status, as Triton maps them.

Triton's HTTP frontend sends INTERNAL as 500, NOT_FOUND as 404, UNAVAILABLE as 503,
UNSUPPORTED as 501 and everything else (invalid argument, already exists, cancelled) as 400.
Triton has no deadline code: a request whose timeout expires fails with UNAVAILABLE, so
``DEADLINE_EXCEEDED`` is sent as 503 too, which is what a Triton client expects to see.
"""

from __future__ import annotations

from headrace.errors import ErrorCode, HeadraceError

__all__ = ["HTTP_STATUS", "http_status"]

HTTP_STATUS: dict[ErrorCode, int] = {
    ErrorCode.INVALID_ARGUMENT: 400,
    ErrorCode.NOT_FOUND: 404,
    ErrorCode.ALREADY_EXISTS: 400,
    ErrorCode.UNAVAILABLE: 503,
    ErrorCode.DEADLINE_EXCEEDED: 503,
    ErrorCode.UNIMPLEMENTED: 501,
    ErrorCode.INTERNAL: 500,
}


def http_status(error: BaseException) -> int:
    """The HTTP status for an exception; anything that is not a HeadraceError is a 500."""
    if isinstance(error, HeadraceError):
        return HTTP_STATUS.get(error.code, 500)
    return 500
