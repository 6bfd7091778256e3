"""One headrace process vs two on the same ports (``--reuse-port``) vs NVIDIA Triton.

    python benchmarks/serve_processes.py              # ~10 min on 2 cores
    python benchmarks/serve_processes.py --rounds 1 --protocols http --concurrency 16

A headrace server is one Python process: its event loop thread runs the doors, the batcher
and (for a fast python model) the model, so it serves from about one core however many the
machine has. ``headrace serve --reuse-port`` lets several processes bind the same HTTP and
gRPC ports, the kernel spreading connections among them, each process with its own models,
batches and statistics. This study serves the benchmark's identity and MLP python-backend
models (``serve_models``: max batch 64, queue delay 100 µs, one instance) from

- ``headrace-1``: one ``headrace serve`` (its defaults);
- ``headrace-2``: two ``headrace serve --reuse-port`` processes on the same ports;
- ``triton``: NVIDIA Triton 2.51 (python backend) on the same ``model.py`` files;

taking turns round by round, each load perf_analyzer's (``serve_overhead.py``'s windows and
stability rule). Throughput and latency are perf_analyzer's; inferences, executions (so the
batch formed) and server CPU are summed over the system's processes, the counts read from
each process's Prometheus endpoint (a shared port's statistics endpoint would answer for
whichever process took the connection). Results: benchmarks/results/serve_processes.json,
with the machine.
"""

from __future__ import annotations

import argparse
import contextlib
import re
import statistics
import sys
import tempfile
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE / "serve_models"))
sys.path.insert(0, str(HERE))

import report  # noqa: E402
import serve_overhead  # noqa: E402
import servers  # noqa: E402

from headrace.bench.perf_analyzer import locate  # noqa: E402
from repository import Batching, Variant, variants, write_repository  # noqa: E402

SYSTEMS = ("headrace-1", "headrace-2", "triton")
PROTOCOLS = ("http", "grpc", "grpc-stream")
_COUNTER = r'^{name}\{{model="{model}",version="1"\}} (\d+(?:\.\d+)?)'


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--systems", default=",".join(SYSTEMS), help="(default all three)")
    p.add_argument("--models", default="identity,mlp", help="(default identity,mlp)")
    p.add_argument("--protocols", default=",".join(PROTOCOLS), help="(default all three)")
    p.add_argument("--concurrency", default="16,64", help="(default 16,64)")
    p.add_argument("--rounds", type=int, default=2, help="(default 2)")
    p.add_argument("--window-ms", type=int, default=2000, help="(default 2000)")
    p.add_argument("--max-trials", type=int, default=6, help="(default 6)")
    p.add_argument("--stability", type=float, default=20.0, help="percent (default 20)")
    p.add_argument("--perf-analyzer", default=None, help="executable (default: located)")
    p.add_argument("--out", type=Path, default=HERE / "results" / "serve_processes.json")
    return p.parse_args(argv)


class System:
    """The processes of one system under test, read as one server by serve_overhead.measure:
    its statistics and CPU time summed over the processes."""

    def __init__(self, name: str, members: list[servers.ServerProcess]) -> None:
        self.system, self.members = name, members
        self.ports = members[0].ports
        assert self.ports is not None

    def cpu_seconds(self) -> float:
        return sum(member.cpu_seconds() for member in self.members)

    def stats(self, model: str) -> dict[str, float]:
        """Inferences and executions of ``model``, summed over the processes' Prometheus
        endpoints (a shared port's statistics endpoint answers for one process only)."""
        counts = {"inference_count": 0.0, "execution_count": 0.0}
        for member in self.members:
            assert member.ports is not None
            url = f"http://127.0.0.1:{member.ports.metrics}/metrics"
            with urllib.request.urlopen(url, timeout=10) as response:
                text = response.read().decode()
            counts["inference_count"] += _counter(text, "nv_inference_count", model)
            counts["execution_count"] += _counter(text, "nv_inference_exec_count", model)
        return counts


def _counter(text: str, name: str, model: str) -> float:
    found = re.search(_COUNTER.format(name=name, model=re.escape(model)), text, re.MULTILINE)
    return float(found.group(1)) if found else 0.0


@contextlib.contextmanager
def start(name: str, repository: Path, models: list[str], workdir: Path) -> Iterator[System]:
    """Start ``name``'s processes (a fresh folder each) and stop them all afterwards."""
    options = {"max_batch_size": 64, "max_queue_delay_us": 100, "instances": 1}
    members: list[servers.ServerProcess] = []
    try:
        if name == "triton":
            (workdir / "t").mkdir(parents=True, exist_ok=True)
            members.append(servers.launch("triton", repository, models, workdir / "t", options))
        else:
            count = int(name.split("-")[1])
            for index in range(count):
                folder = workdir / f"h{index}"
                folder.mkdir(parents=True, exist_ok=True)
                extra = ["--reuse-port"] if count > 1 else []
                if members:
                    first = members[0].ports
                    assert first is not None
                    extra += ["--http-port", str(first.http), "--grpc-port", str(first.grpc)]
                members.append(
                    servers.launch(
                        "headrace", repository, models, folder, options, extra_args=extra
                    )
                )
        yield System(name, members)
    finally:
        for member in reversed(members):
            member.stop()


