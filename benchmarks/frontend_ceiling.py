"""How many requests/s headrace's frontends take in when the model costs nothing.

Serves HTTP and gRPC in child processes over a core whose ``infer`` answers at once (no
scheduler, no instance), and loads each with perf_analyzer at the same concurrency. That
isolates the frontend plus its server library: the ceiling every light model shares. With
``--processes 1,2`` it repeats the loads with that many frontend processes sharing the ports
(SO_REUSEPORT), and it reports the CPU time the servers and the client spent per request, so
a ceiling set by the cores (not by one process) shows as such.

Side by side in the same rounds it loads the bare servers of ``serve_models/bare_servers.py``
(the least any server on grpc.aio, grpcio's thread pool or granian can do per request),
``headrace serve`` with the identity model as a python-backend ``model.py`` (the full path:
validation, dynamic batcher, instance, statistics) and, where ``../shared/tools/tritonserver``
exists, real NVIDIA Triton serving that same model: the server headrace is measured against.

    python benchmarks/frontend_ceiling.py [--concurrency 16] [--rounds 3] [--processes 1,2]
        [--bare grpc-aio,grpc-sync,http-granian] [--python-runtimes in-server,process]
        [--protocols grpc,http] [--no-triton]

Writes benchmarks/results/frontend_ceiling.json (with the machine) and prints a table.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import dataclasses
import json
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent
sys.path.insert(0, str(ROOT / "serve_models"))

import bare_servers  # noqa: E402
import servers  # noqa: E402

FEATURES = 16  # the identity model of serve_models/nets.py
SHAPE = (FEATURES,)


def serve(ports_file: str, http_port: int, grpc_port: int) -> None:
    """Child process: HTTP and gRPC frontends over an instant core, ports to ``ports_file``."""
    from headrace.config import parse_config
    from headrace.files import atomic_write_bytes
    from headrace.server.app import new_event_loop
    from headrace.server.grpc.frontend import GrpcFrontend
    from headrace.server.http.frontend import HttpFrontend
    from headrace.server.http.options import HttpOptions
    from headrace.server.memory import SharedMemoryRegistry
    from headrace.server.reports import ModelMetadata, ServerMetadata
    from headrace.types import DataType, InferenceResponse, TensorSpec

    config = parse_config(
        'name: "identity" backend: "python" max_batch_size: 64 '
        'input [{name: "INPUT0" data_type: TYPE_FP32 dims: [16]}] '
        'output [{name: "OUTPUT0" data_type: TYPE_FP32 dims: [16]}]'
    )
    spec_in = TensorSpec("INPUT0", DataType.FP32, SHAPE)
    spec_out = TensorSpec("OUTPUT0", DataType.FP32, SHAPE)

    class InstantCore:
        shared_memory = SharedMemoryRegistry()

        async def infer(self, request: Any, *, endpoint: str = "") -> InferenceResponse:
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
        http = HttpFrontend(core, "127.0.0.1", http_port, HttpOptions(reuse_port=True))
        grpc = GrpcFrontend(core, "127.0.0.1", grpc_port, reuse_port=True)
        await http.start()
        await grpc.start()
        atomic_write_bytes(ports_file, json.dumps({"http": http.port, "grpc": grpc.port}).encode())
        await asyncio.Event().wait()

    new_event_loop().run_until_complete(main())


def measure(target: Target, protocol: str, concurrency: int) -> dict[str, float] | dict[str, str]:
    from headrace.bench.perf_analyzer import PerfAnalyzerFailed, PerfLoad, run_perf_analyzer

    load = PerfLoad(
        model=target.model,
        url=f"127.0.0.1:{target.ports[protocol]}",
        protocol=protocol,
        concurrency=concurrency,
        shapes={"INPUT0": SHAPE},
        stability_percent=40.0,
    )
    server_before, client_before = target.cpu_seconds(), servers.children_cpu_seconds()
    started = time.monotonic()
    try:
        row = run_perf_analyzer(load, timeout_s=120)
    except PerfAnalyzerFailed as exc:  # an unstable or failed level is recorded, not fatal
        return {"error": str(exc)}
    # perf_analyzer's windows are part of its run: count requests over the whole run from
    # the measured rate, since the bare servers keep no statistics
    requests = row.throughput * (time.monotonic() - started)
    return {
        "throughput": row.throughput,
        "p50_us": row.p50_us,
        "p99_us": row.p99_us,
        "server_cpu_us_per_request": (target.cpu_seconds() - server_before) / requests * 1e6,
        "client_cpu_us_per_request": (servers.children_cpu_seconds() - client_before)
        / requests
        * 1e6,
    }


@dataclasses.dataclass
class Target:
    """A running server under load: its name, ports by protocol, and how to stop it."""

    name: str
    model: str
    ports: dict[str, int]
    pids: list[int]
    stop: Any

    def cpu_seconds(self) -> float:
        return servers.process_tree_cpu_seconds(self.pids)


def _wait_file(path: Path, child: subprocess.Popen[bytes], children: list[Any]) -> dict:
    deadline = time.monotonic() + 60
    while not path.exists():
        if child.poll() is not None or time.monotonic() > deadline:
            stop_children(children)
            raise SystemExit(f"{child.args} did not start")
        time.sleep(0.1)
    return json.loads(path.read_text())


def _wait_accepting(port: int, child: subprocess.Popen[bytes]) -> None:
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline and child.poll() is None:
        with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), 1):
            return
        time.sleep(0.1)
    stop_children([child])
    raise SystemExit(f"{child.args} does not accept connections on port {port}")


def start_headrace(count: int, ports_dir: Path) -> Target:
    """``count`` frontend processes on the same two ports; the first one picks them."""
    ports_dir.mkdir(parents=True, exist_ok=True)
    children: list[subprocess.Popen[bytes]] = []
    ports = {"http": 0, "grpc": 0}
    for index in range(count):
        ports_file = ports_dir / f"ports-{index}.json"
        ports_file.unlink(missing_ok=True)  # an earlier round's
        command = [sys.executable, __file__, "--serve", str(ports_file)]
        children.append(subprocess.Popen([*command, str(ports["http"]), str(ports["grpc"])]))
        ports = _wait_file(ports_file, children[-1], children)
    pids = [child.pid for child in children]
    return Target(f"headrace x{count}", "identity", ports, pids, lambda: stop_children(children))


def start_bare(kind: str, ports_dir: Path) -> Target:
    ports_dir.mkdir(parents=True, exist_ok=True)
    ports_file = ports_dir / f"{kind}.json"
    ports_file.unlink(missing_ok=True)  # an earlier round's
    script = ROOT / "serve_models" / "bare_servers.py"
    command = [sys.executable, str(script), kind, str(ports_file), str(FEATURES)]
    child = subprocess.Popen(command)
    port = _wait_file(ports_file, child, [child])["port"]
    _wait_accepting(port, child)
    protocol = kind.split("-")[0]
    return Target(
        f"bare {kind}",
        "identity",
        {protocol: port},
        [child.pid],
        lambda: stop_children([child]),
    )


def start_full(system: str, workdir: Path, runtime: str = "") -> Target:
    """``system`` (headrace or triton) serving the identity model as a python ``model.py``;
    headrace runs it where ``runtime`` says (``--python-runtime``)."""
    import repository  # builds models with torch: only when a full-path server is measured

    batching = repository.Batching(max_batch_size=64, max_queue_delay_us=100, instances=1)
    chosen = repository.variants(["identity"], ["python"])
    workdir.mkdir(parents=True, exist_ok=True)
    if not (workdir / "repository").exists():
        repository.write_repository(workdir / "repository", chosen, batching)
    options = dataclasses.asdict(batching)
    extra = ["--python-runtime", runtime] if runtime else []
    server = servers.launch(
        system, workdir / "repository", [chosen[0].name], workdir, options, extra_args=extra
    )
    assert server.ports is not None  # headrace's are read back once it is ready
    ports = {"http": server.ports.http, "grpc": server.ports.grpc}
    pid = server.process.pid
    name = f"{system} (full path, {runtime})" if runtime else f"{system} (full path)"
    return Target(name, chosen[0].name, ports, [pid], server.stop)


def stop_children(children: list[subprocess.Popen[bytes]]) -> None:
    for child in children:
        child.terminate()
    for child in children:
        try:
            child.wait(10)
        except subprocess.TimeoutExpired:
            child.kill()


def _have_triton() -> bool:
    try:
        servers.shared_tool("tritonserver")
    except FileNotFoundError:
        return False
    return True


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--concurrency", type=int, default=16)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument(
        "--processes",
        type=lambda text: [int(part) for part in text.split(",") if part],
        default=[1, 2],
        help="headrace frontend process counts to measure, comma separated (default 1,2)",
    )
    parser.add_argument(
        "--bare",
        type=lambda text: [part for part in text.split(",") if part],
        default=["grpc-aio", "grpc-sync", "http-granian"],
        help="bare library servers to measure alongside (default all; '' for none)",
    )
    parser.add_argument(
        "--python-runtimes",
        type=lambda text: [part for part in text.split(",") if part],
        default=["in-server", "process"],
        help="--python-runtime values headrace's full path is measured with, comma separated "
        "(default in-server,process)",
    )
    parser.add_argument(
        "--protocols",
        type=lambda text: [part for part in text.split(",") if part],
        default=["grpc", "http"],
        help="protocols to load, comma separated (default grpc,http)",
    )
    parser.add_argument("--no-triton", action="store_true", help="leave real Triton out")
    parser.add_argument("--out", default=str(ROOT / "results" / "frontend_ceiling.json"))
    args = parser.parse_args(argv)
    if args.rounds < 1:
        parser.error("--rounds must be at least 1")
    if not args.processes or min(args.processes) < 1:
        parser.error("--processes must name counts of at least 1")
    for kind in args.bare:
        if kind not in bare_servers.KINDS:
            parser.error(f"unknown bare server {kind!r}; choose from {bare_servers.KINDS}")
    skipped = [kind for kind in args.bare if not bare_servers.available(kind)]
    bare = [kind for kind in args.bare if kind not in skipped]
    triton = not args.no_triton and _have_triton()

    from rich.console import Console
    from rich.table import Table

    from headrace.bench.machine import machine_info
    from headrace.files import atomic_write_bytes

    console = Console(width=120)
    for kind in skipped:
        console.print(f"[yellow]bare {kind}: its library is not installed; left out")
    rounds: dict[str, list[dict[str, Any]]] = {}
    with tempfile.TemporaryDirectory(prefix="frontend-ceiling-") as tmp:
        workdir = Path(tmp)
        starters: list[Any] = [
            (lambda n=n: start_headrace(n, workdir / f"headrace-{n}")) for n in args.processes
        ]
        starters += [(lambda k=k: start_bare(k, workdir / "bare")) for k in bare]
        starters += [
            (lambda r=r: start_full("headrace", workdir / "full", r)) for r in args.python_runtimes
        ]
        if triton:
            starters.append(lambda: start_full("triton", workdir / "full"))
        # every server runs through all its rounds while the others are stopped; the order of
        # servers turns around each round so drift on the machine spreads over all of them
        for index in range(args.rounds):
            order = starters if index % 2 == 0 else starters[::-1]
            for start in order:
                target = start()
                try:
                    chosen = [p for p in target.ports if p in args.protocols]
                    for protocol in sorted(chosen, reverse=index % 2 == 1):
                        point = measure(target, protocol, args.concurrency)
                        key = f"{protocol} {target.name}"
                        rounds.setdefault(key, []).append(point)
                        console.log(f"{key}: {_describe(point)}")
                finally:
                    target.stop()

    summary = {key: _summarize(runs) for key, runs in sorted(rounds.items())}
    document = {
        "benchmark": "frontend_ceiling",
        "command": " ".join([Path(sys.argv[0]).name, *(argv or sys.argv[1:])]),
        "concurrency": args.concurrency,
        "processes": args.processes,
        "python_runtimes": args.python_runtimes,
        "protocols": args.protocols,
        "bare": bare,
        "bare_left_out": skipped,
        "triton": triton,
        "machine": machine_info(),
        "results": summary,
    }
    atomic_write_bytes(args.out, (json.dumps(document, indent=2) + "\n").encode())
    table = Table(title=f"servers over an instant model, c={args.concurrency}")
    for column in (
        "protocol server",
        "median infer/s",
        "median p99 ms",
        "server CPU us/req",
        "client CPU us/req",
        "rounds infer/s",
    ):
        table.add_column(column)
    for key, result in summary.items():
        if result is None:
            table.add_row(key, "failed", "-", "-", "-", "-")
            continue
        table.add_row(
            key,
            f"{result['median_throughput']:,.0f}",
            f"{result['median_p99_us'] / 1000:.1f}",
            f"{result['median_server_cpu_us_per_request']:.0f}",
            f"{result['median_client_cpu_us_per_request']:.0f}",
            ", ".join(f"{r['throughput']:,.0f}" for r in result["rounds"] if "throughput" in r),
        )
    console.print(table)
    print(f"results: {args.out}")
    return 0


def _describe(point: dict[str, Any]) -> str:
    if "error" in point:
        return f"failed: {point['error'].splitlines()[0]}"
    return (
        f"{point['throughput']:,.0f} infer/s, p99 {point['p99_us'] / 1000:.1f} ms, "
        f"server {point['server_cpu_us_per_request']:.0f} us/req"
    )


def _summarize(runs: list[dict[str, Any]]) -> dict[str, Any] | None:
    good = [r for r in runs if "throughput" in r]
    if not good:
        return None

    def median(metric: str) -> float:
        return statistics.median(r[metric] for r in good)

    return {
        "median_throughput": median("throughput"),
        "median_p99_us": median("p99_us"),
        "median_server_cpu_us_per_request": median("server_cpu_us_per_request"),
        "median_client_cpu_us_per_request": median("client_cpu_us_per_request"),
        "rounds": runs,
    }


if __name__ == "__main__":
    if len(sys.argv) == 5 and sys.argv[1] == "--serve":
        serve(sys.argv[2], int(sys.argv[3]), int(sys.argv[4]))
    else:
        sys.exit(main())
