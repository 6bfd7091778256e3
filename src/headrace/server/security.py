"""Restricted API groups, as Triton's ``--http-restricted-api`` and ``--grpc-restricted-protocol``.

Each flag value is ``GROUP[,GROUP…]:KEY=VALUE``: a request to an endpoint of one of those groups
must carry the header ``KEY`` (gRPC: the metadata ``triton-grpc-protocol-KEY``) with the value
``VALUE``, or it is refused before it reaches a handler (HTTP 403, gRPC UNAVAILABLE, with
Triton's texts). Groups not named stay open. The door-specific halves, which endpoint belongs
to which group, live beside each door (:mod:`headrace.server.http.restricted`,
:mod:`headrace.server.grpc.restricted`); this module parses the flags and compares values in
constant time, so a wrong key's answer does not leak how much of it was right.
"""

from __future__ import annotations

import hmac
import ipaddress
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field

from headrace.errors import InvalidConfig
from headrace.server.tls import GrpcTls, HttpTls

__all__ = [
    "API_GROUPS",
    "DEFAULT_BODY_TIMEOUT_S",
    "DEFAULT_GRPC_MAX_STREAMS",
    "DEFAULT_HEADER_TIMEOUT_S",
    "DEFAULT_KEEPALIVE_TIMEOUT_S",
    "GRPC_KEY_PREFIX",
    "RestrictedApis",
    "Restriction",
    "SecurityOptions",
    "body_timeout",
    "is_loopback",
    "parse_key_value",
    "parse_restricted",
]

API_GROUPS: tuple[str, ...] = (
    "health",
    "metadata",
    "inference",
    "shared-memory",
    "model-config",
    "model-repository",
    "statistics",
    "trace",
    "logging",
)
"""Triton's API groups, the names both flags take."""

GRPC_KEY_PREFIX = "triton-grpc-protocol-"
"""Triton reads a gRPC restriction's key from the metadata of this name plus ``KEY``."""


@dataclass(frozen=True, slots=True)
class Restriction:
    """A group's key: the header (lower case, as both doors look headers up) and its value."""

    header: str
    value: str

    def allows(self, given: str | None) -> bool:
        """Whether ``given`` (the header's value, None when absent) is this key's value."""
        if given is None:
            return False
        return hmac.compare_digest(given.encode("utf-8"), self.value.encode("utf-8"))


@dataclass(frozen=True)
class RestrictedApis:
    """Which groups need which key; an empty one restricts nothing."""

    groups: Mapping[str, Restriction] = field(default_factory=dict)

    def __bool__(self) -> bool:
        return bool(self.groups)

    def refused(self, group: str | None, header: Callable[[str], str | None]) -> str | None:
        """The header a request to ``group`` lacks (None when it may pass); ``header`` looks
        a lower-case header name up in the request."""
        if group is None:
            return None
        restriction = self.groups.get(group)
        if restriction is None or restriction.allows(header(restriction.header)):
            return None
        return restriction.header


def parse_key_value(text: str, flag: str) -> Restriction:
    """``KEY=VALUE`` with both sides non-empty; the key lower-cased as headers are compared."""
    key, sep, value = text.partition("=")
    if not sep or not key or not value:
        raise InvalidConfig(f"{flag} option format is '<key>=<value>'. Got {text}")
    return Restriction(key.strip().lower(), value)


def parse_restricted(
    values: Iterable[str], flag: str, kind: str, prefix: str = ""
) -> RestrictedApis:
    """Parse repeated ``GROUP[,GROUP…]:KEY=VALUE`` values of ``flag`` as Triton does.

    ``kind`` names a group in errors (Triton says ``api`` for HTTP and ``protocol`` for gRPC);
    ``prefix`` goes before the key (gRPC's ``triton-grpc-protocol-``).
    """
    groups: dict[str, Restriction] = {}
    for text in values:
        names, sep, setting = text.partition(":")
        key, eq, value = setting.partition("=")
        if not sep or not names or not eq or not key or not value:
            raise InvalidConfig(
                f"{flag} option format is '<config name>:<setting>=<value>'. Got {text}"
            )
        restriction = Restriction(prefix + key.strip().lower(), value)
        for name in names.split(","):
            name = name.strip()
            if name not in API_GROUPS:
                raise InvalidConfig(
                    f"unknown restricted {kind} '{name}' in {flag} {text}; "
                    f"expected one of {', '.join(API_GROUPS)}"
                )
            if name in groups:
                raise InvalidConfig(
                    f"restricted {kind} '{name}' can not be specified in multiple config groups "
                    f"({flag} {text})"
                )
            groups[name] = restriction
    return RestrictedApis(groups)


