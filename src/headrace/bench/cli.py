"""``headrace bench …``: the benchmark subcommands (registered by ``headrace.cli``)."""

from __future__ import annotations

import argparse
import os
from typing import Any

from headrace.bench.preprocess import PREPROCESS_KINDS
from headrace.bench.result_files import result_path
from headrace.errors import InvalidInput

__all__ = ["check_device", "register", "run_pipeline_command"]


def register(subparsers: Any) -> None:
    """Add ``bench`` and its subcommands to the top-level ``headrace`` parser."""
    bench = subparsers.add_parser("bench", help="measure throughput: pipeline overlap and more")
    commands = bench.add_subparsers(dest="bench_command", metavar="STUDY")
    bench.set_defaults(func=lambda args: _help(bench))
    pipeline = commands.add_parser(
        "pipeline",
        help="sequential vs double vs N-way buffering, with and without CPU preprocessing",
    )
    add_pipeline_arguments(pipeline)
    pipeline.set_defaults(func=run_pipeline_command)
    _register_scan_and_monitor(commands)
    # bench report and bench tune (headrace.bench.report_cli, headrace.bench.tune_cli)
    from headrace.bench.report_cli import add_report_command

    add_report_command(commands)
    from headrace.bench.tune_cli import add_tune_command

    add_tune_command(commands)
    # bench load: perf_analyzer-style load generator (headrace.bench.load_cli)
    from headrace.bench.load_cli import add_load_command

    add_load_command(commands)


def _register_scan_and_monitor(commands: Any) -> None:
    """``bench scan`` (throughput vs batch size) and ``bench monitor`` (the resource log)."""
    from headrace.bench import monitor, scan_cli

    scan = commands.add_parser(
        "scan", help="throughput vs batch size, direct (a model instance) or served (--url)"
    )
    scan_cli.add_scan_arguments(scan)
    scan.set_defaults(func=scan_cli.run_scan_command)
    log = commands.add_parser(
        "monitor", help="GPU/CPU/RAM utilisation every 0.25 s to CSV, until stopped"
    )
    monitor.add_arguments(log)
    log.set_defaults(func=monitor.run_command)


def add_pipeline_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--batch-size", type=int, default=256, help="items per batch (default 256)")
    parser.add_argument(
        "--input-shape",
        type=_shape,
        default=(1024,),
        help="per-item shape, e.g. 1024 or 16x512 (default 1024)",
    )
    parser.add_argument("--depth", type=int, default=4, help="matmuls per batch (default 4)")
    parser.add_argument(
        "--num-iterations", type=int, default=200, help="timed batches per worker (default 200)"
    )
    parser.add_argument(
        "--warmup-iterations", type=int, default=10, help="untimed batches first (default 10)"
    )
    parser.add_argument(
        "--num-buffers",
        type=_ints,
        default=(1, 2, 3, 4),
        help="comma list; 1 = sequential (default 1,2,3,4)",
    )
    parser.add_argument(
        "--cpu-delay-ms",
        type=_floats,
        default=(0.0, 5.0),
        help="comma list of simulated CPU preprocessing per batch; 0 = none (default 0,5)",
    )
    parser.add_argument(
        "--preprocess",
        choices=PREPROCESS_KINDS,
        default="sleep",
        help="what --cpu-delay-ms does: sleep (no CPU, GIL free), spin (busy Python loop "
        "holding the GIL) or decode (zlib + numpy decode of a generated payload sized to "
        "the delay, GIL released) (default sleep)",
    )
    parser.add_argument(
        "--no-pin-memory",
        dest="pin_memory",
        action="store_false",
        help="pageable host buffers on a GPU (default: pinned)",
    )
    parser.add_argument(
        "--num-workers", type=int, default=1, help="instances driven in parallel (default 1)"
    )
    parser.add_argument(
        "--workers-backend",
        choices=("threads", "ray"),
        default="threads",
        help="ray: one Ray actor (own pipeline) per worker, scale-out table over 1..N workers "
        "(default threads)",
    )
    parser.add_argument(
        "--ray-address", default="", help="'' = local Ray, auto, ray://host:port (default '')"
    )
    parser.add_argument(
        "--gpus", type=int, default=0, help="N Ray actors with one GPU each (default 0)"
    )
    parser.add_argument(
        "--scaleout",
        action="store_true",
        help="scale-out table with the threads backend (default off)",
    )
    parser.add_argument(
        "--device",
        default="auto",
        help="auto, cpu, cuda or cuda:N (default auto; with --model, auto keeps the model's "
        "instance_group)",
    )
    parser.add_argument(
        "--model",
        default="",
        metavar="REPO/NAME",
        help="study this model's own instances (a repository model or a .onnx file) instead of "
        "the synthetic matmul (default: the matmul)",
    )
    parser.add_argument(
        "--model-version", type=int, default=None, help="with --model (default: newest served)"
    )
    parser.add_argument(
        "--instances",
        type=int,
        default=0,
        help="with --model: instances in all; 0 = the model's instance_group (default 0)",
    )
    parser.add_argument(
        "--repeats", type=int, default=1, help="runs per case; median kept (default 1)"
    )
    parser.add_argument(
        "--torch-threads",
        type=int,
        default=0,
        help="torch intra-op threads; 0 = torch's default (default 0)",
    )
    parser.add_argument(
        "--out",
        default="",
        help="result JSON, replaced if it exists (default: a new pipeline[_MODEL]_<cpu or "
        "gpu>[-N].json in the working directory, never one that exists)",
    )
    parser.add_argument(
        "--no-plot", dest="plot", action="store_false", help="skip the plot (default: plot)"
    )


