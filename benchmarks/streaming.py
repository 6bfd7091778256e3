"""The streaming detector side by side: headrace vs NVIDIA Triton 2.51, k streaming clients.

    python benchmarks/streaming.py                      # ~5 min: 4 rounds, k = 1, 4, 8, paced k = 8
    python benchmarks/streaming.py --rounds 1 --seconds 3 --streams 4 --paced-streams 0   # a look

The workload is ``streaming_detector`` (``examples/streaming_cleaner``): a snapshotter that
keeps each stream's last 4 s of two channels at 256 Hz, a convolutional cleaner and a
detector, as one ensemble; each client streams 1-second updates ([2, 256] FP32) on its own
sequence over gRPC ``ModelStreamInfer`` (or HTTP, ``--protocols``).

| system | serves | what runs the models |
| --- | --- | --- |
| headrace | the python repository (below) | ``headrace serve --python-runtime process``: each ``model.py`` instance in a worker process |
| headrace-in-server | the same directory | ``headrace serve --python-runtime in-server``: the three ``model.py`` files on the server's own threads |
| triton | the same directory | NVIDIA Triton 2.51 (``../shared/tools/tritonserver``): each ``model.py`` in a python-backend stub process |
| headrace-onnx | headrace's examples repository | ``headrace serve``: the snapshotter with implicit state, cleaner and detector as ONNX (onnxruntime) |

The python repository: the snapshotter (``add_snapshotter(..., state="model")``, the state
Triton 2.51's python backend can keep), ``strain_cleaner`` and ``strain_detector`` as
python-backend ``model.py`` files that run the torch modules of the examples
(``StrainCleaner``, ``StrainDetector``: their source in ``nets.py``, the examples' seeded
weights in ``weights.pt``), concatenating every request of an ``execute`` call into one
batch, and the ensemble. Every model has ``max_batch_size`` 8; cleaner and detector batch
dynamically (100 µs), as in the examples repository, and set torch to ``--torch-threads``
intra-op threads (default 1; 0 leaves torch's default of every core, which on 2 cores lets
Triton's two torch stubs spin four OpenMP threads against each other).

How it runs: the three servers start once (127.0.0.1, free ports) and stay up; each gets a
warm-up sequence. Then, per round, every load runs on every system in turn, the order of the
systems turning around each round (client and servers share this machine's cores, whose load
drifts): a closed loop per ``--streams`` k (k clients, each sending its next update as soon as
the last is answered: the most the system can take, one update in flight per stream) and, with
``--paced-streams``, an open loop at ``--paced-rate`` updates/s per stream (the same offered
load for every system: latency at equal throughput). Each load lasts ``--seconds`` (its last
update ends each sequence; answers get 30 s more). Around each load the benchmark reads the
CPU time of the server's whole process tree (Triton's stubs included) and of itself (the
clients), the idle servers' CPU, the CPU of every other process on the machine, the 1-minute
load average, and each step model's statistics (batch formed, compute time per update). The
first answers of stream 0 are checked against the torch modules run here
(``streaming_cleaner.check``).

Output: ``results/streaming.json`` (machine, settings, every load, the summary: medians over
rounds per system, ratios to Triton) and a rich table.
"""

from __future__ import annotations

import argparse
import inspect
import io
import os
import statistics
import sys
import tempfile
import time
from collections import defaultdict
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
EXAMPLE = HERE.parent / "examples" / "streaming_cleaner"
sys.path.insert(0, str(HERE / "serve_models"))
sys.path.insert(0, str(EXAMPLE))

import report  # noqa: E402
import servers  # noqa: E402

SYSTEMS = ("headrace", "triton", "headrace-onnx", "headrace-in-server")
RUNTIME_ARGS = {
    "headrace": ["--python-runtime", "process"],
    "headrace-in-server": ["--python-runtime", "in-server"],
}
STEPS = ("snapshotter", "strain_cleaner", "strain_detector")
MODEL = "streaming_detector"
ARCHIVE_UPDATES = 64  # per stream; loads cycle through them

