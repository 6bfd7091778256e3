"""Serving overhead: headrace vs NVIDIA Triton vs PyTriton vs direct execution, one client.

    python benchmarks/serve_overhead.py            # full run (~30 min on 2 cores, 2 rounds)
    python benchmarks/serve_overhead.py --quick    # ~5 min: 1 round, gRPC, concurrency 1 and 16

perf_analyzer drives every server over gRPC and HTTP (binary tensors) at each concurrency.
Models (benchmarks/serve_models/nets.py): identity, the seed MLP and a compute-bound MLP, each
as a Triton python-backend model.py (served by headrace and by Triton from the same repository
directory, and as the same function by PyTriton) and as TorchScript and ONNX (headrace only).
"direct" runs each model file in this process at the batch size headrace's batcher formed.
Systems alternate over rounds (the order rotates) because client and server share the CPU.
Results: benchmarks/results/serve_overhead.json (+ .md), with the machine they ran on.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import shlex
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE / "serve_models"))

import direct  # noqa: E402
import report  # noqa: E402
import servers  # noqa: E402

from headrace.bench.machine import machine_info  # noqa: E402
from headrace.bench.perf_analyzer import (  # noqa: E402
    PerfAnalyzerFailed,
    PerfLoad,
    UnstableMeasurement,
    locate,
    run_perf_analyzer,
)
from repository import FORMATS, Batching, Variant, variants, write_repository  # noqa: E402

SYSTEMS = ("headrace", "triton", "pytriton", "direct")
NETS = ("identity", "mlp", "compute")
PROTOCOLS = ("grpc", "http", "grpc-stream")
"""``grpc-stream`` is gRPC ModelStreamInfer (perf_analyzer --streaming)."""
#: The compute-bound model finishes few requests per window; give it longer windows.
WINDOW_SCALE = {"compute": 3}


def _csv(kind: Callable[[str], Any]) -> Callable[[str], list[Any]]:
    return lambda text: [kind(part) for part in text.split(",") if part]


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--quick", action="store_true", help="1 round, grpc, concurrency 1,16")
    p.add_argument("--systems", type=_csv(str), default=list(SYSTEMS))
    p.add_argument("--models", type=_csv(str), default=list(NETS), help="identity,mlp,compute")
    p.add_argument("--formats", type=_csv(str), default=list(FORMATS))
    p.add_argument(
        "--protocols",
        type=_csv(str),
        default=None,
        help="grpc, http and/or grpc-stream (default grpc,http)",
    )
    p.add_argument("--concurrency", type=_csv(int), default=None, help="default 1,4,16,64")
    p.add_argument("--rounds", type=int, default=None, help="default 2 (1 with --quick)")
    p.add_argument("--window-ms", type=int, default=800, help="perf_analyzer -p")
    p.add_argument("--max-trials", type=int, default=4, help="perf_analyzer -r")
    p.add_argument("--stability", type=float, default=50.0, help="perf_analyzer -s (percent)")
    p.add_argument("--max-batch-size", type=int, default=64)
    p.add_argument("--max-queue-delay-us", type=int, default=100)
    p.add_argument("--instances", type=int, default=1, help="instances per model, every server")
    p.add_argument("--direct-seconds", type=float, default=2.0, help="per model and batch")
    p.add_argument("--perf-analyzer", default=None, help="perf_analyzer executable")
    p.add_argument(
        "--headrace-args",
        type=shlex.split,
        default=[],
        help='extra "headrace serve" arguments, one string (e.g. "--run-now-below-us 0")',
    )
    p.add_argument("--out", type=Path, default=None, help="JSON path (a .md goes next to it)")
    p.add_argument("--keep", action="store_true", help="keep the temp dir (repository, logs)")
    p.add_argument(
        "--summarize",
        type=Path,
        nargs="+",
        default=None,
        metavar="JSON",
        help="measure nothing: merge the records of earlier result files (their rounds add up) "
        "into --out",
    )
    args = p.parse_args(argv)
    quick = {"rounds": 1, "protocols": ["grpc"], "concurrency": [1, 16]}
    full = {"rounds": 2, "protocols": ["grpc", "http"], "concurrency": [1, 4, 16, 64]}
    for key, value in (quick if args.quick else full).items():
        if getattr(args, key) is None:  # an explicit flag wins over the preset
            setattr(args, key, value)
    unknown = sorted(set(args.systems) - set(SYSTEMS))
    if unknown:
        p.error(f"unknown systems {unknown}; choose from {list(SYSTEMS)}")
    if set(args.protocols) - set(PROTOCOLS):
        p.error(f"protocols must be among {list(PROTOCOLS)}, got {args.protocols}")
    if args.out is None:
        stem = "serve_overhead_quick" if args.quick else "serve_overhead"
        args.out = HERE / "results" / f"{stem}.json"
    return args


def measure(
    server: servers.Served,
    variant: Variant,
    protocol: str,
    concurrency: int,
    args: argparse.Namespace,
    tool: str,
) -> dict[str, Any]:
    """One perf_analyzer load, with the server's statistics read before and after it."""
    assert server.ports is not None
    load = PerfLoad(
        model=variant.name,
        url=server.ports.url(protocol),
        protocol=_wire(protocol),
        streaming=protocol == "grpc-stream",
        concurrency=concurrency,
        shapes={variant.input_name: [variant.in_features]},
        measurement_ms=args.window_ms * WINDOW_SCALE.get(variant.net, 1),
        max_trials=args.max_trials,
        stability_percent=args.stability,
    )
    load_avg = os.getloadavg()[0]
    before = server.stats(variant.name)
    cpu_before = (server.cpu_seconds(), servers.children_cpu_seconds())
    stable = True
    try:
        try:
            row = run_perf_analyzer(load, executable=tool)
        except UnstableMeasurement:  # keep the point, flagged: take the next 3 windows as they are
            stable = False
            row = run_perf_analyzer(
                dataclasses.replace(load, stability_percent=1e6, max_trials=3),
                executable=tool,
            )
    except PerfAnalyzerFailed as exc:  # request errors or an overrun: recorded, run goes on
        return {**_identity(server, variant, protocol, concurrency), "error": str(exc)}
    after = server.stats(variant.name)
    server_cpu = server.cpu_seconds() - cpu_before[0]
    client_cpu = servers.children_cpu_seconds() - cpu_before[1]
    inferences = after["inference_count"] - before["inference_count"]
    executions = after["execution_count"] - before["execution_count"]
    record = {
        **_identity(server, variant, protocol, concurrency),
        "stable": stable,
        "load_avg_1m_before": load_avg,
        "inference_count": inferences,
        "execution_count": executions,
        "avg_batch": inferences / executions if executions else None,
        "server_cpu_us_per_inference": server_cpu / inferences * 1e6 if inferences else None,
        "client_cpu_us_per_inference": client_cpu / inferences * 1e6 if inferences else None,
    }
    record.update({k: v for k, v in row.__dict__.items() if k not in ("extra", "concurrency")})
    return record


