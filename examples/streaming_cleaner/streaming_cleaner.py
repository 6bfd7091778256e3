"""Stream a multichannel series through the streaming detector: latency and throughput.

    python examples/streaming_cleaner/streaming_cleaner.py                  # 4 streams, real time
    python examples/streaming_cleaner/streaming_cleaner.py --streams 8 --rate 20 --duration 30
    python examples/streaming_cleaner/streaming_cleaner.py --offline        # a recorded archive
    python examples/streaming_cleaner/streaming_cleaner.py --url 127.0.0.1:8001   # a running server
    python examples/streaming_cleaner/streaming_cleaner.py --tiny           # seconds (smoke test)

Steps: build the examples repository (``headrace examples create``) and start ``headrace
serve`` on it (unless ``--url`` names a running server); stream one-second updates of two
channels (synthetic: noise, a power line, the occasional chirp; ``strain.py``) from
``--streams`` clients, each on its own sequence, through the ``streaming_detector`` ensemble
(snapshotter -> strain_cleaner -> strain_detector) over gRPC streaming or HTTP; report the
per-update latency p50/p99 and the throughput; compare the first answers of stream 0 with the
torch modules run here on the snapshots the server should hold.
"""

from __future__ import annotations

import argparse
import json
import os
import shlex
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path

import numpy as np
from strain import StrainSource, record_archive
from stream_load import MODEL, Answer, LoadPlan, LoadResult, expected_snapshots, run_load, warm_up

from headrace.repository.examples import (
    STREAM_CHANNELS,
    STREAM_CLEANER_SEED,
    STREAM_DETECTOR_SEED,
    STREAM_SNAPSHOT,
    STREAM_UPDATE,
)

TINY_ENV = "HEADRACE_EXAMPLE_TINY"
START_TIMEOUT_S = 120.0
STOP_TIMEOUT_S = 30.0
TOLERANCE = 1e-4


@dataclass(frozen=True)
class Result:
    """What one run measured, and how the checked answers compare with torch."""

    mode: str
    protocol: str
    streams: int
    answered: int
    errors: int
    updates_per_second: float
    samples_per_second: float
    p50_ms: float
    p99_ms: float
    checked: int
    max_abs_diff: float
    json_path: Path


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--workdir", default="headrace-example-streaming-cleaner")
    parser.add_argument(
        "--tiny", action="store_true", default=os.environ.get(TINY_ENV) == "1",
        help=f"2 streams for about a second (also {TINY_ENV}=1)",
    )  # fmt: skip
    parser.add_argument("--streams", type=int, default=0, help="concurrent streams (4)")
    parser.add_argument(
        "--rate", type=float, default=0.0,
        help="updates per second per stream (1.0: real time, as the data would arrive)",
    )  # fmt: skip
    parser.add_argument(
        "--duration", type=float, default=0.0, help="seconds at most (30; offline: 120)"
    )
    parser.add_argument(
        "--updates", type=int, default=0,
        help="updates per stream at most (live: no limit but --duration; offline: 600)",
    )  # fmt: skip
    parser.add_argument(
        "--offline", action="store_true",
        help="replay a recorded archive, each stream as fast as the server answers",
    )  # fmt: skip
    parser.add_argument("--protocol", choices=("grpc", "http"), default="grpc")
    parser.add_argument(
        "--max-in-flight", type=int, default=4,
        help="unanswered updates per gRPC stream (offline: 1)",
    )  # fmt: skip
    parser.add_argument(
        "--url", default="", help="host:port of a running server (gRPC or HTTP, per --protocol)"
    )
    parser.add_argument(
        "--first-sequence-id", type=int, default=1, help="stream s uses this id + s"
    )
    parser.add_argument("--check", type=int, default=8, help="answers of stream 0 to check")
    parser.add_argument("--json", default="", help="result file (WORKDIR/result.json)")
    parser.add_argument(
        "--threads", type=int, default=0, help="torch CPU threads here (0: torch's default)"
    )
    args = parser.parse_args(argv)
    args.streams = args.streams or (2 if args.tiny else 4)
    if args.offline:
        args.rate = None
        args.duration = args.duration or (10.0 if args.tiny else 120.0)
        args.updates = args.updates or (12 if args.tiny else 600)
        args.max_in_flight = 1
    else:
        args.rate = args.rate or (20.0 if args.tiny else 1.0)
        args.duration = args.duration or (1.5 if args.tiny else 30.0)
        args.updates = args.updates or 1_000_000_000
    return args


