"""``headrace bench tune MODEL_DIR``: search the config space, report the front, write the pick."""

from __future__ import annotations

import argparse
import datetime
import json
import os
import sys
from pathlib import Path
from typing import Any

from headrace.errors import InvalidInput

__all__ = ["add_tune_command", "run_tune_command"]

_DEFAULT_OUT = os.path.join("benchmarks", "results", "bench_tune.json")


def add_tune_command(commands: Any) -> None:
    """Register ``bench tune`` on the ``bench`` subparsers."""
    from headrace.bench.tune import COST_FUNCTIONS

    p = commands.add_parser(
        "tune",
        help="instances x max batch size x queue delay x threads x concurrency on a served "
        "model: "
        "Pareto front of throughput vs p99 and the cheapest config.pbtxt under a p99 bound",
    )
    p.add_argument("model_dir", metavar="MODEL_DIR", help="the model's folder in a repository")
    p.add_argument("--instances", type=_ints, default=(1, 2), help="instance counts (default 1,2)")
    p.add_argument(
        "--max-batch-sizes",
        type=_ints,
        default=(8, 64),
        help="max_batch_size values (default 8,64)",
    )
    p.add_argument(
        "--queue-delays-us",
        type=_ints,
        default=(0, 500),
        help="dynamic_batching max_queue_delay_microseconds values (default 0,500)",
    )
    p.add_argument(
        "--intra-op-threads",
        type=_ints,
        default=(0, 1),
        help="onnxruntime models: compute threads per instance (intra_op_thread_count), "
        "0 = the backend's share, usable cores / CPU instances; other models search 0 only "
        "(default 0,1)",
    )
    p.add_argument(
        "--concurrency", type=_ints, default=(4, 16), help="client concurrencies (default 4,16)"
    )
    p.add_argument(
        "--p99-ms", type=float, default=50.0, help="p99 latency bound in ms (default 50)"
    )
    p.add_argument(
        "--cost",
        choices=COST_FUNCTIONS,
        default=COST_FUNCTIONS[0],
        help="what the chosen point minimises; device-seconds on a CPU are the server's "
        f"CPU-seconds (default {COST_FUNCTIONS[0]})",
    )
    p.add_argument(
        "--budget-s",
        type=float,
        default=300.0,
        help="stop starting settings after this (default 300)",
    )
    p.add_argument(
        "--measurement-ms", type=int, default=2000, help="each load window (default 2000)"
    )
    p.add_argument(
        "--side-by-side-rounds",
        type=int,
        default=3,
        help="after the search, serve the pick and the model's own config at once and load "
        "them in turns this many times each, at the pick's concurrency and the model's "
        "best one (default 3; 0: skip)",
    )
    p.add_argument(
        "--generator",
        choices=("auto", "perf_analyzer", "headrace", "client"),
        default="auto",
        help="load generator: auto is perf_analyzer when found, else headrace's own (bench "
        "load's; 'client' is an older name for it) (default auto)",
    )
    p.add_argument(
        "--shape",
        action="append",
        default=[],
        metavar="NAME:D1,D2",
        help="dims for an input with -1 dims (default 16 for each -1)",
    )
    p.add_argument(
        "--write-config",
        default="",
        metavar="PATH",
        help="write the chosen config.pbtxt here (default: not written; the model's own file "
        "only if PATH names it)",
    )
    p.add_argument(
        "--out", default="", help=f"result JSON (default {_DEFAULT_OUT}, never overwritten)"
    )
    p.set_defaults(func=run_tune_command)