TORCH_MODEL_PY = '''\
"""A torch module (class ``net`` of nets.py, weights.pt) as a python-backend model: every
request of an execute call goes into one batch; ``torch_threads`` > 0 sets torch's threads."""

import importlib.util
import json
import os

import numpy as np
import torch
import triton_python_backend_utils as pb_utils


class TritonPythonModel:
    def initialize(self, args):
        config = json.loads(args["model_config"])
        parameters = {k: v["string_value"] for k, v in config["parameters"].items()}
        net = parameters["net"]
        threads = int(parameters.get("torch_threads", "0"))
        if threads > 0:  # torch's thread pool is per process: one stub, or all of headrace
            torch.set_num_threads(threads)
        directory = os.path.join(args["model_repository"], args["model_version"])
        spec = importlib.util.spec_from_file_location(
            f"nets_{net}_{id(self)}", os.path.join(directory, "nets.py")
        )
        nets = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(nets)
        self.net = getattr(nets, net)().eval()
        weights = torch.load(os.path.join(directory, "weights.pt"), weights_only=True)
        self.net.load_state_dict(weights)
        self.input = config["input"][0]["name"]
        self.output = config["output"][0]["name"]

    def execute(self, requests):
        arrays = [pb_utils.get_input_tensor_by_name(r, self.input).as_numpy() for r in requests]
        with torch.inference_mode():
            result = self.net(torch.from_numpy(np.concatenate(arrays))).numpy()
        responses = []
        start = 0
        for array in arrays:
            part = result[start : start + len(array)]
            start += len(array)
            output = pb_utils.Tensor(self.output, part)
            responses.append(pb_utils.InferenceResponse(output_tensors=[output]))
        return responses
'''


def write_python_repository(root: Path, torch_threads: int = 1) -> None:
    """The streaming detector as python-backend models, servable by headrace and Triton;
    ``torch_threads`` (0: torch's default, every core) goes to the torch models' config."""
    import torch

    from headrace.repository import ModelRepository
    from headrace.repository.example_models import StrainCleaner, StrainDetector, seeded
    from headrace.repository.examples import (
        STREAM_CHANNELS,
        STREAM_CLEANER_SEED,
        STREAM_DETECTOR_SEED,
        STREAM_SNAPSHOT,
        STREAM_UPDATE,
    )
    from headrace.repository.snapshotter import add_snapshotter

    header = "import torch\n\nnn = torch.nn"
    nets = "\n\n".join(
        [header, inspect.getsource(StrainCleaner), inspect.getsource(StrainDetector)]
    )
    repo = ModelRepository(root)
    snapshotter = add_snapshotter(
        repo,
        channels=STREAM_CHANNELS,
        snapshot_size=STREAM_SNAPSHOT,
        update_size=STREAM_UPDATE,
        state="model",
    )
    shape = [STREAM_CHANNELS, STREAM_SNAPSHOT]
    entries = {}
    for name, cls, seed, tensors in (
        ("strain_cleaner", StrainCleaner, STREAM_CLEANER_SEED, (("noisy", shape), ("cleaned", shape))),
        ("strain_detector", StrainDetector, STREAM_DETECTOR_SEED, (("strain", shape), ("probability", [1]))),
    ):  # fmt: skip
        (inp, in_dims), (out, out_dims) = tensors
        entry = repo.add(
            name,
            backend="python",
            max_batch_size=8,
            inputs=[(inp, "FP32", in_dims)],
            outputs=[(out, "FP32", out_dims)],
        )
        weights = io.BytesIO()
        torch.save(seeded(cls, seed).state_dict(), weights)
        entry.add_version_file(1, "model.py", TORCH_MODEL_PY.encode())
        entry.add_version_file(1, "nets.py", nets.encode())
        entry.add_version_file(1, "weights.pt", weights.getvalue())
        entry.config.set_parameter("net", cls.__name__)
        entry.config.set_parameter("torch_threads", str(torch_threads))
        entry.config.add_instance_group(count=1, kind="cpu")
        entry.config.set_dynamic_batching(max_queue_delay_us=100)
        entries[name] = entry
    cleaner, detector = entries["strain_cleaner"], entries["strain_detector"]
    pipeline = repo.add(MODEL, platform="ensemble")
    pipeline.add_input(snapshotter.inputs["update"])
    pipeline.pipe(snapshotter.outputs["snapshot"], cleaner.inputs["noisy"])
    pipeline.pipe(cleaner.outputs["cleaned"], detector.inputs["strain"])
    pipeline.add_output(cleaner.outputs["cleaned"])
    pipeline.add_output(detector.outputs["probability"])
    pipeline.export_version(None)


