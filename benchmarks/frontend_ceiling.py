"""How many requests/s headrace's frontends take in when the model costs nothing.

Serves HTTP and gRPC in a child process over a core whose ``infer`` answers at once (no
scheduler, no instance), and loads each with perf_analyzer at the same concurrency. That
isolates the frontend plus its server library: the ceiling every light model shares.

    python benchmarks/frontend_ceiling.py [--concurrency 16] [--rounds 3]

Writes benchmarks/results/frontend_ceiling.json (with the machine) and prints a table.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent
SHAPE = (64,)


def serve(ports_file: str) -> None:
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
        http = HttpFrontend(core, "127.0.0.1", 0)
        grpc = GrpcFrontend(core, "127.0.0.1", 0)
        await http.start()
        await grpc.start()
        atomic_write_bytes(ports_file, json.dumps({"http": http.port, "grpc": grpc.port}).encode())
        await asyncio.Event().wait()

    new_event_loop().run_until_complete(main())


def measure(protocol: str, port: int, concurrency: int) -> dict[str, float]:
    from headrace.bench.perf_analyzer import PerfLoad, run_perf_analyzer

    load = PerfLoad(
        model="identity",
        url=f"127.0.0.1:{port}",
        protocol=protocol,
        concurrency=concurrency,
        shapes={"INPUT0": SHAPE},
    )
    row = run_perf_analyzer(load, timeout_s=120)
    return {"throughput": row.throughput, "p50_us": row.p50_us, "p99_us": row.p99_us}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--concurrency", type=int, default=16)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--out", default=str(ROOT / "results" / "frontend_ceiling.json"))
    args = parser.parse_args(argv)
    if args.rounds < 1:
        parser.error("--rounds must be at least 1")

    from rich.console import Console
    from rich.table import Table

    from headrace.bench.machine import machine_info
    from headrace.files import atomic_write_bytes

    ports_file = f"{args.out}.ports"
    if os.path.exists(ports_file):
        os.remove(ports_file)
    child = subprocess.Popen([sys.executable, __file__, "--serve", ports_file])
    try:
        deadline = time.monotonic() + 60
        while not os.path.exists(ports_file):
            if child.poll() is not None or time.monotonic() > deadline:
                raise SystemExit("the frontend process did not start")
            time.sleep(0.1)
        ports = json.loads(Path(ports_file).read_text())
        rounds: dict[str, list[dict[str, float]]] = {"grpc": [], "http": []}
        for index in range(args.rounds):
            order = ["grpc", "http"] if index % 2 == 0 else ["http", "grpc"]
            for protocol in order:
                rounds[protocol].append(measure(protocol, ports[protocol], args.concurrency))
    finally:
        child.terminate()
        child.wait(10)
        if os.path.exists(ports_file):
            os.remove(ports_file)

    summary = {
        protocol: {
            "median_throughput": statistics.median(r["throughput"] for r in runs),
            "median_p99_us": statistics.median(r["p99_us"] for r in runs),
            "rounds": runs,
        }
        for protocol, runs in rounds.items()
    }
    document = {
        "benchmark": "frontend_ceiling",
        "concurrency": args.concurrency,
        "machine": machine_info(),
        "results": summary,
    }
    atomic_write_bytes(args.out, (json.dumps(document, indent=2) + "\n").encode())
    table = Table(title=f"frontends over an instant core, c={args.concurrency}")
    for column in ("protocol", "median infer/s", "median p99 ms", "rounds infer/s"):
        table.add_column(column)
    for protocol, result in summary.items():
        table.add_row(
            protocol,
            f"{result['median_throughput']:,.0f}",
            f"{result['median_p99_us'] / 1000:.1f}",
            ", ".join(f"{r['throughput']:,.0f}" for r in result["rounds"]),
        )
    Console().print(table)
    print(f"results: {args.out}")
    return 0


if __name__ == "__main__":
    if len(sys.argv) == 3 and sys.argv[1] == "--serve":
        serve(sys.argv[2])
    else:
        sys.exit(main())