@contextmanager
def headrace_serve(workdir: Path) -> Iterator[dict[str, int]]:
    """The examples repository in WORKDIR/models, served on free 127.0.0.1 ports meanwhile."""
    from headrace.repository.examples import create_examples_repository

    repository = workdir / "models"
    if not (repository / MODEL / "config.pbtxt").is_file():
        print(f"$ headrace examples create {repository}", flush=True)
        create_examples_repository(repository, force=True)
    ports_file = workdir / "ports.json"
    ports_file.unlink(missing_ok=True)
    command = [
        sys.executable, "-m", "headrace.cli", "serve", str(repository),
        "--host", "127.0.0.1", "--http-port", "0", "--grpc-port", "0", "--metrics-port", "0",
        "--model-control-mode", "explicit", "--load-model", MODEL,
        "--ports-file", str(ports_file),
    ]  # fmt: skip
    print("$ headrace " + shlex.join(command[3:]), flush=True)
    with open(workdir / "serve.log", "wb") as log:
        process = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT)
    try:
        yield _wait_ready(process, ports_file, workdir / "serve.log")
    finally:
        if process.poll() is None:
            process.send_signal(signal.SIGTERM)
        try:
            process.wait(timeout=STOP_TIMEOUT_S)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


def _wait_ready(process: subprocess.Popen[bytes], ports_file: Path, log: Path) -> dict[str, int]:
    deadline = time.monotonic() + START_TIMEOUT_S
    while time.monotonic() < deadline:
        if ports_file.is_file():
            ports: dict[str, int] = json.loads(ports_file.read_text())
            url = f"http://127.0.0.1:{ports['http']}/v2/models/{MODEL}/ready"
            try:
                with urllib.request.urlopen(url, timeout=2):
                    return ports
            except (urllib.error.URLError, OSError):
                pass
        try:  # the pause between probes, cut short if the server dies
            code = process.wait(timeout=0.25)
        except subprocess.TimeoutExpired:
            continue
        raise SystemExit(f"headrace serve exited with {code}:\n{log.read_text()[-3000:]}")
    raise SystemExit(f"headrace serve not ready in {START_TIMEOUT_S:.0f} s; see {log}")


def check(kept: list[Answer]) -> float:
    """The largest difference between the kept answers and the torch modules' outputs on the
    snapshots the snapshotter should hold (stream 0's first updates, in order)."""
    import torch

    from headrace.repository.example_models import StrainCleaner, StrainDetector, seeded

    if not kept:
        return 0.0
    if [a.index for a in kept] != list(range(len(kept))):
        raise SystemExit(
            f"kept answers are not stream 0's first updates: {[a.index for a in kept]}"
        )
    cleaner = seeded(StrainCleaner, STREAM_CLEANER_SEED)
    detector = seeded(StrainDetector, STREAM_DETECTOR_SEED)
    snapshots = expected_snapshots([a.update for a in kept], STREAM_SNAPSHOT)
    worst = 0.0
    with torch.inference_mode():
        for answer, snapshot in zip(kept, snapshots):
            cleaned = cleaner(torch.from_numpy(snapshot))
            probability = detector(cleaned)
            worst = max(
                worst,
                float(np.abs(answer.cleaned - cleaned.numpy()).max()),
                float(np.abs(answer.probability - probability.numpy()).max()),
            )
    return worst


def archive(workdir: Path, streams: int, updates: int) -> np.ndarray:
    """The recorded archive (``archive.npy``, seed 0), reused while its shape is unchanged."""
    path = workdir / "archive.npy"
    shape = (streams, updates, STREAM_CHANNELS, STREAM_UPDATE)
    if path.is_file():
        data = np.load(path, mmap_mode="r")
        if data.shape == shape:
            return np.asarray(data)
    data = record_archive(streams, updates, channels=STREAM_CHANNELS, update_size=STREAM_UPDATE)
    np.save(path, data)
    return data


