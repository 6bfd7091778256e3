"""How many requests/s headrace's frontends take in when the model costs nothing.

Serves HTTP and gRPC in child processes over a core whose ``infer`` answers at once (no
scheduler, no instance), and loads each with perf_analyzer at the same concurrency. That
isolates the frontend plus its server library: the ceiling every light model shares. With
``--processes 1,2`` it repeats the loads with that many frontend processes sharing the ports
(SO_REUSEPORT), and it reports the CPU time the servers and the client spent per request, so
a ceiling set by the cores (not by one process) shows as such.

    python benchmarks/frontend_ceiling.py [--concurrency 16] [--rounds 3] [--processes 1,2]

Writes benchmarks/results/frontend_ceiling.json (with the machine) and prints a table.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent
SHAPE = (64,)


def serve(ports_file: str, http_port: int, grpc_port: int) -> None:
    """Child process: HTTP and gRPC frontends over an instant core, ports to ``ports_file``."""
    from headrace.config import parse_config
    from headrace.files import atomic_write_bytes
    from headrace.server.app import new_event_loop
    from headrace.server.grpc import GrpcFrontend
    from headrace.server.http import HttpFrontend
    from headrace.server.reports import ModelMetadata, ServerMetadata
    from headrace.types import DataType, InferenceResponse, TensorSpec

    config = parse_config(
        'name: "identity" backend: "python" max_batch_size: 64 '
        'input [{name: "INPUT0" data_type: TYPE_FP32 dims: [64]}] '
        'output [{name: "OUTPUT0" data_type: TYPE_FP32 dims: [64]}]'
    )
    spec_in = TensorSpec("INPUT0", DataType.FP32, SHAPE)
    spec_out = TensorSpec("OUTPUT0", DataType.FP32, SHAPE)

    class InstantCore:
        async def infer(self, request: Any) -> InferenceResponse:
            outputs = {"OUTPUT0": request.inputs["INPUT0"]}
            return InferenceResponse("identity", "1", outputs, id=request.id)

        def live(self) -> bool:
            return True

        def ready(self) -> bool:
            return True

        def model_ready(self, name: str, version: str = "") -> bool:
            return True

        def server_metadata(self) -> ServerMetadata:
            return ServerMetadata("headrace", "0", ())

        def model_metadata(self, name: str, version: str = "") -> ModelMetadata:
            return ModelMetadata("identity", ("1",), "python", (spec_in,), (spec_out,), True)

        def model_config(self, name: str, version: str = "") -> Any:
            return config

        def statistics(self, name: str = "", version: str = "") -> list[Any]:
            return []

        def repository_index(self, ready_only: bool = False) -> list[Any]:
            return []

    async def main() -> None:
        core: Any = InstantCore()
        http = HttpFrontend(core, "127.0.0.1", http_port, reuse_port=True)
        grpc = GrpcFrontend(core, "127.0.0.1", grpc_port, reuse_port=True)
        await http.start()
        await grpc.start()
        atomic_write_bytes(ports_file, json.dumps({"http": http.port, "grpc": grpc.port}).encode())
        await asyncio.Event().wait()

    new_event_loop().run_until_complete(main())


def measure(protocol: str, port: int, concurrency: int, servers: list[Any]) -> dict[str, float]:
    from headrace.bench.perf_analyzer import PerfLoad, run_perf_analyzer

    load = PerfLoad(
        model="identity",
        url=f"127.0.0.1:{port}",
        protocol=protocol,
        concurrency=concurrency,
        shapes={"INPUT0": SHAPE},
    )
    server_before, client_before = _server_cpu(servers), _client_cpu()
    started = time.monotonic()
    row = run_perf_analyzer(load, timeout_s=120)
    # perf_analyzer's windows are part of its run: count requests over the whole run from
    # the measured rate, since the instant core keeps no statistics
    requests = row.throughput * (time.monotonic() - started)
    return {
        "throughput": row.throughput,
        "p50_us": row.p50_us,
        "p99_us": row.p99_us,
        "server_cpu_us_per_request": (_server_cpu(servers) - server_before) / requests * 1e6,
        "client_cpu_us_per_request": (_client_cpu() - client_before) / requests * 1e6,
    }


def _server_cpu(servers: list[Any]) -> float:
    total = 0.0
    for server in servers:
        times = server.cpu_times()
        total += times.user + times.system
    return total


def _client_cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def start_servers(count: int, ports_dir: Path) -> tuple[list[subprocess.Popen[bytes]], dict]:
    """``count`` frontend processes on the same two ports; the first one picks them."""
    ports_dir.mkdir(parents=True, exist_ok=True)
    children: list[subprocess.Popen[bytes]] = []
    ports = {"http": 0, "grpc": 0}
    for index in range(count):
        ports_file = ports_dir / f"ports-{index}.json"
        command = [sys.executable, __file__, "--serve", str(ports_file)]
        children.append(subprocess.Popen([*command, str(ports["http"]), str(ports["grpc"])]))
        deadline = time.monotonic() + 60
        while not ports_file.exists():
            if children[-1].poll() is not None or time.monotonic() > deadline:
                stop_servers(children)
                raise SystemExit("a frontend process did not start")
            time.sleep(0.1)
        ports = json.loads(ports_file.read_text())
    return children, ports


def stop_servers(children: list[subprocess.Popen[bytes]]) -> None:
    for child in children:
        child.terminate()
    for child in children:
        child.wait(10)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--concurrency", type=int, default=16)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument(
        "--processes",
        type=lambda text: [int(part) for part in text.split(",") if part],
        default=[1, 2],
        help="frontend process counts to measure, comma separated (default 1,2)",
    )
    parser.add_argument("--out", default=str(ROOT / "results" / "frontend_ceiling.json"))
    args = parser.parse_args(argv)
    if args.rounds < 1:
        parser.error("--rounds must be at least 1")
    if not args.processes or min(args.processes) < 1:
        parser.error("--processes must name counts of at least 1")

    import psutil
    from rich.console import Console
    from rich.table import Table

    from headrace.bench.machine import machine_info
    from headrace.files import atomic_write_bytes

    rounds: dict[str, list[dict[str, float]]] = {}
    with tempfile.TemporaryDirectory(prefix="frontend-ceiling-") as ports_dir:
        for processes in args.processes:
            children, ports = start_servers(processes, Path(ports_dir) / str(processes))
            try:
                servers = [psutil.Process(child.pid) for child in children]
                for index in range(args.rounds):
                    order = ["grpc", "http"] if index % 2 == 0 else ["http", "grpc"]
                    for protocol in order:
                        key = f"{protocol} x{processes}"
                        point = measure(protocol, ports[protocol], args.concurrency, servers)
                        rounds.setdefault(key, []).append(point)
            finally:
                stop_servers(children)

    summary = {
        key: {
            "median_throughput": statistics.median(r["throughput"] for r in runs),
            "median_p99_us": statistics.median(r["p99_us"] for r in runs),
            "median_server_cpu_us_per_request": statistics.median(
                r["server_cpu_us_per_request"] for r in runs
            ),
            "median_client_cpu_us_per_request": statistics.median(
                r["client_cpu_us_per_request"] for r in runs
            ),
            "rounds": runs,
        }
        for key, runs in rounds.items()
    }
    document = {
        "benchmark": "frontend_ceiling",
        "concurrency": args.concurrency,
        "processes": args.processes,
        "machine": machine_info(),
        "results": summary,
    }
    atomic_write_bytes(args.out, (json.dumps(document, indent=2) + "\n").encode())
    table = Table(title=f"frontends over an instant core, c={args.concurrency}")
    for column in (
        "protocol x processes",
        "median infer/s",
        "median p99 ms",
        "server CPU us/req",
        "client CPU us/req",
        "rounds infer/s",
    ):
        table.add_column(column)
    for key, result in summary.items():
        table.add_row(
            key,
            f"{result['median_throughput']:,.0f}",
            f"{result['median_p99_us'] / 1000:.1f}",
            f"{result['median_server_cpu_us_per_request']:.0f}",
            f"{result['median_client_cpu_us_per_request']:.0f}",
            ", ".join(f"{r['throughput']:,.0f}" for r in result["rounds"]),
        )
    Console().print(table)
    print(f"results: {args.out}")
    return 0


if __name__ == "__main__":
    if len(sys.argv) == 5 and sys.argv[1] == "--serve":
        serve(sys.argv[2], int(sys.argv[3]), int(sys.argv[4]))
    else:
        sys.exit(main())
