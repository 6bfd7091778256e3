"""One exception tree for all of headrace.

Every error raised on purpose is a :class:`HeadraceError`. Each class carries a
protocol-neutral :class:`ErrorCode`; the HTTP and gRPC frontends map codes to statuses through
one table each, so a new error class needs no frontend change.

    HeadraceError
    ├── InvalidInput          bad request: names, dtypes, shapes, batch size, framing (400)
    ├── InvalidConfig         a model configuration or repository entry is wrong (400)
    ├── ModelNotFound         unknown model or version (404)
    ├── NotFound              another named thing is unknown: a shared memory region (404)
    ├── AlreadyExists         a name is taken: registering a shared memory region twice (400)
    ├── ModelNotReady         known, but not loaded or still loading (503)
    ├── Unavailable           overload or shutdown: a full queue, a draining server (503)
    ├── DeadlineExceeded      a request's timeout passed while queued (503, as Triton)
    ├── Unsupported           an RPC or feature headrace does not implement (501)
    ├── MissingDependency     an optional stack is not installed; names the extra (500)
    └── InternalError         a model raised or headrace broke (500)
        └── ModelExecutionError  the model itself raised while executing a batch

Messages name the offending value: ``input 'x' has shape [3, 5], model 'mlp' expects [-1, 64]``.
"""

from __future__ import annotations

import enum
import reprlib
from typing import Any

__all__ = [
    "AlreadyExists",
    "DeadlineExceeded",
    "ErrorCode",
    "HeadraceError",
    "InternalError",
    "InvalidConfig",
    "InvalidInput",
    "MissingDependency",
    "ModelExecutionError",
    "ModelNotFound",
    "ModelNotReady",
    "NotFound",
    "Unavailable",
    "Unsupported",
    "brief",
    "request_tag",
]


class ErrorCode(enum.Enum):
    """Protocol-neutral codes; names follow gRPC status codes."""

    INVALID_ARGUMENT = "INVALID_ARGUMENT"
    NOT_FOUND = "NOT_FOUND"
    ALREADY_EXISTS = "ALREADY_EXISTS"
    UNAVAILABLE = "UNAVAILABLE"
    DEADLINE_EXCEEDED = "DEADLINE_EXCEEDED"
    UNIMPLEMENTED = "UNIMPLEMENTED"
    INTERNAL = "INTERNAL"


class HeadraceError(Exception):
    """Base of every error headrace raises on purpose."""

    code: ErrorCode = ErrorCode.INTERNAL
    answered: bool = False
    """True when a model answered its request with this error (a response carrying it): the
    request ran, so the model's statistics count it a success, as Triton's do."""

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


class InvalidInput(HeadraceError):
    code = ErrorCode.INVALID_ARGUMENT


class InvalidConfig(HeadraceError):
    """A configuration is wrong; names the file, the field and the value."""

    code = ErrorCode.INVALID_ARGUMENT

    def __init__(self, message: str, *, source: str = "", field: str = "") -> None:
        prefix = ": ".join(part for part in (source, field) if part)
        super().__init__(f"{prefix}: {message}" if prefix else message)
        self.source = source
        self.field = field


class ModelNotFound(HeadraceError):
    code = ErrorCode.NOT_FOUND


class NotFound(HeadraceError):
    """A named thing other than a model (a shared memory region) is unknown."""

    code = ErrorCode.NOT_FOUND


class AlreadyExists(HeadraceError):
    """A name is already taken (a shared memory region registered twice)."""

    code = ErrorCode.ALREADY_EXISTS


class ModelNotReady(HeadraceError):
    code = ErrorCode.UNAVAILABLE


class Unavailable(HeadraceError):
    code = ErrorCode.UNAVAILABLE


class DeadlineExceeded(HeadraceError):
    code = ErrorCode.DEADLINE_EXCEEDED


class Unsupported(HeadraceError):
    code = ErrorCode.UNIMPLEMENTED


class InternalError(HeadraceError):
    code = ErrorCode.INTERNAL


class ModelExecutionError(InternalError):
    """The model raised while executing; fails only the requests of that batch."""


class MissingDependency(HeadraceError):
    """An optional stack is missing; the message says which extra installs it."""

    code = ErrorCode.INTERNAL

    def __init__(self, module: str, extra: str) -> None:
        super().__init__(
            f"{module} is not installed; install it with: pip install 'headrace[{extra}]'"
        )
        self.module = module
        self.extra = extra


def require(module: str, extra: str):  # type: ignore[no-untyped-def]
    """Import an optional module, or raise :class:`MissingDependency` naming the extra."""
    import importlib

    try:
        return importlib.import_module(module)
    except ImportError as exc:
        raise MissingDependency(module, extra) from exc


_BRIEF = reprlib.Repr()
_BRIEF.maxlevel = 3
_BRIEF.maxlist = _BRIEF.maxdict = 6
_BRIEF.maxstring = _BRIEF.maxother = _BRIEF.maxlong = 60


def brief(value: Any) -> str:
    """A short ``repr`` of a client's value for an error message: a 60 MB list or a list
    nested a thousand deep is named by its start, never echoed whole or recursed into."""
    return _BRIEF.repr(value)


def request_tag(request_id: str) -> str:
    """Triton's prefix of the errors it ties to a request: ``[request id: ID] ``."""
    return f"[request id: {request_id or '<id_unknown>'}] "
