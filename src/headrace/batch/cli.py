"""``headrace run MODEL DATA --out OUT``: offline inference on this machine or on Ray.

MODEL is a model directory in a repository (``REPO/NAME``) or a bare ``.onnx`` file. DATA is
a ``.npy``/``.npz`` file, a ``.parquet`` file or folder, an HDF5 file (``x.h5`` or
``x.h5:/group``), a folder of images, or ``seeds:START:STOP``. Rerunning the same command
resumes; a changed model, input or output option is refused unless ``--overwrite``.
"""

from __future__ import annotations

import argparse
import sys
from typing import Any

from headrace.errors import InvalidInput

__all__ = ["add_arguments", "build_parser", "job_from_args", "register", "run_command"]


def register(subparsers: Any) -> None:
    """Add the ``run`` subcommand."""
    parser = subparsers.add_parser(
        "run",
        help="run a model over a dataset (offline batch inference)",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    add_arguments(parser)


def build_parser() -> argparse.ArgumentParser:
    """A stand-alone parser for ``headrace run``'s arguments (those after ``run``)."""
    parser = argparse.ArgumentParser(
        prog="headrace run",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    add_arguments(parser)
    return parser


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """``headrace run``'s arguments and handler, on ``parser``."""
    parser.add_argument("model", metavar="MODEL", help="REPO/NAME model directory or a .onnx file")
    parser.add_argument("data", metavar="DATA", help="input file, folder or seeds:START:STOP")
    parser.add_argument(
        "--out", required=True, help="output folder (holds manifest.json); required"
    )
    parser.add_argument(
        "--model-version",
        type=int,
        default=None,
        help="the version to run (default: the newest served)",
    )
    run = parser.add_argument_group("execution")
    run.add_argument(
        "--batch-size",
        type=int,
        default=0,
        help="rows per model call; 0 = 256, or the model's max_batch_size when smaller (default 0)",
    )
    run.add_argument(
        "--shard-size", type=int, default=0, help="rows per output shard (default 64 batches)"
    )
    run.add_argument(
        "--instances",
        type=int,
        default=0,
        help="model instances (local) or actors (Ray); 0 = the model's instance_group (default 0)",
    )
    run.add_argument(
        "--num-buffers",
        type=int,
        default=2,
        help="batches in flight per instance (default %(default)s)",
    )
    run.add_argument(
        "--device",
        default="",
        help="auto, cpu, cuda (round-robin over GPUs) or cuda:N; '' = the model's "
        "instance_group (default '')",
    )
    run.add_argument("--readers", type=int, default=2, help="reader threads (default %(default)s)")
    data = parser.add_argument_group("input")
    data.add_argument(
        "--columns", default="", help="comma-separated columns to read (default: all)"
    )
    data.add_argument(
        "--image-size", default="", help="resize images to HxW, e.g. 224x224 (default: as stored)"
    )
    data.add_argument(
        "--decode-threads", type=int, default=4, help="image decoding threads (default %(default)s)"
    )
    data.add_argument(
        "--map",
        action="append",
        default=[],
        metavar="INPUT=COLUMN",
        help="feed COLUMN to model input INPUT (repeatable; default: inputs take the columns "
        "of their names, and a one-input model a batch's only column)",
    )
    data.add_argument(
        "--preprocess",
        default="",
        metavar="MODULE:FUNCTION",
        help="per-batch hook: dict of arrays in, dict of arrays out (default: none)",
    )
    output = parser.add_argument_group("output")
    output.add_argument(
        "--format",
        default="parquet",
        choices=("parquet", "npy", "images"),
        help="how results are stored (default %(default)s)",
    )
    output.add_argument(
        "--outputs", default="", help="comma-separated outputs to keep (default: all)"
    )
    output.add_argument(
        "--value-range",
        default="0,1",
        help="float range mapped to 0..255 for images (default %(default)s)",
    )
    output.add_argument(
        "--overwrite", action="store_true", help="replace a different job's results"
    )
    output.add_argument("--quiet", action="store_true", help="no progress bar")
    ray = parser.add_argument_group("ray")
    ray.add_argument("--ray", action="store_true", help="run as a Ray Data pipeline on a local Ray")
    ray.add_argument(
        "--ray-address",
        default="",
        help="auto or ray://host:10001 (implies --ray; default: a local Ray)",
    )
    ray.add_argument(
        "--num-gpus", type=float, default=0.0, help="GPUs per actor, fractions allowed (default 0)"
    )
    ray.add_argument("--num-cpus", type=int, default=0, help="CPUs for a local Ray (default: all)")
    parser.set_defaults(func=_run)


def job_from_args(args: argparse.Namespace) -> Any:
    """The :class:`~headrace.batch.job.Job` an argument namespace describes."""
    from headrace.batch.dataset import DataSpec
    from headrace.batch.job import Job, JobOptions
    from headrace.repository.resolve import ModelSource

    options = JobOptions(
        batch_size=args.batch_size,
        shard_size=args.shard_size,
        instances=args.instances,
        num_buffers=args.num_buffers,
        device=args.device,
        readers=args.readers,
        format=args.format,
        outputs=_names(args.outputs),
        rename=tuple(_pair(item) for item in args.map),
        preprocess=args.preprocess,
        value_range=_range(args.value_range),
        overwrite=args.overwrite,
        progress=not args.quiet and sys.stderr.isatty(),
    )
    data = DataSpec(args.data, _names(args.columns), _size(args.image_size), args.decode_threads)
    return Job(ModelSource(args.model, args.model_version), data, args.out, options)


def run_from_args(args: argparse.Namespace) -> Any:
    """Run the job parsed ``args`` describe, locally or on Ray; returns its RunSummary."""
    job = job_from_args(args)
    if args.ray or args.ray_address:
        from headrace.batch.ray_runner import RayOptions, run_ray

        return run_ray(
            job,
            RayOptions(
                address=args.ray_address, num_gpus=args.num_gpus, num_cpus=args.num_cpus or None
            ),
        )
    from headrace.batch.local import run_local

    return run_local(job)


def run_command(argv: list[str]) -> Any:
    """``headrace run ...`` in this process (``argv`` starts with ``run``); its RunSummary."""
    if not argv or argv[0] != "run":
        raise InvalidInput(f"run_command expects arguments starting with 'run', got {argv[:1]}")
    return run_from_args(build_parser().parse_args(argv[1:]))


def _run(args: argparse.Namespace) -> int:
    try:
        summary = run_from_args(args)
    except KeyboardInterrupt:
        print(f"headrace: interrupted; {_saved(args.out)}", file=sys.stderr)
        return 130
    if summary.rows == 0 and summary.shards_skipped and not summary.shards_written:
        print(
            f"already complete: all {summary.shards_skipped} shards of this job are in "
            f"{summary.out_dir}; nothing to do (pass --overwrite to compute them again)"
        )
        return 0
    print(
        f"{summary.rows} rows in {summary.seconds:.2f}s ({summary.rows_per_second:,.0f} rows/s); "
        f"{summary.shards_written} shards written, {summary.shards_skipped} already done, "
        f"{summary.instances} model instances -> {summary.out_dir}"
    )
    return 0


def _saved(out_dir: str) -> str:
    """How far an interrupted job got, and how to go on."""
    from headrace.batch.manifest import Manifest

    try:
        manifest = Manifest.load(out_dir)
    except InvalidInput:
        manifest = None
    done = (
        f"{len(manifest.shards)} of {manifest.num_shards} shards are saved in {out_dir}"
        if manifest is not None
        else "no shard was saved"
    )
    return f"{done}; run the same command again to resume"


def _names(text: str) -> tuple[str, ...]:
    return tuple(part.strip() for part in text.split(",") if part.strip())


def _pair(text: str) -> tuple[str, str]:
    name, sep, column = text.partition("=")
    if not sep or not name or not column:
        raise InvalidInput(f"--map expects INPUT=COLUMN, got {text!r}")
    return name, column


def _size(text: str) -> tuple[int, ...]:
    if not text:
        return ()
    try:
        height, width = (int(part) for part in text.lower().split("x"))
    except ValueError:
        raise InvalidInput(f"--image-size expects HxW (e.g. 224x224), got {text!r}") from None
    return (height, width)


def _range(text: str) -> tuple[float, float]:
    try:
        low, high = (float(part) for part in text.split(","))
    except ValueError:
        raise InvalidInput(f"--value-range expects LOW,HIGH (e.g. -1,1), got {text!r}") from None
    if high <= low:
        raise InvalidInput(f"--value-range needs LOW < HIGH, got {text!r}")
    return (low, high)
