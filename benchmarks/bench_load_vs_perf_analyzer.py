"""``headrace bench load`` vs NVIDIA perf_analyzer: the same points on the same server.

    python benchmarks/bench_load_vs_perf_analyzer.py            # ~10 min on 2 cores
    python benchmarks/bench_load_vs_perf_analyzer.py --rounds 1 --concurrency 4

One ``headrace serve`` on the examples repository (``headrace examples create``) serves the
identity model (``identity_bytes``, BYTES, 16 strings of 128 characters per request) and the
MLP (``mlp``, ONNX). Both load generators measure every (model, protocol, concurrency) point
with the same windows and stability rule; the order of the two alternates from point to point
and round to round, because client and server share the CPU. The check: headrace's throughput
within 10% of perf_analyzer's, the median over rounds per point; every row is recorded.
Results: benchmarks/results/bench_load_vs_perf_analyzer.json, with the machine.

``--models decoupled_repeat`` adds a decoupled python-backend model written by this script
(three responses per request, then the final flag), measured over gRPC streaming only (the one
wire a decoupled model answers on); its points also compare the responses per second.

``--server-cpus 1 --client-cpus 0`` pins the server's process tree and the load generators
(this process, its worker processes, perf_analyzer) to disjoint cores, so that neither
generator's threads wait behind the server's for a core: each generator then measures the
server, not the contention. Unpinned, a generator's own time per request at c=1 includes
waiting for a core the server holds.
"""

from __future__ import annotations

import argparse
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from collections import defaultdict
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE / "serve_models"))

import report  # noqa: E402
import servers  # noqa: E402

from headrace.bench.load import (  # noqa: E402
    GRPC_STREAMS_PER_CONNECTION,
    LoadPoint,
    LoadSettings,
    run_load,
)
from headrace.bench.perf_analyzer import locate  # noqa: E402

MODELS = {"identity_bytes": {"INPUT0": [16]}, "mlp": {}}
DECOUPLED = "decoupled_repeat"
"""A decoupled model this script writes: for input n, responses n, n + 1, n + 2, then the
final flag on its own."""
_DECOUPLED_CONFIG = f"""name: "{DECOUPLED}"
backend: "python"
max_batch_size: 0
model_transaction_policy {{ decoupled: true }}
input [ {{ name: "IN" data_type: TYPE_INT32 dims: [ 1 ] }} ]
output [ {{ name: "OUT" data_type: TYPE_INT32 dims: [ 1 ] }} ]
"""
_DECOUPLED_MODEL = """import numpy as np
import triton_python_backend_utils as pb_utils


class TritonPythonModel:
    def execute(self, requests):
        for request in requests:
            sender = request.get_response_sender()
            n = int(pb_utils.get_input_tensor_by_name(request, "IN").as_numpy()[0])
            for step in range(3):
                out = pb_utils.Tensor("OUT", np.array([n + step], dtype=np.int32))
                sender.send(pb_utils.InferenceResponse(output_tensors=[out]))
            sender.send(flags=pb_utils.TRITONSERVER_RESPONSE_COMPLETE_FINAL)
        return None
"""
PROTOCOLS = ("http", "grpc", "grpc-stream")
GENERATORS = ("headrace", "perf_analyzer")
TOLERANCE = 0.10


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument(
        "--models",
        default=",".join(MODELS),
        help=f"of identity_bytes, mlp, {DECOUPLED} (default identity_bytes,mlp)",
    )
    p.add_argument("--protocols", default=",".join(PROTOCOLS), help="(default all three)")
    p.add_argument("--concurrency", default="1,4,16", help="(default 1,4,16)")
    p.add_argument("--rounds", type=int, default=2, help="(default 2)")
    p.add_argument("--window-ms", type=int, default=1000, help="(default 1000)")
    p.add_argument("--max-trials", type=int, default=8, help="(default 8)")
    p.add_argument("--stability", type=float, default=20.0, help="percent (default 20)")
    p.add_argument("--processes", type=int, default=2, help="headrace client processes (2)")
    p.add_argument(
        "--grpc-streams-per-connection",
        type=int,
        default=GRPC_STREAMS_PER_CONNECTION,
        help=f"headrace's generator (default {GRPC_STREAMS_PER_CONNECTION}, as perf_analyzer)",
    )
    p.add_argument("--perf-analyzer", default=None, help="executable (default: located)")
    p.add_argument(
        "--server-cpus", default="", help="cores for the server's processes, e.g. 1 (default: any)"
    )
    p.add_argument(
        "--client-cpus",
        default="",
        help="cores for the load generators, e.g. 0 (default: any)",
    )
    p.add_argument(
        "--out", type=Path, default=HERE / "results" / "bench_load_vs_perf_analyzer.json"
    )
    return p.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    started = time.monotonic()
    tool = locate(args.perf_analyzer)
    models = [m for m in args.models.split(",") if m]
    protocols = [p for p in args.protocols.split(",") if p]
    concurrency = [int(c) for c in args.concurrency.split(",") if c]
    records: list[dict[str, Any]] = []
    with tempfile.TemporaryDirectory(prefix="bench-load-") as tmp:
        repository = Path(tmp) / "repo"
        subprocess.run(
            [sys.executable, "-m", "headrace.cli", "examples", "create", str(repository)],
            check=True,
            capture_output=True,
        )
        if DECOUPLED in models:
            (repository / DECOUPLED / "1").mkdir(parents=True)
            (repository / DECOUPLED / "config.pbtxt").write_text(_DECOUPLED_CONFIG)
            (repository / DECOUPLED / "1" / "model.py").write_text(_DECOUPLED_MODEL)
        with servers.launch("headrace", repository, models, Path(tmp), {}) as server:
            assert server.ports is not None
            if args.server_cpus:
                pin_tree(server.process.pid, _cpus(args.server_cpus))
            if args.client_cpus:
                os.sched_setaffinity(0, _cpus(args.client_cpus))  # inherited by generators
            flip = 0
            for round_no in range(args.rounds):
                for model in models:
                    for protocol in protocols:
                        if model == DECOUPLED and protocol != "grpc-stream":
                            continue  # a decoupled model answers over a stream only
                        for c in concurrency:
                            order = GENERATORS if flip % 2 == 0 else GENERATORS[::-1]
                            flip += 1
                            for generator in order:
                                settings = _settings(args, server.ports, model, protocol)
                                before = _client_cpu_s(), time.monotonic()
                                (result,) = run_load(
                                    settings, [LoadPoint(concurrency=c)], generator, tool
                                )
                                record = {"model": model, "round": round_no, **result.as_dict()}
                                record.update(_client_use(before, record))
                                records.append(record)
                                print(_line(record), flush=True)
    summary = summarize(records)
    _print(summary)
    report.write_document(
        args.out,
        "bench_load_vs_perf_analyzer",
        sys.argv[1:] if argv is None else argv,
        args,
        started=started,
        error=None,
        summary=summary,
        records=records,
    )
    print(f"results: {args.out}")
    return 0 if all(row["within_10pct"] for row in summary["points"]) else 1