@dataclass(frozen=True)
class Load:
    """One measured load: ``rate`` None is the closed loop."""

    protocol: str
    streams: int
    rate: float | None

    @property
    def mode(self) -> str:
        return "closed" if self.rate is None else "paced"


@contextmanager
def start_servers(
    workdir: Path, systems: list[str], torch_threads: int
) -> Iterator[dict[str, Any]]:
    """Every system's server, up together; all stopped on the way out, whatever happens."""
    from headrace.repository.examples import create_examples_repository

    python_repo = workdir / "python-repository"
    write_python_repository(python_repo, torch_threads)
    repos = {"headrace": python_repo, "triton": python_repo, "headrace-in-server": python_repo}
    if "headrace-onnx" in systems:
        repos["headrace-onnx"] = workdir / "examples-repository"
        create_examples_repository(repos["headrace-onnx"])
    with ExitStack() as stack:
        running = {}
        for system in systems:
            home = workdir / system
            home.mkdir()
            kind = "triton" if system == "triton" else "headrace"
            extra = RUNTIME_ARGS.get(system, [])
            server = servers.launch(kind, repos[system], [MODEL], home, {}, extra_args=extra)
            running[system] = stack.enter_context(server)
        yield running


def step_stats(server: Any) -> dict[str, dict[str, int]]:
    """Counts and times of each step model, from the server's statistics endpoint."""
    out = {}
    for model in STEPS:
        stats = server.stats(model)
        inference = stats["inference_stats"]
        out[model] = {
            "inferences": int(stats["inference_count"]),
            "executions": int(stats["execution_count"]),
            "queue_ns": int(inference["queue"]["ns"]),
            "compute_ns": sum(
                int(inference[k]["ns"])
                for k in ("compute_input", "compute_infer", "compute_output")
            ),
        }
    return out


def stats_delta(
    before: dict[str, dict[str, int]], after: dict[str, dict[str, int]], updates: int
) -> dict[str, dict[str, float | None]]:
    """Per step: inferences and executions counted, the batch formed (their ratio), and queue
    and compute microseconds per update."""
    out: dict[str, dict[str, float | None]] = {}
    for model, now in after.items():
        then = before[model]
        executions = now["executions"] - then["executions"]
        inferences = now["inferences"] - then["inferences"]
        out[model] = {
            "inferences": inferences,
            "executions": executions,
            "avg_batch": inferences / executions if executions else None,
            "queue_us_per_update": (now["queue_ns"] - then["queue_ns"]) / 1e3 / updates
            if updates
            else None,
            "compute_us_per_update": (now["compute_ns"] - then["compute_ns"]) / 1e3 / updates
            if updates
            else None,
        }
    return out


