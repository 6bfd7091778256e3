"""``headrace serve REPO``: serve a model repository over HTTP, gRPC and Prometheus metrics.

The flags follow ``tritonserver``'s names where they overlap. On SIGTERM or SIGINT the server
stops accepting, drains in-flight requests and exits 0. Port 0 binds a free port; the bound
ports are printed and, with ``--ports-file``, written there as JSON.
"""

from __future__ import annotations

import argparse
import sys
from typing import Any

from headrace.server.access_log import AccessLog
from headrace.server.app import (
    DEFAULT_MAX_BODY_BYTES,
    FrontendOptions,
    ServerApp,
    run,
    run_until_signal,
)
from headrace.server.cache_config import parse_cache_config
from headrace.server.core import InferenceServer, ServerOptions
from headrace.server.http.servers import DEFAULT_HTTP_SERVER, HTTP_SERVERS
from headrace.server.log_settings import LOG_FORMATS, LogControl, LogSettings
from headrace.server.metrics import DEFAULT_METRICS_PORT
from headrace.server.tracing import TraceControl, parse_trace_config

__all__ = ["register", "serve"]


def register(subparsers: Any) -> None:
    """Add the ``serve`` subcommand to the headrace CLI."""
    parser = subparsers.add_parser(
        "serve",
        help="serve a model repository (Triton's HTTP/gRPC protocol and metrics)",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("repository", metavar="REPO", help="model repository: a path or fsspec URL")
    parser.add_argument("--host", default="127.0.0.1", help="address to bind (default 127.0.0.1)")
    parser.add_argument("--http-port", type=int, default=8000, help="HTTP port (0: any free port)")
    parser.add_argument("--grpc-port", type=int, default=8001, help="gRPC port (0: any free port)")
    parser.add_argument(
        "--metrics-port", type=int, default=DEFAULT_METRICS_PORT, help="metrics port (0: any)"
    )
    parser.add_argument("--no-http", action="store_true", help="do not open the HTTP endpoint")
    parser.add_argument("--no-grpc", action="store_true", help="do not open the gRPC endpoint")
    parser.add_argument("--no-metrics", action="store_true", help="do not open the metrics port")
    parser.add_argument(
        "--model-control-mode",
        choices=("none", "poll", "explicit"),
        default="none",
        help="none: load all at start; poll: also follow repository changes; "
        "explicit: load only --load-model at start, then on request",
    )
    parser.add_argument(
        "--load-model",
        action="append",
        default=[],
        metavar="NAME",
        help="with explicit mode: a model to load at start (repeat; '*' for all)",
    )
    parser.add_argument(
        "--repository-poll-secs",
        type=float,
        default=15.0,
        help="with poll mode: seconds between repository scans (default 15)",
    )
    parser.add_argument(
        "--max-body-bytes",
        type=int,
        default=DEFAULT_MAX_BODY_BYTES,
        help="largest HTTP request body accepted (default %(default)s)",
    )
    parser.add_argument(
        "--http-server",
        choices=HTTP_SERVERS,
        default=DEFAULT_HTTP_SERVER,
        help="what carries the HTTP door: granian (HTTP parsed in a Rust thread, handlers on "
        "the event loop) or aiohttp (all on the event loop); both answer alike "
        "(default %(default)s)",
    )
    parser.add_argument(
        "--run-now-below-us",
        type=float,
        default=ServerOptions.run_now_below_us,
        metavar="US",
        help="run batches of models that execute faster than this on the event loop thread "
        "instead of handing them to worker threads (default %(default)s; 0 turns it off)",
    )
    parser.add_argument(
        "--python-runtime",
        choices=("process", "in-server"),
        default=ServerOptions.python_runtime,
        help="where python-backend models (model.py) run: a worker process per instance, off "
        "the server's GIL as Triton's stubs, or the server's own threads; a model's "
        "HEADRACE_PYTHON_RUNTIME parameter overrides it (default %(default)s)",
    )
    parser.add_argument(
        "--cache-config",
        action="append",
        default=[],
        metavar="CACHE,KEY=VALUE",
        help="the response cache, as tritonserver's flag: local,size=BYTES (repeat for more "
        "keys); models with 'response_cache { enable: true }' use it (default: no cache, so "
        "no model caches)",
    )
    parser.add_argument(
        "--ports-file", default="", help="write the bound ports here as JSON once serving"
    )
    _add_log_and_trace_options(parser)
    parser.set_defaults(func=serve)


def _add_log_and_trace_options(parser: argparse.ArgumentParser) -> None:
    """tritonserver's logging and tracing flags; v2/logging and v2/trace/setting change
    them at run time."""
    group = parser.add_argument_group("logging and tracing (as tritonserver's flags)")
    group.add_argument(
        "--log-verbose",
        type=int,
        default=None,
        metavar="LEVEL",
        help="verbose logging level; 0 off, 1 and up debug records (default: 1 with -vv, else 0)",
    )
    for severity in ("info", "warning", "error"):
        default = "true with -v, else false" if severity == "info" else "true"
        group.add_argument(
            f"--log-{severity}",
            type=_boolean,
            default=None,
            metavar="BOOL",
            help=f"write {severity} records (default {default})",
        )
    group.add_argument(
        "--log-format",
        choices=LOG_FORMATS,
        default="default",
        help="log line layout: default (I1205 07:10:11.123456 PID name]) or ISO8601 "
        "(default %(default)s)",
    )
    group.add_argument(
        "--log-file",
        default="",
        metavar="PATH",
        help="append the log (and --log-requests lines) to this file instead of stderr "
        "(default: stderr)",
    )
    group.add_argument(
        "--log-requests",
        action="store_true",
        help="access log: one line per request with time, protocol, endpoint, model, status "
        "and latency (default off)",
    )
    group.add_argument(
        "--trace-config",
        action="append",
        default=[],
        metavar="[triton,]KEY=VALUE",
        help="request tracing: level=OFF|TIMESTAMPS|TENSORS, rate=N (every N-th request), "
        "count=N (-1: no limit), triton,file=PATH, triton,log-frequency=N; repeat for more "
        "(default: level=OFF, rate=1000, count=-1, no file)",
    )


def _boolean(text: str) -> bool:
    value = text.strip().lower()
    if value in ("true", "1", "yes", "on"):
        return True
    if value in ("false", "0", "no", "off"):
        return False
    raise argparse.ArgumentTypeError(f"expected true or false, got {text!r}")


def _log_and_trace(args: argparse.Namespace, core: InferenceServer) -> LogControl:
    """Install the log settings the flags ask for (-v as the defaults) and the trace start
    settings on ``core``; returns the log control to close at exit."""
    verbosity = getattr(args, "verbose", 0)
    settings = LogSettings(
        log_file=args.log_file,
        log_info=verbosity >= 1 if args.log_info is None else args.log_info,
        log_warning=True if args.log_warning is None else args.log_warning,
        log_error=True if args.log_error is None else args.log_error,
        log_verbose_level=max(0, verbosity - 1) if args.log_verbose is None else args.log_verbose,
        log_format=args.log_format,
    )
    control = LogControl(settings)
    control.install()
    core.log_control = control
    core.tracing = TraceControl(parse_trace_config(args.trace_config), known=core.knows_model)
    if args.log_requests:
        core.access_log = AccessLog(control.stream)
    return control


def serve(args: argparse.Namespace) -> int:
    """Run the server until a signal; returns the exit code."""
    cache_bytes = parse_cache_config(args.cache_config)
    core = InferenceServer(
        args.repository,
        model_control_mode=args.model_control_mode,
        load_models=args.load_model,
        options=ServerOptions(
            repository_poll_secs=args.repository_poll_secs,
            run_now_below_us=args.run_now_below_us,
            python_runtime=args.python_runtime,
            response_cache_bytes=cache_bytes,
        ),
    )
    log_control = _log_and_trace(args, core)
    frontends = FrontendOptions(
        host=args.host,
        http_port=None if args.no_http else args.http_port,
        grpc_port=None if args.no_grpc else args.grpc_port,
        metrics_port=None if args.no_metrics else args.metrics_port,
        max_body_bytes=args.max_body_bytes,
        ports_file=args.ports_file,
        http_server=args.http_server,
    )
    app = ServerApp(core, frontends)
    try:
        run(run_until_signal(app, on_started=print_status))
    except OSError as exc:  # a port already taken, an address that cannot be bound
        print(f"headrace: error: {exc}", file=sys.stderr)
        return 1
    finally:
        if core.access_log is not None:
            core.access_log.close()
        log_control.close()
    return 0


def print_status(app: ServerApp) -> None:
    """A table of the models (name, version, backend, status) and the bound ports, on stderr."""
    from rich.console import Console
    from rich.table import Table

    backends = {(lv.name, str(lv.version)): lv.backend for lv in app.core.loaded_versions()}
    table = Table(title="models")
    for column in ("name", "version", "backend", "status"):
        table.add_column(column)
    for entry in app.core.repository_index():
        status = entry.state or "NOT LOADED"
        if entry.reason:
            status = f"{status}: {entry.reason}"
        backend = backends.get((entry.name, entry.version), "")
        table.add_row(entry.name, entry.version, backend, status)
    console = Console(stderr=True)
    console.print(table)
    ports = ", ".join(f"{label} {app.options.host}:{port}" for label, port in app.ports.items())
    console.print(f"headrace: serving on {ports}", highlight=False, soft_wrap=True)