def _identity(
    server: servers.Served, variant: Variant, protocol: str, concurrency: int
) -> dict[str, Any]:
    return {
        "system": server.system,
        "model": variant.name,
        "net": variant.net,
        "format": variant.format,
        "protocol": protocol,
        "concurrency": concurrency,
    }


def _wire(protocol: str) -> str:
    """perf_analyzer's ``-i`` for one of PROTOCOLS (``grpc-stream`` is gRPC, streaming)."""
    return "grpc" if protocol == "grpc-stream" else protocol


def warm_up(server: servers.Served, variant: Variant, protocol: str, tool: str) -> None:
    """Three short windows at concurrency 4, discarded: connections, threads, first batches."""
    assert server.ports is not None
    run_perf_analyzer(
        PerfLoad(
            model=variant.name,
            url=server.ports.url(protocol),
            protocol=_wire(protocol),
            streaming=protocol == "grpc-stream",
            concurrency=4,
            shapes={variant.input_name: [variant.in_features]},
            measurement_ms=500 * WINDOW_SCALE.get(variant.net, 1),
            max_trials=3,
            stability_percent=1e6,
        ),
        executable=tool,
    )


def run_system(
    system: str,
    chosen: list[Variant],
    workdir: Path,
    args: argparse.Namespace,
    tool: str,
    log: Callable[[str], None],
) -> list[dict[str, Any]]:
    """Start ``system``, run every load on every model it serves, stop it."""
    served = [v for v in chosen if system == "headrace" or v.format == "python"]
    if not served:
        return []
    options = {
        "max_batch_size": args.max_batch_size,
        "max_queue_delay_us": args.max_queue_delay_us,
        "instances": args.instances,
    }
    started = time.monotonic()
    records = []
    with servers.launch(
        system, workdir / "repository", [v.name for v in served], workdir, options
    ) as server:
        log(f"{system} ready in {time.monotonic() - started:.1f} s")
        for variant in served:
            for protocol in args.protocols:
                warm_up(server, variant, protocol, tool)
                for concurrency in args.concurrency:
                    record = measure(server, variant, protocol, concurrency, args, tool)
                    records.append(record)
                    if "error" in record:
                        log(f"[red]{system} {variant.name} {protocol} c={concurrency} failed[/red]: "
                            f"{record['error']}")  # fmt: skip
                        continue
                    log(
                        f"{system:9} {variant.name:20} {protocol:4} c={concurrency:<3} "
                        f"{record['throughput']:9.1f} inf/s  p99 {record['p99_us'] / 1000:7.1f} ms"
                        f"  batch {record['avg_batch'] or 0:5.1f}"
                        + ("" if record["stable"] else "  (unstable)")
                    )
    return records


