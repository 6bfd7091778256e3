"""The ``headrace serve`` flags that guard the doors: restricted APIs, TLS, client bounds.

Kept in one block beside :mod:`headrace.server.cli` so the other serve flags can grow without
touching these; Triton's names where Triton has the flag (``--http-restricted-api``,
``--grpc-restricted-protocol``, ``--grpc-use-ssl``…, ``--metrics-address``).
"""

from __future__ import annotations

import argparse
from typing import Any

from headrace.scheduling.backlog import DEFAULT_MAX_STREAM_PENDING, DEFAULT_STREAM_SEND_TIMEOUT_S
from headrace.scheduling.queue_policy import DEFAULT_MAX_QUEUE_SIZE
from headrace.server.flags import triton_bool
from headrace.server.memory.registry import DEFAULT_MAX_SHARED_MEMORY_REGIONS
from headrace.server.security import (
    API_GROUPS,
    DEFAULT_BODY_TIMEOUT_S,
    DEFAULT_GRPC_MAX_STREAMS,
    DEFAULT_HEADER_TIMEOUT_S,
    DEFAULT_KEEPALIVE_TIMEOUT_S,
    GRPC_KEY_PREFIX,
    SecurityOptions,
    parse_key_value,
    parse_restricted,
)
from headrace.server.tls import GrpcTls, HttpTls

__all__ = ["add_security_arguments", "security_options"]


def add_security_arguments(parser: Any) -> None:
    """Add the security flags to the ``serve`` parser, in their own help section."""
    group = parser.add_argument_group(
        "security", "restricted APIs, TLS and bounds on slow clients (see SECURITY.md)"
    )
    groups = ", ".join(API_GROUPS)
    group.add_argument(
        "--http-restricted-api",
        action="append",
        default=[],
        metavar="API[,API...]:KEY=VALUE",
        help=f"HTTP requests to these API groups ({groups}) need header KEY: VALUE, else 403 "
        "(repeat for other keys; default: none restricted)",
    )
    group.add_argument(
        "--grpc-restricted-protocol",
        action="append",
        default=[],
        metavar="PROTOCOL[,PROTOCOL...]:KEY=VALUE",
        help=f"gRPC calls to these groups need metadata {GRPC_KEY_PREFIX}KEY: VALUE, else "
        "UNAVAILABLE (repeat for other keys; default: none restricted)",
    )
    group.add_argument(
        "--metrics-restricted",
        default="",
        metavar="KEY=VALUE",
        help="scrapes of the metrics port need header KEY: VALUE, else 403 (default: open)",
    )
    group.add_argument(
        "--metrics-address",
        default="",
        metavar="ADDRESS",
        help="address the metrics port binds, e.g. 127.0.0.1 to keep it on this machine "
        "(default: --host)",
    )
    group.add_argument(
        "--grpc-use-ssl",
        type=triton_bool,
        nargs="?",
        const=True,
        default=False,
        metavar="BOOL",
        help="serve gRPC over TLS; alone or =true, as tritonserver takes it (default false)",
    )
    group.add_argument(
        "--grpc-use-ssl-mutual",
        type=triton_bool,
        nargs="?",
        const=True,
        default=False,
        metavar="BOOL",
        help="serve gRPC over TLS and require client certificates signed by --grpc-root-cert "
        "(default false)",
    )
    group.add_argument(
        "--grpc-server-cert", default="", help="PEM server certificate for gRPC (default: none)"
    )
    group.add_argument(
        "--grpc-server-key", default="", help="PEM private key for gRPC (default: none)"
    )
    group.add_argument(
        "--grpc-root-cert",
        default="",
        help="PEM CA certificate clients are checked against (default: none)",
    )
    group.add_argument(
        "--http-ssl-cert", default="", help="PEM certificate (chain): serve HTTPS (default off)"
    )
    group.add_argument(
        "--http-ssl-key", default="", help="PEM private key for HTTPS (default: none)"
    )
    group.add_argument(
        "--http-header-timeout",
        type=float,
        default=DEFAULT_HEADER_TIMEOUT_S,
        metavar="SECONDS",
        help="close HTTP (and metrics) connections whose request headers take longer, counted "
        "from the connection's start or a later request's first byte (default %(default)s)",
    )
    group.add_argument(
        "--http-keepalive-timeout",
        type=float,
        default=DEFAULT_KEEPALIVE_TIMEOUT_S,
        metavar="SECONDS",
        help="close HTTP connections left idle this long between requests (default %(default)s)",
    )
    group.add_argument(
        "--http-body-timeout",
        type=float,
        default=DEFAULT_BODY_TIMEOUT_S,
        metavar="SECONDS",
        help="refuse HTTP requests whose body takes longer to arrive (default %(default)s)",
    )
    group.add_argument(
        "--grpc-max-concurrent-streams",
        type=int,
        default=DEFAULT_GRPC_MAX_STREAMS,
        metavar="N",
        help="calls in flight on one gRPC connection; more wait (default %(default)s)",
    )
    group.add_argument(
        "--max-stream-pending-responses",
        type=int,
        default=DEFAULT_MAX_STREAM_PENDING,
        metavar="N",
        help="responses one stream (gRPC ModelStreamInfer, HTTP generate_stream) holds for a "
        "client that is not reading; then its next request is not read and a decoupled "
        "model's send waits (default %(default)s)",
    )
    group.add_argument(
        "--stream-send-timeout",
        type=float,
        default=DEFAULT_STREAM_SEND_TIMEOUT_S,
        metavar="SECONDS",
        help="how long a decoupled model's send waits for such a client before its request "
        "fails (default %(default)s)",
    )
    group.add_argument(
        "--default-max-queue-size",
        type=int,
        default=DEFAULT_MAX_QUEUE_SIZE,
        metavar="N",
        help="requests a model version queues when its config sets no max_queue_size (dynamic "
        "batching: per priority level); more are refused with 503 / UNAVAILABLE; 0: unbounded, "
        "as Triton (default %(default)s)",
    )
    group.add_argument(
        "--max-shared-memory-regions",
        type=int,
        default=DEFAULT_MAX_SHARED_MEMORY_REGIONS,
        metavar="N",
        help="shared memory regions (system and CUDA) registered at once; more are refused "
        "with 503 / UNAVAILABLE until some are unregistered (default %(default)s)",
    )


def security_options(args: argparse.Namespace) -> SecurityOptions:
    """The parsed flags as :class:`SecurityOptions`; raises InvalidConfig naming the flag."""
    metrics = (
        parse_key_value(args.metrics_restricted, "--metrics-restricted")
        if args.metrics_restricted
        else None
    )
    return SecurityOptions(
        http_restricted=parse_restricted(args.http_restricted_api, "--http-restricted-api", "api"),
        grpc_restricted=parse_restricted(
            args.grpc_restricted_protocol,
            "--grpc-restricted-protocol",
            "protocol",
            prefix=GRPC_KEY_PREFIX,
        ),
        metrics_restricted=metrics,
        metrics_address=args.metrics_address,
        grpc_tls=GrpcTls(
            use_ssl=args.grpc_use_ssl,
            mutual=args.grpc_use_ssl_mutual,
            server_cert=args.grpc_server_cert,
            server_key=args.grpc_server_key,
            root_cert=args.grpc_root_cert,
        ),
        http_tls=HttpTls(cert=args.http_ssl_cert, key=args.http_ssl_key),
        http_header_timeout_s=args.http_header_timeout,
        http_body_timeout_s=args.http_body_timeout,
        http_keepalive_timeout_s=args.http_keepalive_timeout,
        grpc_max_concurrent_streams=args.grpc_max_concurrent_streams,
    )