def is_loopback(host: str) -> bool:
    """Whether ``host`` (an address or ``localhost``) only reaches this machine."""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


DEFAULT_HEADER_TIMEOUT_S = 30.0
"""How long an HTTP client may take to send a request's headers (granian's own default; the
aiohttp door keeps the same one itself)."""
DEFAULT_KEEPALIVE_TIMEOUT_S = 600.0
"""How long an HTTP/1.1 connection may stay idle between requests. Longer than the idle limits
of common client pools (Go's 90 s, browsers' 300 s), which then close first; tritonclient's
pool keeps connections without limit and Triton's server closes none, so a server that closed
idle connections at a short, round timeout (it was the 30 s header timeout) met clients that
reuse theirs at that period."""
DEFAULT_BODY_TIMEOUT_S = 60.0
"""How long an HTTP client may take to send a request's body once its headers are in."""
DEFAULT_GRPC_MAX_STREAMS = 4096
"""Concurrent calls on one gRPC connection (HTTP/2 streams); gRPC's own default is unbounded.
Clients that open more at once on one channel see some refused (a grpc.aio client's burst of
1,700 calls lost 244 under a bound of 1,024), so the default sits well above the bursts the
tests send; lower it for untrusted clients."""


def body_timeout(seconds: float) -> str:
    """The words for a request body not received in time, whichever HTTP server waited."""
    return f"request body not received within {seconds:g} s (--http-body-timeout)"


@dataclass(frozen=True)
class SecurityOptions:
    """Everything the doors need to guard themselves; the defaults restrict nothing and keep
    the timeouts and stream bounds that protect every server."""

    http_restricted: RestrictedApis = field(default_factory=RestrictedApis)
    grpc_restricted: RestrictedApis = field(default_factory=RestrictedApis)
    metrics_restricted: Restriction | None = None
    metrics_address: str = ""
    """Where the metrics port binds; empty: the same address as the other doors."""
    grpc_tls: GrpcTls = field(default_factory=GrpcTls)
    http_tls: HttpTls = field(default_factory=HttpTls)
    http_header_timeout_s: float = DEFAULT_HEADER_TIMEOUT_S
    http_body_timeout_s: float = DEFAULT_BODY_TIMEOUT_S
    http_keepalive_timeout_s: float = DEFAULT_KEEPALIVE_TIMEOUT_S
    grpc_max_concurrent_streams: int = DEFAULT_GRPC_MAX_STREAMS

    def __post_init__(self) -> None:
        for flag, value in (
            ("--http-header-timeout", self.http_header_timeout_s),
            ("--http-body-timeout", self.http_body_timeout_s),
            ("--http-keepalive-timeout", self.http_keepalive_timeout_s),
        ):
            if not value > 0:
                raise InvalidConfig(f"{flag} must be positive, got {value}")
        if self.grpc_max_concurrent_streams < 1:
            raise InvalidConfig(
                "--grpc-max-concurrent-streams must be at least 1, got "
                f"{self.grpc_max_concurrent_streams}"
            )

    def exposure_warnings(self, host: str, model_control_mode: str) -> list[str]:
        """Model control left open to whoever can reach ``host`` (nothing on loopback)."""
        warnings: list[str] = []
        if not is_loopback(host) and model_control_mode == "explicit":
            for door, restricted, flag in (
                ("HTTP", self.http_restricted, "--http-restricted-api"),
                ("gRPC", self.grpc_restricted, "--grpc-restricted-protocol"),
            ):
                if "model-repository" not in restricted.groups:
                    warnings.append(
                        f"{door} on {host} lets anyone who reaches it load and unload models "
                        f"(--model-control-mode explicit); restrict it with "
                        f"{flag} model-repository:KEY=VALUE"
                    )
        return warnings
