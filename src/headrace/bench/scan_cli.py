"""``headrace bench scan MODEL…``: its arguments, where its models come from, its output.

A MODEL is a model directory (``REPO/NAME``), a ``.onnx`` file, or a NAME inside
``--repository DIR``. A bare name of an example model (``particlenet``) with no
``--repository`` builds the examples repository in a temporary directory first. Without
``--url`` the scan is direct; each ``--url`` adds a served scan of every MODEL (by its
directory's name) on that server, and ``--direct`` keeps the direct one beside them.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import sys
import tempfile
from collections.abc import Iterator, Sequence

from headrace.bench.scan import ScanOptions, Target, run_scan
from headrace.errors import InvalidInput

__all__ = ["add_scan_arguments", "parse_url", "run_scan_command"]

DEFAULT_BATCH_SIZES = (1, 2, 4, 8, 16, 32, 64)


def add_scan_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "models",
        nargs="+",
        metavar="MODEL",
        help="REPO/NAME, a .onnx file, a NAME in --repository, or an example's name "
        "(particlenet) to scan the examples repository",
    )
    parser.add_argument(
        "--repository",
        default="",
        metavar="DIR",
        help="repository holding bare MODEL names (default: none; example names build the "
        "examples repository in a temporary directory)",
    )
    parser.add_argument(
        "--url",
        action="append",
        default=[],
        help="served scan of every MODEL: http://HOST:PORT, grpc://HOST:PORT, or HOST:PORT "
        "with --protocol; repeat for several (default: none, a direct scan)",
    )
    parser.add_argument(
        "--protocol",
        choices=("http", "grpc"),
        default="http",
        help="protocol of a --url without a scheme (default http)",
    )
    parser.add_argument(
        "--direct",
        action="store_true",
        help="with --url: also scan each MODEL directly, alternating with the served scans "
        "(default: direct only when there is no --url)",
    )
    parser.add_argument(
        "--batch-sizes",
        type=_ints,
        default=DEFAULT_BATCH_SIZES,
        help="comma list (default " + ",".join(map(str, DEFAULT_BATCH_SIZES)) + ")",
    )
    parser.add_argument(
        "--trials", type=int, default=100, help="timed trials per point (default 100)"
    )
    parser.add_argument(
        "--warmup", type=int, default=5, help="untimed trials first, per point (default 5)"
    )
    parser.add_argument(
        "--device",
        default="auto",
        help="direct scans: auto, cpu, cuda or cuda:N (default auto: the model's instance_group)",
    )
    parser.add_argument(
        "--model-version", type=int, default=None, help="version to scan (default: newest)"
    )
    parser.add_argument(
        "--torch-threads",
        type=int,
        default=0,
        help="torch intra-op threads of direct scans; 0 = torch's default (default 0)",
    )
    parser.add_argument(
        "--monitor",
        action="store_true",
        help="log GPU/CPU/RAM every 0.25 s beside the study to OUT_monitor.csv (default off)",
    )
    parser.add_argument(
        "--out",
        default="",
        help="result JSON, replaced if it exists (default benchmarks/results/"
        "bench_scan_MODEL_<cpu, gpu or served>.json, never replacing a file: _2, _3… are added)",
    )
    parser.add_argument(
        "--no-plot", dest="plot", action="store_false", help="skip the plot (default: plot)"
    )


def parse_url(url: str, default_protocol: str) -> tuple[str, str]:
    """``(protocol, host:port)`` of a ``--url``."""
    for protocol in ("http", "grpc"):
        prefix = f"{protocol}://"
        if url.startswith(prefix):
            return protocol, url[len(prefix) :].rstrip("/")
    if "://" in url:
        raise InvalidInput(f"--url {url!r}: expected http://, grpc:// or HOST:PORT")
    return default_protocol, url


def run_scan_command(args: argparse.Namespace) -> int:
    """Open every target, scan, print the table, write the JSON (and monitor CSV and plot)."""
    from headrace.bench.scan_report import (
        free_path,
        plot_scan,
        print_table,
        scan_document,
        write_json,
    )

    if args.torch_threads > 0:
        import torch

        torch.set_num_threads(args.torch_threads)
    options = ScanOptions(tuple(args.batch_sizes), args.trials, args.warmup)
    options.validate()
    urls = [parse_url(url, args.protocol) for url in args.url]
    with contextlib.ExitStack() as stack:
        paths = stack.enter_context(
            _model_paths(args.models, args.repository, need=not urls or args.direct)
        )
        targets = _open_targets(stack, args, options, paths, urls)
        kind = _kind(targets)
        name = os.path.basename(args.models[0].rstrip("/"))
        out = args.out or free_path(
            os.path.join("benchmarks", "results", f"bench_scan_{_stem(name)}_{kind}.json")
        )
        monitor = None
        if args.monitor:
            from headrace.bench.monitor import run_alongside

            csv_path = os.path.splitext(out)[0] + "_monitor.csv"
            monitor = stack.enter_context(run_alongside(csv_path))
            print(f"monitor: {csv_path} ({monitor.gpu})")
        points = run_scan(targets, options)
    devices = sorted({t.device for t in targets if t.device})
    title = "batch-size scan" + (f" on {', '.join(devices)}" if devices else "")
    print_table(points, title)
    document = scan_document(
        targets,
        options,
        points,
        command=_command_line(args),
        monitor=monitor.as_dict() if monitor else None,
    )
    write_json(out, document)
    print(f"results: {out}")
    if args.plot:
        plot = plot_scan(os.path.splitext(out)[0] + ".png", points, title)
        print(f"plot: {plot}" if plot else "plot skipped: matplotlib is not installed")
    return 0


def _kind(targets: Sequence[Target]) -> str:
    """The result name's suffix: where the direct scans ran, or ``served`` (the server's
    device is its own business)."""
    devices = [t.device for t in targets if t.device]
    if not devices:
        return "served"
    return "gpu" if any(device.startswith("cuda") for device in devices) else "cpu"


def _command_line(args: argparse.Namespace) -> list[str]:
    """The study's command with every option spelled out (defaults included)."""
    words = ["headrace", "bench", "scan", *args.models]
    if args.repository:
        words += ["--repository", args.repository]
    for url in args.url:
        words += ["--url", url]
    if args.url:
        words += ["--protocol", args.protocol] + (["--direct"] if args.direct else [])
    words += ["--batch-sizes", ",".join(map(str, args.batch_sizes))]
    words += ["--trials", str(args.trials), "--warmup", str(args.warmup)]
    words += ["--device", args.device, "--torch-threads", str(args.torch_threads)]
    if args.model_version is not None:
        words += ["--model-version", str(args.model_version)]
    return words + (["--monitor"] if args.monitor else [])