def measure(
    system: System, variant: Variant, protocol: str, concurrency: int, args: argparse.Namespace,
    tool: str,
) -> dict[str, Any]:  # fmt: skip
    """serve_overhead.py's load; a server gone away (Triton has, here) is recorded too."""
    try:
        return serve_overhead.measure(system, variant, protocol, concurrency, args, tool)
    except OSError as exc:
        return {
            "system": system.system,
            "model": variant.name,
            "protocol": protocol,
            "concurrency": concurrency,
            "error": f"its metrics endpoint did not answer: {exc}",
        }


def summarize(records: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Per (model, protocol, concurrency): each system's medians over rounds and the ratios
    of headrace-2 to headrace-1 and of each headrace to Triton."""
    records = [r for r in records if "error" not in r]
    keys = sorted({(r["model"], r["protocol"], r["concurrency"]) for r in records})
    rows = []
    for model, protocol, c in keys:
        row: dict[str, Any] = {"model": model, "protocol": protocol, "concurrency": c}
        for system in SYSTEMS:
            mine = [
                r
                for r in records
                if (r["model"], r["protocol"], r["concurrency"], r["system"])
                == (model, protocol, c, system)
            ]
            if not mine:
                continue
            row[system] = {
                field: statistics.median(r[field] for r in mine if r[field] is not None)
                if any(r[field] is not None for r in mine)
                else None
                for field in (
                    "throughput",
                    "p50_us",
                    "p99_us",
                    "avg_batch",
                    "server_cpu_us_per_inference",
                    "client_cpu_us_per_inference",
                )
            }
            row[system]["rounds"] = len(mine)
            row[system]["throughput_min"] = min(r["throughput"] for r in mine)
            row[system]["throughput_max"] = max(r["throughput"] for r in mine)
        for ours, theirs in (
            ("headrace-2", "headrace-1"),
            ("headrace-1", "triton"),
            ("headrace-2", "triton"),
        ):
            if ours in row and theirs in row:
                row[f"{ours}_over_{theirs}"] = row[ours]["throughput"] / row[theirs]["throughput"]
        rows.append(row)
    return rows


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    started = time.monotonic()
    tool = locate(args.perf_analyzer)
    systems = [s for s in args.systems.split(",") if s]
    protocols = [p for p in args.protocols.split(",") if p]
    concurrency = [int(c) for c in args.concurrency.split(",") if c]
    chosen = variants([m for m in args.models.split(",") if m], ["python"])
    records: list[dict[str, Any]] = []
    with tempfile.TemporaryDirectory(prefix="serve-processes-") as tmp:
        workdir = Path(tmp)
        repository = workdir / "repository"
        write_repository(repository, chosen, Batching())
        for round_no in range(args.rounds):
            shift = round_no % len(systems)
            for name in systems[shift:] + systems[:shift]:
                with start(name, repository, [v.name for v in chosen], workdir / name) as system:
                    for variant in chosen:
                        for protocol in protocols:
                            for c in concurrency:
                                record = measure(system, variant, protocol, c, args, tool)
                                records.append({**record, "round": round_no})
                                if "error" in record:
                                    print(f"r{round_no} {name} {variant.name} {protocol} c={c}"
                                          f" failed: {record['error'][:300]}", flush=True)  # fmt: skip
                                    continue
                                print(
                                    f"r{round_no} {name:10} {variant.name:16} {protocol:11} "
                                    f"c={c:<3} {record['throughput']:8.1f} inf/s "
                                    f"p99 {record['p99_us'] / 1000:6.1f} ms "
                                    f"batch {record['avg_batch'] or 0:5.1f} "
                                    f"cpu {record['server_cpu_us_per_inference'] or 0:5.0f} us",
                                    flush=True,
                                )
    summary = summarize(records)
    _print(summary)
    report.write_document(
        args.out,
        "serve_processes",
        sys.argv[1:] if argv is None else argv,
        args,
        started=started,
        error=None,
        summary=summary,
        records=records,
    )
    print(f"results: {args.out}")
    return 0


def _print(summary: list[dict[str, Any]]) -> None:
    from rich.console import Console
    from rich.table import Table

    table = Table(title="one headrace process vs two (--reuse-port) vs Triton (medians)")
    for column in ("model", "proto", "c", *SYSTEMS, "hr-2/hr-1", "hr-1/triton", "hr-2/triton"):
        table.add_column(column)
    for row in summary:
        cells = [
            f"{row[s]['throughput']:.0f} (cpu {row[s]['server_cpu_us_per_inference'] or 0:.0f})"
            if s in row
            else "-"
            for s in SYSTEMS
        ]
        ratios = [
            f"{row[key]:.2f}" if key in row else "-"
            for key in (
                "headrace-2_over_headrace-1",
                "headrace-1_over_triton",
                "headrace-2_over_triton",
            )
        ]
        table.add_row(row["model"], row["protocol"], str(row["concurrency"]), *cells, *ratios)
    Console(width=150).print(table)


if __name__ == "__main__":
    sys.exit(main())
