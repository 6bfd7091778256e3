"""The LIGO offline pattern: n servers x k clients clean one archived dataset, each client a
sequence whose state stays on its server; the result must equal one stream's.

    python examples/ligo_offline/run.py --servers 2 --clients 3          # 48 shards x 32 s
    python examples/ligo_offline/run.py --servers 3 --clients 4 --shards 96
    python examples/ligo_offline/run.py --tiny                           # seconds (smoke test)

Steps: build the examples repository (``headrace examples create``) and a dataset here (one
continuous two-channel strain recording, ``strain.py`` of the streaming_cleaner example, cut
into ``--shards`` shards of ``--updates`` one-second updates); start ``--servers`` local
``headrace serve`` processes on free ports of 127.0.0.1; deal the shards to ``--servers`` x
``--clients`` clients (``assign.py``), each streaming its shards over gRPC through the
``streaming_detector`` ensemble (snapshotter -> strain_cleaner -> strain_detector) on its own
correlation id and server; check with each server's statistics that it ran exactly its
clients' updates; stream the whole dataset again as one client on one server (the
single-stream reference) and compare the cleaned series and probabilities.
"""

from __future__ import annotations

import argparse
import json
import os
import shlex
import signal
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Iterator, Sequence
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path

import numpy as np
from assign import Client, assign
from stream_shards import MODEL, ShardAnswers, stream_client

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "streaming_cleaner"))
from strain import StrainSource  # the streaming_cleaner example's source

from headrace.repository.examples import STREAM_CHANNELS, STREAM_UPDATE

TINY_ENV = "HEADRACE_EXAMPLE_TINY"
START_TIMEOUT_S = 120.0
STOP_TIMEOUT_S = 30.0
TOLERANCE = 1e-4
STATEFUL_MODEL = "snapshotter"


@dataclass(frozen=True)
class Result:
    """What one run did, and how it compares with the single-stream reference."""

    servers: int
    clients: int
    shards: int
    updates: int
    answered: int
    errors: list[str]
    updates_per_server: list[int]
    planned_per_server: list[int]
    seconds: float
    reference_seconds: float
    max_abs_diff: float
    json_path: Path


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--workdir", default="headrace-example-ligo-offline")
    parser.add_argument(
        "--tiny", action="store_true", default=os.environ.get(TINY_ENV) == "1",
        help=f"12 shards of 6 updates (also {TINY_ENV}=1)",
    )  # fmt: skip
    parser.add_argument("--servers", type=int, default=2, help="headrace serve processes (2)")
    parser.add_argument("--clients", type=int, default=3, help="clients per server (3)")
    parser.add_argument("--shards", type=int, default=0, help="dataset shards (48; tiny 12)")
    parser.add_argument(
        "--updates", type=int, default=0, help="one-second updates per shard (32; tiny 6)"
    )
    parser.add_argument("--seed", type=int, default=0, help="the recording's seed (0)")
    parser.add_argument("--first-sequence-id", type=int, default=1, help="client c: this + c (1)")
    parser.add_argument("--max-in-flight", type=int, default=4, help="per client stream (4)")
    parser.add_argument(
        "--timeout", type=float, default=300.0, help="seconds for each pass at most (300)"
    )
    parser.add_argument("--json", default="", help="result file (WORKDIR/result.json)")
    args = parser.parse_args(argv)
    args.shards = args.shards or (12 if args.tiny else 48)
    args.updates = args.updates or (6 if args.tiny else 32)
    return args


def dataset(workdir: Path, shards: int, updates: int, seed: int) -> np.ndarray:
    """``dataset.npy``: one continuous recording cut into ``[shards, updates, channels,
    update_size]`` float32 (shard i+1 continues shard i); reused while its shape is unchanged."""
    path = workdir / "dataset.npy"
    shape = (shards, updates, STREAM_CHANNELS, STREAM_UPDATE)
    if path.is_file():
        data = np.load(path, mmap_mode="r")
        if data.shape == shape:
            return np.asarray(data)
    source = StrainSource(seed, channels=STREAM_CHANNELS, update_size=STREAM_UPDATE)
    data = np.stack([source.next_update() for _ in range(shards * updates)]).reshape(shape)
    np.save(path, data)
    return data


