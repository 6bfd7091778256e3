"""``headrace serve REPO``: serve a model repository over HTTP, gRPC and Prometheus metrics.

The flags follow ``tritonserver``'s names where they overlap. On SIGTERM or SIGINT the server
stops accepting at once on every port, lets the requests in flight finish (up to
--exit-timeout-secs) and exits 0; past that timeout it cancels them and exits 1, as tritonserver
does. Port 0 binds a free port; the bound ports are printed and, with --ports-file, written
there as JSON.
"""

from __future__ import annotations

import argparse
import os
import sys
from typing import Any

from headrace.errors import InvalidConfig
from headrace.server.access_log import AccessLog
from headrace.server.app import (
    DEFAULT_EXIT_TIMEOUT_S,
    DEFAULT_MAX_BODY_BYTES,
    DrainReport,
    FrontendOptions,
    ServerApp,
    run,
    run_until_signal,
)
from headrace.server.cache_config import parse_cache_config
from headrace.server.core import InferenceServer, ServerOptions
from headrace.server.flags import triton_bool
from headrace.server.http.servers import DEFAULT_HTTP_SERVER, HTTP_SERVERS
from headrace.server.log_settings import LOG_FORMATS, LogControl, LogSettings
from headrace.server.metrics import DEFAULT_METRICS_PORT
from headrace.server.models.registry import StartupFailed
from headrace.server.ray_cli import add_ray_arguments, connect, ray_serving
from headrace.server.security_cli import add_security_arguments, security_options
from headrace.server.tracing import TraceControl, parse_trace_config

__all__ = ["DEFAULT_GIL_SWITCH_INTERVAL_US", "register", "serve", "status_table"]

#: CPython's own default (5 ms).
DEFAULT_GIL_SWITCH_INTERVAL_US = 5000.0


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
    parser.add_argument(
        "--http-port",
        type=int,
        default=8000,
        help="HTTP port; 0 binds any free port (default %(default)s)",
    )
    parser.add_argument(
        "--grpc-port",
        type=int,
        default=8001,
        help="gRPC port; 0 binds any free port (default %(default)s)",
    )
    parser.add_argument(
        "--metrics-port",
        type=int,
        default=DEFAULT_METRICS_PORT,
        help="metrics port; 0 binds any free port (default %(default)s)",
    )
    parser.add_argument("--no-http", action="store_true", help="do not open the HTTP endpoint")
    parser.add_argument("--no-grpc", action="store_true", help="do not open the gRPC endpoint")
    parser.add_argument("--no-metrics", action="store_true", help="do not open the metrics port")
    parser.add_argument(
        "--model-control-mode",
        choices=("none", "poll", "explicit"),
        default="none",
        help="none: load all at start; poll: also follow repository changes; "
        "explicit: load only --load-model at start, then on request (default %(default)s)",
    )
    parser.add_argument(
        "--load-model",
        action="append",
        default=[],
        metavar="NAME",
        help="with explicit mode: a model to load at start (repeat; '*' for all; default: none)",
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
        "--reuse-port",
        action="store_true",
        help="let several headrace processes bind the same HTTP and gRPC ports (SO_REUSEPORT): "
        "the kernel spreads connections among them, each process serving with its own "
        "models, batches, statistics and model control (default off: a taken port is an error)",
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
        "--gil-switch-interval-us",
        type=float,
        default=DEFAULT_GIL_SWITCH_INTERVAL_US,
        metavar="US",
        help="how long one Python thread may hold the GIL while another waits for it: a "
        "worker thread back from a model waits up to this for the event loop to let go "
        "(default %(default)s)",
    )
    parser.add_argument(
        "--exit-timeout-secs",
        type=float,
        default=DEFAULT_EXIT_TIMEOUT_S,
        metavar="SECS",
        help="on SIGTERM or SIGINT, how long the requests in flight may take to finish before "
        "they are cancelled and the server exits 1 (default %(default)g)",
    )
    parser.add_argument(
        "--ports-file",
        default="",
        help="write the bound ports here as JSON once serving (default: no file)",
    )
    _add_startup_flags(parser)
    add_security_arguments(parser)
    add_ray_arguments(parser)
    _add_log_and_trace_options(parser)
    parser.set_defaults(func=serve)