def run_direct(
    chosen: list[Variant],
    served: list[dict[str, Any]],
    workdir: Path,
    args: argparse.Namespace,
    log: Callable[[str], None],
) -> list[dict[str, Any]]:
    """Each model in-process at every batch size headrace formed for it (rounded), and 1."""
    records = []
    for variant in chosen:
        sizes = {1} | {
            max(1, round(r["avg_batch"]))
            for r in served
            if r["model"] == variant.name and r["system"] == "headrace" and r.get("avg_batch")
        }
        runner = direct.load_direct(variant, workdir / "repository")
        for size in sorted(sizes):
            result = direct.measure_throughput(
                runner, size, variant.in_features, args.direct_seconds
            )
            records.append(
                {"system": "direct", "model": variant.name, "net": variant.net,
                 "format": variant.format, **result}
            )  # fmt: skip
            log(f"direct    {variant.name:20} b={size:<3} {result['throughput']:11.1f} inf/s")
    return records


def tool_versions() -> dict[str, str]:
    """perf_analyzer / Triton / PyTriton versions as installed (best effort)."""
    versions = {"perf_analyzer": "tritonclient 2.51.0 (../shared/tools/perf-analyzer)"}
    try:
        venv_python = servers._triton_venv() / "bin" / "python"
        out = subprocess.run(
            [str(venv_python), "-c", "import importlib.metadata as m, torch;"
             "print(m.version('nvidia-pytriton'), torch.__version__)"],
            capture_output=True, text=True, timeout=60, check=True,
        ).stdout.split()  # fmt: skip
        versions["pytriton"], versions["triton_venv_torch"] = out[0], out[1]
        versions["tritonserver"] = "2.51.0 (bundled with nvidia-pytriton, python backend)"
    except (OSError, subprocess.SubprocessError, IndexError):
        pass
    return versions


def run_rounds(
    args: argparse.Namespace,
    chosen: list[Variant],
    workdir: Path,
    tool: str,
    records: list[dict[str, Any]],
    log: Callable[[str], None],
) -> None:
    """Every round, systems in rotated order, then direct; appends to ``records`` as it goes."""
    batching = Batching(args.max_batch_size, args.max_queue_delay_us, args.instances)
    log(f"writing {len(chosen)} models under {workdir}")
    write_repository(workdir / "repository", chosen, batching)
    served_systems = [s for s in SYSTEMS if s in args.systems and s != "direct"]
    for round_no in range(args.rounds):
        shift = round_no % max(len(served_systems), 1)
        order = served_systems[shift:] + served_systems[:shift]
        log(f"round {round_no + 1}/{args.rounds}: {', '.join(order)}")
        this_round: list[dict[str, Any]] = []
        for system in order:
            this_round += run_system(system, chosen, workdir, args, tool, log)
        if "direct" in args.systems:
            this_round += run_direct(chosen, this_round, workdir, args, log)
        records += [{**record, "round": round_no} for record in this_round]


