"""``headrace bench load URL MODEL``: the arguments and the command (registered by bench.cli)."""

from __future__ import annotations

import argparse
import os
import sys
from typing import Any

__all__ = ["add_load_command", "parse_points", "parse_shape", "run_load_command"]

DEFAULT_RESULTS_DIR = os.path.join("benchmarks", "results")


def add_load_command(commands: Any) -> None:
    """Add ``load`` to the ``bench`` subcommands."""
    from headrace.bench.load import GRPC_STREAMS_PER_CONNECTION, default_processes

    parser = commands.add_parser(
        "load",
        help="perf_analyzer-style load on any KServe v2 server: concurrency or request-rate "
        "sweep, latency percentiles, server-side breakdown",
    )
    parser.add_argument("url", metavar="URL", help="server address, host:port or http://host:port")
    parser.add_argument("model", metavar="MODEL", help="model name")
    parser.add_argument(
        "--protocol", choices=("http", "grpc"), default="http", help="(default http)"
    )
    parser.add_argument(
        "--streaming",
        action="store_true",
        help=(
            "gRPC ModelStreamInfer instead of unary calls; needs --protocol grpc; the only "
            "wire for a decoupled model (default off)"
        ),
    )
    load = parser.add_mutually_exclusive_group()
    load.add_argument(
        "--concurrency",
        type=parse_points(int),
        default=None,
        help="requests in flight: a list 1,4,16 or a range start:end:step (default 1)",
    )
    load.add_argument(
        "--request-rate",
        type=parse_points(float),
        default=None,
        help="open loop, requests/s: a list or a range start:end:step (default: off)",
    )
    parser.add_argument("--batch-size", type=int, default=1, help="items per request (default 1)")
    parser.add_argument(
        "--shape",
        type=parse_shape,
        action="append",
        default=[],
        metavar="NAME:DIMS",
        help="an input's dims without the batch dimension, e.g. INPUT0:16 or IMG:3,224,224; "
        "needed for variable dims (default: the model's metadata)",
    )
    parser.add_argument(
        "--window-ms", type=int, default=5000, help="measurement window in ms (default 5000)"
    )
    parser.add_argument(
        "--stability",
        type=float,
        default=10.0,
        help="percent: the last 3 windows must lie within ±this of their mean in throughput "
        "and latency (default 10)",
    )
    parser.add_argument(
        "--max-trials",
        type=int,
        default=10,
        help="windows at most per point; an unstable point is reported as such (default 10)",
    )
    parser.add_argument(
        "--processes",
        type=int,
        default=default_processes(),
        help=f"client processes (default min(4, cores) = {default_processes()})",
    )
    parser.add_argument(
        "--grpc-streams-per-connection",
        type=int,
        default=GRPC_STREAMS_PER_CONNECTION,
        metavar="N",
        help="gRPC: requests in flight sharing one HTTP/2 connection, each connection read by "
        "a thread of its own, as perf_analyzer's contexts share tritonclient's channels; 1: a "
        f"connection per request in flight, read by its caller (default "
        f"{GRPC_STREAMS_PER_CONNECTION})",
    )
    parser.add_argument(
        "--string-length",
        type=int,
        default=128,
        help="characters per random BYTES element (default 128, as perf_analyzer)",
    )
    parser.add_argument("--model-version", default="", help="(default: the server's choice)")
    parser.add_argument(
        "--perf-analyzer",
        nargs="?",
        const="",
        default=None,
        metavar="PATH",
        help="drive NVIDIA perf_analyzer instead (PATH, or found via $HEADRACE_PERF_ANALYZER, "
        "../shared/tools/perf-analyzer or PATH) (default: headrace's own generator)",
    )
    parser.add_argument(
        "--out",
        default="",
        help="result JSON; overwritten if it exists (default benchmarks/results/"
        "bench_load_MODEL_PROTOCOL.json, numbered _2, _3 … rather than overwritten)",
    )
    parser.set_defaults(func=run_load_command)


def run_load_command(args: argparse.Namespace) -> int:
    from headrace.bench.load import LoadPoint, LoadSettings, run_load
    from headrace.bench.load_report import free_path, print_table, results_document, write_json
    from headrace.bench.perf_analyzer import locate

    settings = LoadSettings(
        url=args.url,
        model=args.model,
        protocol=args.protocol,
        streaming=args.streaming,
        model_version=args.model_version,
        batch_size=args.batch_size,
        shapes=dict(args.shape),
        window_ms=args.window_ms,
        stability_percent=args.stability,
        max_trials=args.max_trials,
        processes=args.processes,
        string_length=args.string_length,
        grpc_streams_per_connection=args.grpc_streams_per_connection,
    )
    if args.request_rate:
        points = [LoadPoint(request_rate=rate) for rate in args.request_rate]
    else:
        points = [LoadPoint(concurrency=c) for c in (args.concurrency or [1])]
    generator, executable = "headrace", None
    if args.perf_analyzer is not None:
        generator, executable = "perf_analyzer", locate(args.perf_analyzer or None)
    results = []
    for result in run_load(settings, points, generator, executable):
        results.append(result)
        load = result.point.concurrency or f"{result.point.request_rate:g}/s"
        done = f"{result.row.throughput:.1f} infer/s" if result.row else result.error[:120]
        print(f"{generator} {settings.wire} {load}: {done}", flush=True)
    print_table(results, f"{args.model} at {args.url}, {settings.wire}, {generator}")
    if args.out:
        out = args.out
    else:
        name = f"bench_load_{args.model}_{settings.wire.replace('-', '_')}.json"
        out = str(free_path(os.path.join(DEFAULT_RESULTS_DIR, name)))
    document = results_document(settings, results, ["headrace", *sys.argv[1:]])
    print(f"results: {write_json(out, document)}")
    failed = any(r.row is None or r.errors for r in results)
    return 1 if failed else 0


def parse_points(kind: Any) -> Any:
    """Parser of ``1,4,16`` or ``start:end:step`` (end included, step 1 if left out)."""

    def parse(text: str) -> list[Any]:
        try:
            if ":" in text:
                parts = [kind(p) for p in text.split(":")]
                if len(parts) not in (2, 3):
                    raise ValueError(text)
                start, end = parts[0], parts[1]
                step = parts[2] if len(parts) == 3 else kind(1)
                if step <= 0 or end < start:
                    raise ValueError(text)
                values: list[Any] = []
                value = start
                while value <= end + 1e-9 and len(values) < 10_000:
                    values.append(value)
                    value = value + step
            else:
                values = [kind(p) for p in text.split(",") if p.strip()]
        except ValueError:
            raise argparse.ArgumentTypeError(
                f"invalid load points {text!r}; expected e.g. 1,4,16 or 1:16:4"
            ) from None
        if not values or any(v <= 0 for v in values):
            raise argparse.ArgumentTypeError(f"load points must be > 0, got {text!r}")
        return values

    return parse


def parse_shape(text: str) -> tuple[str, list[int]]:
    name, _, dims = text.rpartition(":")
    try:
        shape = [int(d) for d in dims.split(",")]
    except ValueError:
        shape = []
    if not name or not shape or any(d < 0 for d in shape):
        raise argparse.ArgumentTypeError(
            f"invalid --shape {text!r}; expected NAME:DIMS, e.g. INPUT0:16"
        )
    return name, shape