def _open_targets(
    stack: contextlib.ExitStack,
    args: argparse.Namespace,
    options: ScanOptions,
    paths: Sequence[str],
    urls: Sequence[tuple[str, str]],
) -> list[Target]:
    from headrace.bench.scan_direct import direct_target
    from headrace.bench.scan_served import served_target

    targets = []
    version = "" if args.model_version is None else str(args.model_version)
    for model, path in zip(args.models, paths):
        if path:
            targets.append(
                stack.enter_context(
                    direct_target(
                        path,
                        max(options.batch_sizes),
                        device=args.device,
                        version=args.model_version,
                    )
                )
            )
        for protocol, url in urls:
            served = os.path.basename(model.rstrip("/"))
            targets.append(
                stack.enter_context(served_target(url, protocol, _stem(served), version=version))
            )
    return targets


@contextlib.contextmanager
def _model_paths(models: Sequence[str], repository: str, *, need: bool) -> Iterator[list[str]]:
    """A local path per MODEL ('' for none when no direct scan needs one)."""
    if not need:
        yield ["" for _ in models]
        return
    from headrace.repository.examples import EXAMPLE_MODELS

    paths = []
    examples_dir = ""
    with contextlib.ExitStack() as stack:
        for model in models:
            if repository:
                paths.append(os.path.join(repository, model))
            elif os.path.exists(model):
                paths.append(model)
            elif model in EXAMPLE_MODELS:
                if not examples_dir:
                    examples_dir = stack.enter_context(tempfile.TemporaryDirectory())
                    _build_examples(examples_dir)
                paths.append(os.path.join(examples_dir, "repo", model))
            else:
                raise InvalidInput(
                    f"model {model!r} is not a path, and not an example ("
                    f"{', '.join(EXAMPLE_MODELS)}); pass REPO/NAME or --repository DIR"
                )
        yield paths


def _build_examples(directory: str) -> None:
    from headrace.repository.examples import create_examples_repository

    print(f"building the examples repository in {directory} …", file=sys.stderr)
    create_examples_repository(os.path.join(directory, "repo"))


def _stem(name: str) -> str:
    return os.path.splitext(name)[0] if name.endswith(".onnx") else name


def _ints(text: str) -> tuple[int, ...]:
    try:
        return tuple(int(part) for part in text.split(","))
    except ValueError:
        raise argparse.ArgumentTypeError(f"invalid integer list {text!r}") from None