def write_results(
    args: argparse.Namespace,
    argv: list[str] | None,
    records: list[dict[str, Any]],
    duration_s: float,
    error: str | None,
) -> list[dict[str, Any]]:
    """The JSON (with machine and settings) and the markdown table; returns the summary."""
    summary = report.summarize(records)
    machine = machine_info()
    result = {
        "benchmark": "serve_overhead",
        "date": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "duration_s": round(duration_s, 1),
        "command": " ".join([Path(sys.argv[0]).name, *(argv or sys.argv[1:])]),
        "error": error,
        "machine": machine,
        "tools": tool_versions(),
        "settings": {
            k: v for k, v in vars(args).items() if k not in ("out", "perf_analyzer", "keep")
        },
        "records": records,
        "summary": summary,
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=1, default=str) + "\n")
    args.out.with_suffix(".md").write_text(
        f"# {_title(args, machine)}\n\n{report.markdown_table(summary)}\nThroughput in "
        "inferences/s; latencies in ms; batch = inference_count / execution_count from "
        "headrace's statistics endpoint; direct = best of 5 blocks at that batch size.\n"
    )
    return summary


def _title(args: argparse.Namespace, machine: dict[str, Any]) -> str:
    cpu = f"{machine['cpu_model']}, {machine['cpu_count']} cores"
    return f"serve overhead ({cpu}; medians of {args.rounds} rounds)"


def summarize_files(args: argparse.Namespace) -> int:
    """Merge earlier runs (same machine) into one summary; rounds are renumbered in order."""
    from rich.console import Console

    records: list[dict[str, Any]] = []
    sources = []
    for path in args.summarize:
        earlier = json.loads(path.read_text())
        offset = 1 + max((r["round"] for r in records), default=-1)
        for record in earlier["records"]:
            record["round"] += offset
            if "concurrency" in record:  # early files stored perf_analyzer's float
                record["concurrency"] = int(record["concurrency"])
            records.append(record)
        sources.append({k: earlier.get(k) for k in ("date", "command", "settings", "error")})
        sources[-1]["file"] = path.name
    first = json.loads(args.summarize[0].read_text())
    summary = report.summarize(records)
    rounds = len({r["round"] for r in records})
    title = f"serve overhead ({first['machine']['cpu_model']}; medians of {rounds} rounds)"
    result = {
        "benchmark": "serve_overhead",
        "merged_from": sources,
        "machine": first["machine"],
        "tools": first.get("tools"),
        "records": records,
        "summary": summary,
    }
    args.out.write_text(json.dumps(result, indent=1, default=str) + "\n")
    args.out.with_suffix(".md").write_text(f"# {title}\n\n{report.markdown_table(summary)}")
    Console(width=max(Console().width, 200)).print(report.rich_table(summary, title))
    return 0


def console_log() -> Callable[[str], None]:
    """Timestamped progress lines on stderr."""
    from rich.console import Console

    console = Console(stderr=True, width=200)

    def log(message: str) -> None:
        console.print(f"[{time.strftime('%H:%M:%S')}] {message}", highlight=False)

    return log


def collect(
    args: argparse.Namespace,
    prefix: str,
    rounds: Callable[[list[Variant], Path, str, list[dict[str, Any]]], None],
    log: Callable[[str], None],
) -> tuple[list[dict[str, Any]], str | None]:
    """Run ``rounds(chosen, workdir, tool, records)`` in a fresh working directory.

    Keeps what was measured when it stops early; returns the records and why the run failed
    (it stopped, or loads failed), or None.
    """
    chosen = variants(args.models, args.formats)
    tool = locate(args.perf_analyzer)
    workdir = Path(tempfile.mkdtemp(prefix=prefix))
    records: list[dict[str, Any]] = []
    error = None
    try:
        rounds(chosen, workdir, tool, records)
    except (Exception, KeyboardInterrupt) as exc:  # keep what was measured, then say why
        error = f"{type(exc).__name__}: {exc}"
        log(f"[red]stopped early[/red]: {error}")
    finally:
        if getattr(args, "keep", False):
            log(f"kept {workdir}")
        else:
            shutil.rmtree(workdir, ignore_errors=True)
    failed = [r for r in records if "error" in r]
    if failed and error is None:
        error = f"{len(failed)} load(s) failed; see the records with an 'error' field"
    return records, error


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if args.summarize:
        return summarize_files(args)
    from rich.console import Console

    log = console_log()
    servers.HEADRACE_ARGS[:] = args.headrace_args
    started = time.monotonic()
    records, error = collect(args, "serve-overhead-", lambda *run: run_rounds(args, *run, log), log)
    summary = write_results(args, argv, records, time.monotonic() - started, error)
    table = report.rich_table(summary, _title(args, machine_info()))
    Console(width=max(Console().width, 200)).print(table)
    log(f"wrote {args.out} and {args.out.with_suffix('.md').name}")
    return 1 if error else 0


if __name__ == "__main__":
    sys.exit(main())