def measure(
    system: str,
    running: dict[str, Any],
    load: Load,
    seconds: float,
    first_sequence_id: int,
    archive: Any,
    keep: int,
) -> dict[str, Any]:
    """One load on one system: throughput, latency, CPU per update, step statistics."""
    from stream_load import LoadPlan, run_load

    server = running[system]
    others = {name: s for name, s in running.items() if name != system}
    plan = LoadPlan(
        url=server.ports.url(load.protocol),
        protocol=load.protocol,
        streams=load.streams,
        rate=load.rate,
        duration_s=seconds,
        max_in_flight=1 if load.rate is None else 4,
        first_sequence_id=first_sequence_id,
        keep=keep,
    )
    load_avg = os.getloadavg()[0]
    stats0 = step_stats(server)
    busy0 = machine_busy_seconds()
    server0 = server.cpu_seconds()
    others0 = {name: s.cpu_seconds() for name, s in others.items()}
    result = run_load(plan, lambda s, i: archive[s, i % ARCHIVE_UPDATES])
    server_cpu = server.cpu_seconds() - server0
    idle_cpu = {name: round(s.cpu_seconds() - others0[name], 3) for name, s in others.items()}
    others_cpu = sum(idle_cpu.values())
    busy = machine_busy_seconds() - busy0
    elapsed = max(result.elapsed_s, 1e-9)
    stats = stats_delta(stats0, step_stats(server), result.answered)
    summary = result.summary()
    answered = max(result.answered, 1)
    record = {
        "system": system,
        "mode": load.mode,
        **summary,
        "p50_ms": summary["latency_ms"]["p50"],
        "p99_ms": summary["latency_ms"]["p99"],
        "server_cpu_us_per_update": round(server_cpu / answered * 1e6, 1),
        "client_cpu_us_per_update": round(result.client_cpu_s / answered * 1e6, 1),
        "server_cores_busy": round(server_cpu / elapsed, 2),
        "client_cores_busy": round(result.client_cpu_s / elapsed, 2),
        "idle_servers_cpu_s": idle_cpu,
        "other_processes_cpu_s": round(busy - server_cpu - others_cpu - result.client_cpu_s, 2),
        "load_avg_1m_before": round(load_avg, 2),
        "steps": stats,
    }
    if keep:
        from streaming_cleaner import check

        record["answers_checked"] = len(result.kept)
        record["max_abs_diff_vs_torch"] = check(result.kept)
    return record


def machine_busy_seconds() -> float:
    """CPU time the whole machine has spent busy (every core, every process) so far."""
    import psutil

    times = psutil.cpu_times()
    return float(sum(times) - times.idle - getattr(times, "iowait", 0.0))


def rotate(items: list[str], round_no: int) -> list[str]:
    """The systems' order in round ``round_no``: turned by one place each round."""
    shift = round_no % len(items)
    return items[shift:] + items[:shift]


def _median(values: list[float]) -> float | None:
    return statistics.median(values) if values else None


def summarize(records: list[dict[str, Any]], baseline: str = "triton") -> list[dict[str, Any]]:
    """One row per (protocol, mode, streams, rate): every system's medians over rounds (and its
    throughput range), and each system's ratio to ``baseline``: throughput and p99 of the
    medians, and both ratios round by round."""
    groups: dict[tuple[Any, ...], dict[str, list[dict[str, Any]]]] = defaultdict(
        lambda: defaultdict(list)
    )
    for r in records:
        if r.get("errors") or "error" in r:
            continue
        key = (r["protocol"], r["mode"], r["streams"], r["rate_per_stream"])
        groups[key][r["system"]].append(r)
    rows = []
    for (protocol, mode, streams, rate), by_system in sorted(
        groups.items(), key=lambda kv: (kv[0][0], kv[0][1], kv[0][2], kv[0][3] or 0)
    ):
        row: dict[str, Any] = {"protocol": protocol, "mode": mode, "streams": streams, "rate": rate}
        for system, group in by_system.items():
            throughput = [g["updates_per_s"] for g in group]
            row[system] = {
                "rounds": len(group),
                "updates_per_s": _median(throughput),
                "updates_per_s_min": min(throughput),
                "updates_per_s_max": max(throughput),
                **{
                    metric: _median([g[metric] for g in group])
                    for metric in (
                        "samples_per_s",
                        "p50_ms",
                        "p99_ms",
                        "server_cpu_us_per_update",
                        "client_cpu_us_per_update",
                    )
                },
            }
        base = row.get(baseline)
        for system in by_system:
            if system == baseline or base is None:
                continue
            mine = row[system]
            row[f"{system}_over_{baseline}"] = {
                "updates_per_s": _ratio(mine["updates_per_s"], base["updates_per_s"]),
                "p99": _ratio(mine["p99_ms"], base["p99_ms"]),
                "server_cpu_per_update": _ratio(
                    mine["server_cpu_us_per_update"], base["server_cpu_us_per_update"]
                ),
                **_per_round(by_system[system], by_system[baseline]),
            }
        rows.append(row)
    return rows