def _cpus(text: str) -> set[int]:
    return {int(part) for part in text.split(",") if part}


def pin_tree(pid: int, cpus: set[int]) -> None:
    """Every thread of ``pid`` and of its children to ``cpus`` (threads started later inherit)."""
    import psutil

    process = psutil.Process(pid)
    for member in [process, *process.children(recursive=True)]:
        for thread in member.threads():
            os.sched_setaffinity(thread.id, cpus)


def _client_cpu_s() -> float:
    """CPU seconds of this process and its finished children: the load generator's own.

    The server is a child that is still running, so it is not counted; the generator's
    worker processes and perf_analyzer have exited (and been waited for) when a point ends.
    """
    total = 0.0
    for who in (resource.RUSAGE_SELF, resource.RUSAGE_CHILDREN):
        usage = resource.getrusage(who)
        total += usage.ru_utime + usage.ru_stime
    return total


def _client_use(before: tuple[float, float], record: dict[str, Any]) -> dict[str, float]:
    """The generator's CPU over the whole point (warm-up and unstable windows included):
    cores it kept busy, and an estimate per request at the measured throughput."""
    cpu_s, wall_s = _client_cpu_s() - before[0], time.monotonic() - before[1]
    use = {"client_cpu_s": round(cpu_s, 3), "client_wall_s": round(wall_s, 3)}
    use["client_cores"] = round(cpu_s / wall_s, 3) if wall_s > 0 else 0.0
    if record.get("throughput"):
        use["client_cpu_us_per_request"] = round(cpu_s / (record["throughput"] * wall_s) * 1e6, 1)
    return use


def _settings(args: argparse.Namespace, ports: Any, model: str, protocol: str) -> LoadSettings:
    wire = "grpc" if protocol.startswith("grpc") else "http"
    return LoadSettings(
        url=f"127.0.0.1:{ports.grpc if wire == 'grpc' else ports.http}",
        model=model,
        protocol=wire,
        streaming=protocol == "grpc-stream",
        shapes=MODELS.get(model, {}),
        window_ms=args.window_ms,
        stability_percent=args.stability,
        max_trials=args.max_trials,
        processes=args.processes,
        grpc_streams_per_connection=args.grpc_streams_per_connection,
    )