def _add_startup_flags(parser: argparse.ArgumentParser) -> None:
    """tritonserver's flags for what a start with failing models and readiness mean."""
    parser.add_argument(
        "--exit-on-error",
        type=triton_bool,
        default=True,
        metavar="BOOL",
        help="a model that fails to load at start stops the server with a non-zero exit "
        "naming the model and why; false serves the models that loaded (default true)",
    )
    parser.add_argument(
        "--strict-readiness",
        type=triton_bool,
        default=True,
        metavar="BOOL",
        help="/v2/health/ready and gRPC ServerReady answer ready only while every model that "
        "should be loaded is ready; false: ready as soon as the server is live (default true)",
    )
    parser.add_argument(
        "--strict-model-config",
        type=triton_bool,
        default=False,
        metavar="BOOL",
        help="true: every model needs a complete config.pbtxt; false: a missing or partial "
        "one is completed from the model file, as Triton 2.51's default (default false)",
    )


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
            type=triton_bool,
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
    if args.gil_switch_interval_us <= 0:
        print("headrace: error: --gil-switch-interval-us must be positive", file=sys.stderr)
        return 2
    sys.setswitchinterval(args.gil_switch_interval_us / 1e6)
    cache_bytes = parse_cache_config(args.cache_config)
    try:  # --ray-address: model instances as Ray actors
        ray = ray_serving(args)
        if ray is not None:
            connect(ray)
    except Exception as exc:  # bad flags, or a cluster that cannot be reached
        print(f"headrace: error: --ray-address {args.ray_address}: {exc}", file=sys.stderr)
        return 1
    core = InferenceServer(
        args.repository,
        model_control_mode=args.model_control_mode,
        load_models=args.load_model,
        options=ServerOptions(
            repository_poll_secs=args.repository_poll_secs,
            run_now_below_us=args.run_now_below_us,
            python_runtime=args.python_runtime,
            response_cache_bytes=cache_bytes,
            exit_on_error=args.exit_on_error,
            strict_readiness=args.strict_readiness,
            strict_model_config=args.strict_model_config,
            max_stream_pending_responses=args.max_stream_pending_responses,
            stream_send_timeout_s=args.stream_send_timeout,
            default_max_queue_size=args.default_max_queue_size,
            max_shared_memory_regions=args.max_shared_memory_regions,
            ray=ray,
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
        reuse_port=args.reuse_port,
        security=security_options(args),
        exit_timeout_s=args.exit_timeout_secs,
    )
    app = ServerApp(core, frontends)
    try:
        report = run(run_until_signal(app, on_started=print_status, on_closed=print_draining))
    except OSError as exc:  # a port already taken, an address that cannot be bound
        print(f"headrace: error: {exc}", file=sys.stderr)
        return 1
    except StartupFailed as exc:  # --exit-on-error: a model failed to load at start
        hint = "--exit-on-error=false serves the models that loaded"
        print(f"headrace: error: {exc.message} ({hint})", file=sys.stderr)
        return 1
    except InvalidConfig as exc:  # the repository root is missing or unreadable
        print(f"headrace: error: {exc.message}", file=sys.stderr)
        return 1
    finally:
        if core.access_log is not None:
            core.access_log.close()
        log_control.close()
    return exit_after_drain(report)


def print_draining(in_flight: int) -> None:
    """The first line of a shutdown: the doors are closed, what is left to finish."""
    print(
        f"headrace: stopping: new requests refused; draining {in_flight} requests in flight",
        file=sys.stderr,
        flush=True,
    )


def exit_after_drain(report: DrainReport) -> int:
    """Say how the drain went; 0 when complete. Past the exit timeout a model's thread may
    still run (Python cannot stop it), so the process ends at once with 1, as tritonserver."""
    if report.complete:
        print(f"headrace: {report.describe()}; exiting", file=sys.stderr, flush=True)
        return 0
    print(f"headrace: error: {report.describe()}; exiting", file=sys.stderr, flush=True)
    sys.stdout.flush()
    os._exit(1)


def print_status(app: ServerApp) -> None:
    """A table of the models (name, version, backend, status) and the bound ports, on stderr."""
    from rich.console import Console

    console = Console(stderr=True)
    console.print(status_table(app.core))
    ports = ", ".join(f"{label} {app.options.host}:{port}" for label, port in app.ports.items())
    console.print(f"headrace: serving on {ports}", highlight=False, soft_wrap=True)


def status_table(core: InferenceServer) -> Any:
    """Name, version, backend and status of every model (a reason wraps within its column)."""
    from rich.table import Table

    backends = {(lv.name, str(lv.version)): lv.backend for lv in core.loaded_versions()}
    table = Table(title="models")
    for column in ("name", "version", "backend", "status"):
        table.add_column(column)
    for entry in core.repository_index():
        status = entry.state or "NOT LOADED"
        if entry.reason:
            status = f"{status}: {entry.reason}"
        backend = backends.get((entry.name, entry.version), "")
        table.add_row(entry.name, entry.version, backend, status)
    return table