def _per_round(mine: list[dict[str, Any]], base: list[dict[str, Any]]) -> dict[str, Any]:
    """Ratios within each round (the two loads ran minutes apart at most, so they share the
    machine's load of the moment): throughput and p99, every round's and their range."""
    by_round = {r["round"]: r for r in base if "round" in r}
    pairs = [(r, by_round[r["round"]]) for r in mine if r.get("round") in by_round]
    throughput = [_ratio(a["updates_per_s"], b["updates_per_s"]) for a, b in pairs]
    p99 = [_ratio(a["p99_ms"], b["p99_ms"]) for a, b in pairs]
    return {
        "updates_per_s_by_round": throughput,
        "p99_by_round": p99,
        "updates_per_s_rounds_won": sum(1 for x in throughput if x is not None and x >= 1.0),
    }


def _ratio(a: float | None, b: float | None) -> float | None:
    return round(a / b, 3) if a is not None and b else None


def print_table(summary: list[dict[str, Any]], systems: list[str], title: str) -> None:
    from rich.console import Console
    from rich.table import Table

    table = Table(title=title)
    for column in ("proto", "load", "k"):
        table.add_column(column)
    for system in systems:
        table.add_column(f"{system}\nupd/s", justify="right")
        table.add_column(f"{system}\np50/p99 ms", justify="right")
        table.add_column(f"{system}\nsrv CPU µs/upd", justify="right")
    others = [s for s in systems if s != "triton"]
    for system in others:
        table.add_column(f"{system}/triton\nupd/s [rounds], p99", justify="right")
    for row in summary:
        load = "closed" if row["mode"] == "closed" else f"{row['rate']:g}/s"
        cells = [row["protocol"], load, str(row["streams"])]
        for system in systems:
            figures = row.get(system)
            if figures is None:
                cells += ["-", "-", "-"]
                continue
            cells.append(f"{figures['updates_per_s']:,.0f}")
            cells.append(f"{figures['p50_ms']:.1f} / {figures['p99_ms']:.1f}")
            cells.append(f"{figures['server_cpu_us_per_update']:,.0f}")
        for system in others:
            ratio = row.get(f"{system}_over_triton")
            cells.append(_ratio_cell(ratio))
        table.add_row(*cells)
    Console(width=230).print(table)