@contextmanager
def headrace_servers(workdir: Path, count: int) -> Iterator[list[dict[str, int]]]:
    """``count`` ``headrace serve`` processes on the examples repository, on free 127.0.0.1
    ports, all started before any is waited for; stopped (SIGTERM, drained) at the end."""
    from headrace.repository.examples import create_examples_repository

    repository = workdir / "models"
    print(f"$ headrace examples create {repository}", flush=True)
    create_examples_repository(repository)  # reused when unchanged
    with ExitStack() as stack:
        started = []
        for number in range(count):
            ports_file = workdir / f"ports-{number}.json"
            ports_file.unlink(missing_ok=True)
            command = [
                sys.executable, "-m", "headrace.cli", "serve", str(repository),
                "--host", "127.0.0.1", "--http-port", "0", "--grpc-port", "0", "--no-metrics",
                "--model-control-mode", "explicit", "--load-model", MODEL,
                "--ports-file", str(ports_file),
            ]  # fmt: skip
            print(f"$ headrace {shlex.join(command[3:])}", flush=True)
            log = workdir / f"serve-{number}.log"
            with open(log, "wb") as out:
                process = subprocess.Popen(command, stdout=out, stderr=subprocess.STDOUT)
            stack.callback(_stop, process)
            started.append((process, ports_file, log))
        yield [_wait_ready(*server) for server in started]


def _stop(process: subprocess.Popen[bytes]) -> None:
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
            try:
                with urllib.request.urlopen(_url(ports, f"models/{MODEL}/ready"), timeout=2):
                    return ports
            except (urllib.error.URLError, OSError):
                pass
        try:  # the pause between probes, cut short if the server dies
            code = process.wait(timeout=0.25)
        except subprocess.TimeoutExpired:
            continue
        raise SystemExit(f"headrace serve exited with {code}:\n{log.read_text()[-3000:]}")
    raise SystemExit(f"headrace serve not ready in {START_TIMEOUT_S:.0f} s; see {log}")


def _url(ports: dict[str, int], path: str) -> str:
    return f"http://127.0.0.1:{ports['http']}/v2/{path}"


def successes(ports: dict[str, int], model: str) -> int:
    """The server's count of successful requests to ``model`` (its statistics extension)."""
    with urllib.request.urlopen(_url(ports, f"models/{model}/stats"), timeout=10) as response:
        stats = json.load(response)
    return sum(s["inference_stats"]["success"]["count"] for s in stats["model_stats"])


def stream_all(
    plan: list[Client], servers: list[dict[str, int]], data: np.ndarray, args: argparse.Namespace
) -> tuple[dict[int, ShardAnswers], list[str], float]:
    """Every client of ``plan`` in its own thread, against its own server; the answers of
    every shard, the errors, and the seconds from the first send to the last answer."""
    answers: dict[int, ShardAnswers] = {}
    errors: list[str] = []
    lock = threading.Lock()

    def one(client: Client) -> None:
        url = f"127.0.0.1:{servers[client.server]['grpc']}"
        got, failed = stream_client(
            url,
            client.sequence_id,
            {shard: data[shard] for shard in client.shards},
            max_in_flight=args.max_in_flight,
            timeout_s=args.timeout,
        )
        with lock:
            answers.update(got)
            errors.extend(f"client {client.number}: {e}" for e in failed)

    threads = [threading.Thread(target=one, args=(c,), name=f"client-{c.number}") for c in plan]
    t0 = time.monotonic()
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=max(0.0, t0 + args.timeout + 30.0 - time.monotonic()))
    if any(thread.is_alive() for thread in threads):
        errors.append(f"clients still running {args.timeout + 30.0:.0f} s after the start")
    return answers, errors, time.monotonic() - t0


def stack(answers: dict[int, ShardAnswers], shards: int) -> tuple[np.ndarray, np.ndarray]:
    """``cleaned`` [shards, channels, samples] and ``probability`` [shards, updates]."""
    return (
        np.stack([answers[shard].cleaned for shard in range(shards)]),
        np.stack([answers[shard].probability for shard in range(shards)]),
    )