def run_pipeline_command(args: argparse.Namespace) -> int:
    """Run the study, print the table, write the JSON (and the plot next to it)."""
    from headrace.bench.pipeline import PipelineStudyConfig, run_study, study_device
    from headrace.bench.pipeline_report import (
        plot_results,
        print_table,
        results_document,
        write_json,
    )

    check_device(args.device)
    if args.torch_threads > 0:
        import torch

        torch.set_num_threads(args.torch_threads)
    config = PipelineStudyConfig(
        batch_size=args.batch_size,
        input_shape=args.input_shape,
        depth=args.depth,
        num_iterations=args.num_iterations,
        warmup_iterations=args.warmup_iterations,
        num_buffers=args.num_buffers,
        cpu_delays_ms=args.cpu_delay_ms,
        pin_memory=args.pin_memory,
        num_workers=args.num_workers,
        device=args.device,
        repeats=args.repeats,
        model=args.model,
        model_version=args.model_version,
        instances=args.instances,
        preprocess=args.preprocess,
    )
    if args.model and (args.scaleout or args.gpus or args.workers_backend == "ray"):
        raise InvalidInput(
            "--model studies the model's own instances; drop --scaleout, --gpus and "
            "--workers-backend"
        )
    if args.scaleout or args.gpus or args.workers_backend == "ray":
        from headrace.bench.scaleout import run_scaleout_command

        return run_scaleout_command(args, config)
    results = run_study(config)
    device = study_device(config, results)
    print_table(results, f"{device}, {config.preprocess} preprocessing")
    on_gpu = any(d.startswith("cuda") for case in results for d in case.devices)
    kind = "gpu" if on_gpu or device.startswith("cuda") else "cpu"
    stem = f"pipeline_{os.path.basename(args.model.rstrip('/'))}" if args.model else "pipeline"
    out = args.out or result_path(args, f"{stem}_{kind}")
    write_json(out, results_document(config, device, results))
    print(f"results: {out}")
    if args.plot:
        plot = plot_results(
            os.path.splitext(out)[0] + ".png", results, f"{device}, {config.preprocess}"
        )
        print(f"plot: {plot}" if plot else "plot skipped: matplotlib is not installed")
    return 0


def check_device(device: str) -> None:
    """Refuse a GPU that is not there in one line, before anything starts."""
    from headrace.devices import available_gpus, resolve_device

    concrete = resolve_device(device)  # 'cuda' without a GPU is refused here
    if concrete.startswith("cuda:"):
        gpus = available_gpus()
        index = concrete.partition(":")[2]
        if not index.isdigit() or int(index) not in gpus:
            seen = f"GPUs {list(gpus)}" if gpus else "no GPU"
            raise InvalidInput(f"--device {device}: torch sees {seen}")


def _help(parser: argparse.ArgumentParser) -> int:
    parser.print_help()
    return 2


def _shape(text: str) -> tuple[int, ...]:
    try:
        return tuple(int(part) for part in text.lower().replace(",", "x").split("x"))
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"invalid shape {text!r}; expected e.g. 1024 or 16x512"
        ) from None


def _ints(text: str) -> tuple[int, ...]:
    try:
        return tuple(int(part) for part in text.split(","))
    except ValueError:
        raise argparse.ArgumentTypeError(f"invalid integer list {text!r}") from None


def _floats(text: str) -> tuple[float, ...]:
    try:
        return tuple(float(part) for part in text.split(","))
    except ValueError:
        raise argparse.ArgumentTypeError(f"invalid number list {text!r}") from None