def run_tune_command(args: argparse.Namespace) -> int:
    from headrace.backends.threads import usable_cpus
    from headrace.bench.tune import choose, grid
    from headrace.bench.tune_report import print_table, tune_document, write_new
    from headrace.bench.tune_run import (
        TuneOptions,
        apply_setting,
        model_setting,
        run_tune,
        tunes_threads,
    )
    from headrace.config.text import format_config, read_config

    model_dir = Path(args.model_dir)
    config_path = model_dir / "config.pbtxt"
    if not config_path.is_file():
        raise InvalidInput(f"bench tune: {str(model_dir)!r} has no config.pbtxt")
    config = read_config(str(config_path))
    threads = args.intra_op_threads
    if not tunes_threads(config) and any(threads):
        print(
            f"bench tune: model {config.name!r} is not an onnxruntime model; "
            "--intra-op-threads searches 0 only",
            file=sys.stderr,
        )
        threads = (0,)
    options = TuneOptions(
        model_dir=model_dir,
        instances=args.instances,
        max_batch_sizes=args.max_batch_sizes,
        queue_delays_us=args.queue_delays_us,
        intra_op_threads=threads,
        concurrencies=args.concurrency,
        measurement_ms=args.measurement_ms,
        budget_s=args.budget_s,
        generator=args.generator,
        shapes=dict(_shape(text) for text in args.shape),
    )
    baseline = model_setting(config)
    settings = grid(
        options.instances,
        options.max_batch_sizes,
        options.queue_delays_us,
        baseline,
        options.intra_op_threads,
        cores=usable_cpus(),
    )

    measurements = run_tune(options, settings, baseline, _progress)
    choice = choose(measurements, args.p99_ms, args.cost)
    side_by_side = _side_by_side(args, options, measurements, choice, baseline)
    written = ""
    if args.write_config and choice.best is not None:
        chosen = measurements[choice.best].setting
        text = format_config(config if chosen == baseline else apply_setting(config, chosen))
        Path(args.write_config).parent.mkdir(parents=True, exist_ok=True)
        Path(args.write_config).write_text(text, encoding="utf-8")
        written = args.write_config
    document = tune_document(
        model=config.name,
        model_dir=str(model_dir),
        command=["headrace", *sys.argv[1:]],
        options=options,
        measurements=measurements,
        choice=choice,
        p99_ms_bound=args.p99_ms,
        cost_function=args.cost,
        written_config=written,
        side_by_side=side_by_side,
        created=datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
    )
    print_table(document)
    out = write_new(args.out or _DEFAULT_OUT, json.dumps(document, indent=2) + "\n", args.out)
    print(f"results: {out}")
    if written:
        print(f"config: {written}")
    elif choice.best is None:
        print(f"no point met --p99-ms {args.p99_ms:g}; nothing chosen")
    return 0


def _side_by_side(
    args: argparse.Namespace, options: Any, measurements: Any, choice: Any, baseline: Any
) -> list[dict[str, Any]]:
    """The pick against the model's own config, in turns, at each concurrency that matters."""
    from headrace.bench.tune_run import run_side_by_side
    from headrace.errors import HeadraceError

    if args.side_by_side_rounds < 1 or choice.best is None:
        return []
    chosen = measurements[choice.best]
    if chosen.setting == baseline:
        return []  # the model's own config won: nothing to compare it with
    concurrencies = [chosen.concurrency]
    if choice.baseline is not None:
        concurrencies.append(measurements[choice.baseline].concurrency)
    out = []
    for concurrency in sorted(set(concurrencies)):
        print(f"side by side at c={concurrency}:", file=sys.stderr, flush=True)
        try:
            pair = run_side_by_side(
                options,
                chosen.setting,
                baseline,
                concurrency,
                args.side_by_side_rounds,
                _progress,
            )
        except HeadraceError as exc:
            out.append({"concurrency": concurrency, "error": str(exc)[-600:]})
            continue
        out.append(pair.as_dict(args.cost, args.p99_ms))
    return out


def _progress(m: Any) -> None:
    what = f"{m.throughput:.1f}/s p99 {m.p99_ms:.2f} ms" if m.ok else m.error[:120]
    print(f"  {m.setting.as_dict()} c={m.concurrency}: {what}", file=sys.stderr, flush=True)


def _ints(text: str) -> tuple[int, ...]:
    try:
        return tuple(int(part) for part in text.split(","))
    except ValueError:
        raise argparse.ArgumentTypeError(f"invalid integer list {text!r}") from None


def _shape(text: str) -> tuple[str, tuple[int, ...]]:
    name, _, dims = text.rpartition(":")
    try:
        return name, tuple(int(d) for d in dims.split(","))
    except ValueError:
        raise InvalidInput(f"--shape {text!r}: expected NAME:D1,D2") from None