def _line(record: dict[str, Any]) -> str:
    where = f"r{record['round']} {record['model']} {record['protocol']} c={record['concurrency']}"
    if "throughput" not in record:
        return f"{where} {record['generator']}: {record.get('error', '')[:200]}"
    return (
        f"{where} {record['generator']}: {record['throughput']:.1f} infer/s, "
        f"p50 {record['p50_us']:.0f} us, p99 {record['p99_us']:.0f} us, stable {record['stable']}"
    )


def summarize(records: list[dict[str, Any]]) -> dict[str, Any]:
    """Per point: each generator's median throughput and p50 over rounds, and their ratio."""
    groups: dict[tuple[str, str, int], dict[str, list[dict[str, Any]]]] = defaultdict(
        lambda: defaultdict(list)
    )
    for r in records:
        if "throughput" in r:
            groups[(r["model"], r["protocol"], r["concurrency"])][r["generator"]].append(r)
    points = []
    for (model, protocol, c), by in sorted(groups.items()):
        row: dict[str, Any] = {"model": model, "protocol": protocol, "concurrency": c}
        for generator in GENERATORS:
            rows = by.get(generator, [])
            row[f"{generator}_throughput"] = (
                statistics.median(x["throughput"] for x in rows) if rows else None
            )
            row[f"{generator}_p50_us"] = (
                statistics.median(x["p50_us"] for x in rows) if rows else None
            )
            row[f"{generator}_rounds"] = len(rows)
            responses = [x["response_throughput"] for x in rows if x.get("response_throughput")]
            if responses:
                row[f"{generator}_response_throughput"] = statistics.median(responses)
            per_request = [
                x["client_cpu_us_per_request"] for x in rows if "client_cpu_us_per_request" in x
            ]
            row[f"{generator}_client_cpu_us_per_request"] = (
                statistics.median(per_request) if per_request else None
            )
        ours, theirs = row["headrace_throughput"], row["perf_analyzer_throughput"]
        row["ratio"] = ours / theirs if ours and theirs else None
        ours_p50, theirs_p50 = row["headrace_p50_us"], row["perf_analyzer_p50_us"]
        row["p50_ratio"] = ours_p50 / theirs_p50 if ours_p50 and theirs_p50 else None
        ours_r = row.get("headrace_response_throughput")
        theirs_r = row.get("perf_analyzer_response_throughput")
        if ours_r and theirs_r:
            row["response_ratio"] = ours_r / theirs_r
        row["within_10pct"] = row["ratio"] is not None and abs(row["ratio"] - 1) <= TOLERANCE
        points.append(row)
    ratios = [p["ratio"] for p in points if p["ratio"] is not None]
    return {
        "tolerance": TOLERANCE,
        "ratio_range": [min(ratios), max(ratios)] if ratios else None,
        "points": points,
    }


def _print(summary: dict[str, Any]) -> None:
    from rich.console import Console
    from rich.table import Table

    table = Table(title="bench load vs perf_analyzer (median over rounds)")
    responses = any("response_ratio" in p for p in summary["points"])
    for column in (
        "model",
        "protocol",
        "c",
        "headrace inf/s",
        "perf_analyzer inf/s",
        "ratio",
        *(("responses/s ratio",) if responses else ()),
        "client CPU µs/req (headrace / perf_analyzer)",
    ):
        table.add_column(column)
    for p in summary["points"]:
        ratio = f"{p['ratio']:.3f}" if p["ratio"] is not None else "-"
        mark = "" if p["within_10pct"] else " [red]✗[/red]"
        table.add_row(
            p["model"],
            p["protocol"],
            str(p["concurrency"]),
            f"{p['headrace_throughput'] or 0:.1f}",
            f"{p['perf_analyzer_throughput'] or 0:.1f}",
            ratio + mark,
            *(
                (f"{p['response_ratio']:.3f}" if "response_ratio" in p else "-",)
                if responses
                else ()
            ),
            f"{_us(p['headrace_client_cpu_us_per_request'])} / "
            f"{_us(p['perf_analyzer_client_cpu_us_per_request'])}",
        )
    Console(width=140).print(table)


def _us(value: float | None) -> str:
    return "-" if value is None else f"{value:.0f}"


if __name__ == "__main__":
    sys.exit(main())