def stream(args: argparse.Namespace, workdir: Path, url: str) -> LoadResult:
    plan = LoadPlan(
        url=url,
        protocol=args.protocol,
        streams=args.streams,
        rate=args.rate,
        duration_s=args.duration,
        updates=args.updates,
        max_in_flight=args.max_in_flight,
        first_sequence_id=args.first_sequence_id,
        keep=args.check,
    )
    warm_up(plan, (STREAM_CHANNELS, STREAM_UPDATE))
    if args.offline:
        data = archive(workdir, args.streams, args.updates)
        print(f"replaying {data.shape[1]} updates of {args.streams} recorded streams", flush=True)
        return run_load(plan, lambda s, i: data[s, i])
    sources = [StrainSource(seed) for seed in range(args.streams)]
    print(f"{args.streams} live streams at {args.rate:g} updates/s each", flush=True)
    return run_load(plan, lambda s, i: sources[s].next_update())


def report(args: argparse.Namespace, result: LoadResult, max_diff: float, path: Path) -> None:
    from rich.console import Console
    from rich.table import Table

    from headrace.bench.machine import machine_info

    mode = "offline" if args.offline else "live"
    summary = result.summary()
    table = Table(title=f"streaming_detector, {mode}, {args.protocol}")
    for column in ("streams", "rate/stream", "answered", "errors", "late", "updates/s"):
        table.add_column(column, justify="right")
    for column in ("samples/s", "p50 ms", "p99 ms", "client CPU s"):
        table.add_column(column, justify="right")
    table.add_row(
        str(args.streams),
        "max" if args.rate is None else f"{args.rate:g}",
        str(result.answered),
        str(len(result.errors)),
        str(result.late),
        f"{result.updates_per_s:,.1f}",
        f"{result.samples_per_s:,.0f}",
        f"{summary['latency_ms']['p50']:.2f}",
        f"{summary['latency_ms']['p99']:.2f}",
        f"{result.client_cpu_s:.2f}",
    )
    Console(width=120).print(table)
    document = {
        "example": "streaming_cleaner",
        "date": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "command": shlex.join(sys.argv),
        "mode": mode,
        "url": result.plan.url,
        "load": summary,
        "check": {"answers": len(result.kept), "max_abs_diff": max_diff},
        "machine": machine_info(),
    }
    path.write_text(json.dumps(document, indent=1) + "\n")
    print(f"results: {path}")


def run(args: argparse.Namespace) -> Result:
    """Serve (unless --url), stream, check, report."""
    if args.threads:
        import torch

        torch.set_num_threads(args.threads)
    workdir = Path(args.workdir).resolve()
    workdir.mkdir(parents=True, exist_ok=True)
    if args.url:
        result = stream(args, workdir, args.url)
    else:
        with headrace_serve(workdir) as ports:
            result = stream(args, workdir, f"127.0.0.1:{ports[args.protocol]}")
    if args.offline:
        probabilities = np.full((args.streams, args.updates), np.nan, np.float32)
        for number, answered in enumerate(result.probabilities):
            for index, value in answered.items():
                probabilities[number, index] = value
        np.save(workdir / "probabilities.npy", probabilities)
    max_diff = check(result.kept)
    path = Path(args.json) if args.json else workdir / "result.json"
    report(args, result, max_diff, path)
    return Result(
        mode="offline" if args.offline else "live",
        protocol=args.protocol,
        streams=args.streams,
        answered=result.answered,
        errors=len(result.errors),
        updates_per_second=result.updates_per_s,
        samples_per_second=result.samples_per_s,
        p50_ms=result.percentile_ms(50),
        p99_ms=result.percentile_ms(99),
        checked=len(result.kept),
        max_abs_diff=max_diff,
        json_path=path,
    )


def main(argv: Sequence[str] | None = None) -> int:
    result = run(parse_args(argv))
    print(f"{result.checked} answers of stream 0 checked against torch: max |diff| "
          f"{result.max_abs_diff:.2e}")  # fmt: skip
    if result.errors:
        print(f"{result.errors} updates failed or went unanswered", file=sys.stderr)
        return 1
    if result.max_abs_diff > TOLERANCE:
        print("the served answers differ from the torch modules'", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