def _ratio_cell(ratio: dict[str, Any] | None) -> str:
    if not ratio or ratio["updates_per_s"] is None:
        return "-"
    rounds = [x for x in ratio["updates_per_s_by_round"] if x is not None]
    spread = f" [{min(rounds):.2f}-{max(rounds):.2f}]" if rounds else ""
    p99 = f"{ratio['p99']:.2f}" if ratio["p99"] is not None else "-"
    return f"{ratio['updates_per_s']:.2f}{spread}, {p99}"


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--systems", default=",".join(SYSTEMS))
    parser.add_argument("--protocols", default="grpc", help="grpc,http")
    parser.add_argument("--streams", default="1,4,8", help="k of the closed loops")
    parser.add_argument(
        "--paced-streams", type=int, default=8, help="k of the paced load (0: none)"
    )
    parser.add_argument("--paced-rate", type=float, default=40.0, help="updates/s per paced stream")
    parser.add_argument(
        "--torch-threads", type=int, default=1,
        help="torch threads of each python torch model (0: torch's default, every core)",
    )  # fmt: skip
    parser.add_argument("--seconds", type=float, default=5.0, help="length of each load")
    parser.add_argument("--rounds", type=int, default=4)
    parser.add_argument("--out", type=Path, default=HERE / "results" / "streaming.json")
    parser.add_argument("--keep", action="store_true", help="keep the repositories and logs")
    args = parser.parse_args(argv)
    args.systems = [s for s in args.systems.split(",") if s]
    args.protocols = [p for p in args.protocols.split(",") if p]
    args.streams = [int(k) for k in args.streams.split(",") if k]
    unknown = set(args.systems) - set(SYSTEMS)
    if unknown or not args.systems:
        parser.error(f"--systems: choose from {', '.join(SYSTEMS)}")
    if args.rounds < 1 or args.seconds <= 0 or not all(0 < k <= 8 for k in args.streams):
        parser.error("--rounds >= 1, --seconds > 0, and 1 <= k <= 8 (the snapshotter's slots)")
    if not 0 <= args.paced_streams <= 8:
        parser.error("--paced-streams: 0 to 8 (the snapshotter's slots)")
    return args


def loads(args: argparse.Namespace) -> list[Load]:
    out = [Load(p, k, None) for p in args.protocols for k in args.streams]
    if args.paced_streams:
        out += [Load(p, args.paced_streams, args.paced_rate) for p in args.protocols]
    return out


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    from strain import record_archive
    from stream_load import warm_up

    from headrace.repository.examples import STREAM_CHANNELS, STREAM_UPDATE

    started = time.monotonic()
    records: list[dict[str, Any]] = []
    archive = record_archive(
        8, ARCHIVE_UPDATES, channels=STREAM_CHANNELS, update_size=STREAM_UPDATE
    )
    workdir = Path(tempfile.mkdtemp(prefix="streaming-bench-"))
    error = None
    try:
        with start_servers(workdir, args.systems, args.torch_threads) as running:
            print(f"servers up in {time.monotonic() - started:.0f} s: {', '.join(running)}")
            from stream_load import LoadPlan

            for server in running.values():
                for protocol in args.protocols:
                    plan = LoadPlan(url=server.ports.url(protocol), protocol=protocol)
                    warm_up(plan, (STREAM_CHANNELS, STREAM_UPDATE), updates=20)
            sequence = 1
            for round_no in range(args.rounds):
                for load in loads(args):
                    for system in rotate(args.systems, round_no):
                        keep = 8 if round_no == 0 else 0
                        record = measure(
                            system, running, load, args.seconds, sequence, archive, keep
                        )
                        sequence += 100
                        record["round"] = round_no
                        records.append(record)
                        print(
                            f"round {round_no + 1} {load.protocol} {load.mode} k={load.streams} "
                            f"{system:>13}: {record['updates_per_s']:8.1f} upd/s  p50 "
                            f"{record['p50_ms']:6.2f}  p99 {record['p99_ms']:6.2f} ms  server "
                            f"{record['server_cpu_us_per_update']:7.0f} µs/upd  errors "
                            f"{record['errors']}",
                            flush=True,
                        )
    except Exception as exc:  # recorded with what was measured before it
        error = f"{type(exc).__name__}: {exc}"
        print(f"stopped: {error}", file=sys.stderr)
    finally:
        if not args.keep:
            import shutil

            shutil.rmtree(workdir, ignore_errors=True)
    summary = summarize(records)
    report.write_document(
        args.out,
        "streaming",
        argv if argv is not None else sys.argv[1:],
        args,
        started=started,
        error=error,
        summary=summary,
        records=records,
    )
    print_table(summary, args.systems, f"streaming_detector, medians of {args.rounds} rounds")
    print(f"results: {args.out}" + (f" (kept {workdir})" if args.keep else ""))
    failed = error or any(r["errors"] for r in records)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