def run(args: argparse.Namespace) -> Result:
    """Serve, deal the shards, stream, check against one stream, report."""
    workdir = Path(args.workdir).resolve()
    workdir.mkdir(parents=True, exist_ok=True)
    plan = assign(args.shards, args.servers, args.clients, args.first_sequence_id)
    data = dataset(workdir, args.shards, args.updates, args.seed)
    planned = [sum(len(c.shards) for c in plan if c.server == s) * args.updates
               for s in range(args.servers)]  # fmt: skip
    with headrace_servers(workdir, args.servers) as servers:
        before = [successes(ports, STATEFUL_MODEL) for ports in servers]
        print(f"{args.shards} shards x {args.updates} updates -> {args.servers} servers x "
              f"{args.clients} clients", flush=True)  # fmt: skip
        answers, errors, seconds = stream_all(plan, servers, data, args)
        ran = [successes(ports, STATEFUL_MODEL) - b for ports, b in zip(servers, before)]
        print("the single-stream reference: one client, one sequence, server 0", flush=True)
        reference_client = Client(
            number=len(plan), server=0, sequence_id=args.first_sequence_id + len(plan),
            shards=tuple(range(args.shards)),
        )  # fmt: skip
        reference, reference_errors, reference_seconds = stream_all(
            [reference_client], servers, data, args
        )
    errors += [f"reference: {e}" for e in reference_errors]
    cleaned, probability = stack(answers, args.shards)
    ref_cleaned, ref_probability = stack(reference, args.shards)
    np.save(workdir / "cleaned.npy", cleaned)
    np.save(workdir / "probabilities.npy", probability)
    diff = max(_max_diff(cleaned, ref_cleaned), _max_diff(probability, ref_probability))
    answered = sum(a.answered for a in answers.values())
    result = Result(
        servers=args.servers,
        clients=args.clients,
        shards=args.shards,
        updates=args.updates,
        answered=answered,
        errors=errors,
        updates_per_server=ran,
        planned_per_server=planned,
        seconds=seconds,
        reference_seconds=reference_seconds,
        max_abs_diff=diff,
        json_path=Path(args.json) if args.json else workdir / "result.json",
    )
    report(args, plan, result)
    return result


def _max_diff(a: np.ndarray, b: np.ndarray) -> float:
    """The largest difference; infinite where either side has a missing (NaN) answer."""
    if np.isnan(a).any() or np.isnan(b).any():
        return float("inf")
    return float(np.abs(a - b).max())


def report(args: argparse.Namespace, plan: list[Client], result: Result) -> None:
    from rich.console import Console
    from rich.table import Table

    from headrace.bench.machine import machine_info

    total = result.shards * result.updates
    table = Table(title=f"{MODEL}: {result.servers} servers x {result.clients} clients")
    for column in ("server", "clients (sequence ids)", "shards", "updates planned", "ran"):
        table.add_column(column, justify="right")
    for server in range(result.servers):
        mine = [c for c in plan if c.server == server]
        table.add_row(
            str(server),
            ", ".join(str(c.sequence_id) for c in mine),
            str(sum(len(c.shards) for c in mine)),
            str(result.planned_per_server[server]),
            str(result.updates_per_server[server]),
        )
    console = Console(width=120)
    console.print(table)
    console.print(
        f"{result.answered}/{total} updates in {result.seconds:.2f} s "
        f"({result.answered / max(result.seconds, 1e-9):,.0f} updates/s); single stream "
        f"{result.reference_seconds:.2f} s; max |diff| vs single stream {result.max_abs_diff:.2e}"
    )
    document = {
        "example": "ligo_offline",
        "date": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "command": shlex.join(sys.argv),
        "servers": result.servers,
        "clients_per_server": result.clients,
        "shards": result.shards,
        "updates_per_shard": result.updates,
        "plan": [
            {
                "client": c.number,
                "server": c.server,
                "sequence_id": c.sequence_id,
                "shards": list(c.shards),
            }
            for c in plan
        ],
        "answered": result.answered,
        "errors": result.errors[:5],
        "updates_per_server": {
            "planned": result.planned_per_server,
            "ran": result.updates_per_server,
        },
        "seconds": round(result.seconds, 3),
        "reference_seconds": round(result.reference_seconds, 3),
        "max_abs_diff": result.max_abs_diff,
        "machine": machine_info(),
    }
    result.json_path.write_text(json.dumps(document, indent=1) + "\n")
    print(f"results: {result.json_path}")


def main(argv: Sequence[str] | None = None) -> int:
    result = run(parse_args(argv))
    if result.errors:
        print(f"{len(result.errors)} errors, first: {result.errors[0]}", file=sys.stderr)
        return 1
    if result.updates_per_server != result.planned_per_server:
        print("a server ran other updates than its clients sent", file=sys.stderr)
        return 1
    if result.max_abs_diff > TOLERANCE:
        print("the n x k output differs from the single stream's", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
