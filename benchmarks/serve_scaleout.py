"""``headrace serve --ray-address``: scaling over 1 -> 2 -> 3 simulated nodes, and what a Ray
actor costs against a local instance of the same model.

    python benchmarks/serve_scaleout.py                         # ~5 min
    python benchmarks/serve_scaleout.py --rounds 1 --window-ms 1000   # a look

Ray listens on every interface: run it inside a private network namespace, as the Ray tests:
    unshare -n sh -c 'ip link set lo up && exec env RAY_USAGE_STATS_ENABLED=0 \\
        python benchmarks/serve_scaleout.py'

The cluster is one ``ray.cluster_utils.Cluster`` on this machine: a head with no CPU and three
worker nodes with one CPU each, so N actors of one CPU sit on N different nodes. Two parts:

- **scale-out**: model ``sleepy``, a python-backend ``model.py`` that sleeps ``--batch-ms`` per
  batch (a fixed cost per batch that takes no CPU, so this 2-core box can show scaling:
  ``max_batch_size`` 8, dynamic batching), with ``instance_group`` count N = 1, 2, 3 (one
  actor per node). Each round starts a fresh ``headrace serve --ray-address`` frontend per N
  (the order of N turning around every round) and runs one closed-loop gRPC point of
  ``--concurrency`` requests in flight with ``headrace bench load``. Per point: throughput,
  throughput per node, its ratio to N times the 1-node throughput (scaling efficiency), p50/p99,
  and the frontend's cost: the server process's CPU time per inference (the actors' CPU is not
  in it), with the inference count read from its statistics endpoint.
- **overhead**: model ``identity`` (the same ``model.py`` without the sleep, one instance) on
  two frontends at once, one placing it as a Ray actor, one running it in the server
  (``--python-runtime in-server``, the default); per round each is measured in turn (the order
  turning around) at concurrency 1 (latency) and 16 (throughput), gRPC. Next to it, what Ray
  itself charges: a bare async actor that echoes the same request, called ``ObjectRef.future()``
  -style from the benchmark's process (caller CPU and wall time per call).

Output: ``results/serve_scaleout.json`` (machine, settings, every record, the summary: medians
over rounds) and rich tables.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import time
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE / "serve_models"))

from servers import ServerProcess, launch  # noqa: E402

from headrace.bench.load import LoadPoint, LoadSettings, run_load  # noqa: E402
from headrace.bench.machine import machine_info  # noqa: E402

NODES = (1, 2, 3)

_MODEL_PY = """\
import time

import triton_python_backend_utils as pb_utils

DELAY_S = {delay_s}


class TritonPythonModel:
    def execute(self, requests):
        if DELAY_S:
            time.sleep(DELAY_S)  # the fixed cost of one batch
        return [
            pb_utils.InferenceResponse(
                output_tensors=[
                    pb_utils.Tensor(
                        "OUTPUT0", pb_utils.get_input_tensor_by_name(r, "INPUT0").as_numpy()
                    )
                ]
            )
            for r in requests
        ]
"""

_CONFIG = """\
name: "{name}"
backend: "python"
max_batch_size: 8
input {{ name: "INPUT0" data_type: TYPE_FP32 dims: [ 16 ] }}
output {{ name: "OUTPUT0" data_type: TYPE_FP32 dims: [ 16 ] }}
instance_group [ {{ count: {count} kind: KIND_CPU }} ]
dynamic_batching {{ }}
"""


def write_model(repository: Path, name: str, count: int, delay_s: float) -> None:
    (repository / name / "1").mkdir(parents=True, exist_ok=True)
    (repository / name / "config.pbtxt").write_text(_CONFIG.format(name=name, count=count))
    (repository / name / "1" / "model.py").write_text(_MODEL_PY.format(delay_s=delay_s))


def measure(server: ServerProcess, model: str, concurrency: int, args: argparse.Namespace) -> dict:
    """One closed-loop gRPC point, with the frontend's CPU per inference over the same span."""
    assert server.ports is not None
    settings = LoadSettings(
        url=server.ports.url("grpc"),
        model=model,
        protocol="grpc",
        window_ms=args.window_ms,
        max_trials=args.max_trials,
        processes=2,
    )
    count_before = _success(server, model)
    cpu_before = server.cpu_seconds()
    (result,) = run_load(settings, [LoadPoint(concurrency=concurrency)])
    cpu = server.cpu_seconds() - cpu_before
    inferences = _success(server, model) - count_before
    record = result.as_dict()
    record["frontend_cpu_us_per_inference"] = cpu / inferences * 1e6 if inferences else None
    record["inferences"] = inferences
    return record


def _success(server: ServerProcess, model: str) -> int:
    return int(server.stats(model)["inference_stats"]["success"]["count"])


def scaleout(cluster_address: str, workdir: Path, args: argparse.Namespace) -> list[dict]:
    records = []
    for round_index in range(args.rounds):
        order = NODES if round_index % 2 == 0 else tuple(reversed(NODES))
        for nodes in order:
            repository = workdir / f"scaleout-{nodes}"
            write_model(repository, "sleepy", nodes, args.batch_ms / 1000)
            extra = ["--ray-address", cluster_address]
            with launch(
                "headrace", repository, ["sleepy"], workdir, {}, extra_args=extra
            ) as server:
                record = measure(server, "sleepy", args.concurrency, args)
            record.update(part="scaleout", round=round_index, nodes=nodes)
            records.append(record)
            _say(record)
    return records


def overhead(cluster_address: str, workdir: Path, args: argparse.Namespace) -> list[dict]:
    repository = workdir / "overhead"
    write_model(repository, "identity", 1, 0.0)
    records = []
    ray_args = ["--ray-address", cluster_address]
    with (
        launch(
            "headrace", repository, ["identity"], workdir / "ray", {}, extra_args=ray_args
        ) as on_ray,
        launch("headrace", repository, ["identity"], workdir / "local", {}) as local,
    ):
        systems = {"ray": on_ray, "local": local}
        for round_index in range(args.rounds):
            names = ["ray", "local"] if round_index % 2 == 0 else ["local", "ray"]
            for concurrency in (1, 16):
                for name in names:
                    record = measure(systems[name], "identity", concurrency, args)
                    record.update(part="overhead", round=round_index, system=name)
                    records.append(record)
                    _say(record)
    return records


class _Echo:
    """A bare async actor: what one Ray actor call costs, with nothing of headrace in it."""

    async def echo(self, value: Any) -> Any:
        return value


def bare_ray_call(cluster_address: str, calls: int = 300) -> dict:
    """Caller CPU and wall time of one actor call (a [1, 16] FP32 request, as the identity
    model's), through ``ObjectRef.future()`` as :class:`RayInstance` makes it."""
    import numpy as np
    import ray

    ray.init(address=cluster_address, log_to_driver=False)
    actor = ray.remote(num_cpus=1)(_Echo).remote()
    payload = [{"INPUT0": np.ones((1, 16), np.float32)}]
    ray.get(actor.echo.remote(payload))
    cpu, wall = time.process_time(), time.perf_counter()
    for _ in range(calls):
        actor.echo.remote(payload).future().result()
    record = {
        "part": "bare_ray_call",
        "calls": calls,
        "caller_cpu_us_per_call": (time.process_time() - cpu) / calls * 1e6,
        "wall_us_per_call": (time.perf_counter() - wall) / calls * 1e6,
    }
    ray.kill(actor)
    ray.shutdown()
    print(
        f"  bare Ray actor call: {record['wall_us_per_call']:.0f} us wall, "
        f"{record['caller_cpu_us_per_call']:.0f} us caller CPU",
        flush=True,
    )
    return record


def _say(record: dict) -> None:
    what = record.get("system") or f"{record.get('nodes')} nodes"
    print(
        f"  round {record['round']} {what} c={record['concurrency']}: "
        f"{record.get('throughput', 0):.1f} inf/s, p50 {record.get('p50_us', 0):.0f} us, "
        f"frontend {record.get('frontend_cpu_us_per_inference') or 0:.0f} us CPU/inf",
        flush=True,
    )


def _median(values: list[float]) -> float | None:
    values = [v for v in values if v is not None]
    return statistics.median(values) if values else None


def summarize(records: list[dict]) -> dict[str, list[dict]]:
    keys = ("throughput", "p50_us", "p99_us", "frontend_cpu_us_per_inference")
    scale = []
    for nodes in NODES:
        mine = [r for r in records if r["part"] == "scaleout" and r["nodes"] == nodes]
        if mine:
            row = {"nodes": nodes, **{k: _median([r.get(k) for r in mine]) for k in keys}}
            row["rounds"] = [r.get("throughput") for r in mine]
            scale.append(row)
    base = next((row["throughput"] for row in scale if row["nodes"] == 1), None)
    for row in scale:
        row["throughput_per_node"] = row["throughput"] / row["nodes"]
        row["scaling_efficiency"] = row["throughput"] / (row["nodes"] * base) if base else None
    over = []
    for concurrency in (1, 16):
        row: dict[str, Any] = {"concurrency": concurrency}
        for system in ("ray", "local"):
            mine = [
                r
                for r in records
                if r["part"] == "overhead"
                and r["system"] == system
                and r["concurrency"] == concurrency
            ]
            row[system] = {k: _median([r.get(k) for r in mine]) for k in keys}
        row["rounds"] = _round_ratios(records, concurrency)
        ray, local = row["ray"], row["local"]
        if ray["throughput"] and local["throughput"]:
            row["ray_over_local_throughput"] = ray["throughput"] / local["throughput"]
            row["ray_minus_local_p50_us"] = ray["p50_us"] - local["p50_us"]
        over.append(row)
    bare = [r for r in records if r["part"] == "bare_ray_call"]
    call = {
        key: _median([r[key] for r in bare])
        for key in ("caller_cpu_us_per_call", "wall_us_per_call")
    }
    return {"scaleout": scale, "overhead": over, "bare_ray_call": [call]}


def _round_ratios(records: list[dict], concurrency: int) -> list[dict]:
    """Per round: the Ray actor's throughput over the local instance's, and the p50 added."""
    rows = []
    for round_index in sorted({r["round"] for r in records if r["part"] == "overhead"}):
        pair = {
            r["system"]: r
            for r in records
            if r["part"] == "overhead"
            and r["round"] == round_index
            and r["concurrency"] == concurrency
        }
        if pair.get("ray", {}).get("throughput") and pair.get("local", {}).get("throughput"):
            rows.append(
                {
                    "round": round_index,
                    "ray_over_local_throughput": pair["ray"]["throughput"]
                    / pair["local"]["throughput"],
                    "ray_minus_local_p50_us": pair["ray"]["p50_us"] - pair["local"]["p50_us"],
                }
            )
    return rows


def print_tables(summary: dict[str, list[dict]]) -> None:
    from rich.console import Console
    from rich.table import Table

    console = Console(width=130)
    table = Table(title="scale-out: sleepy (fixed cost per batch), gRPC closed loop")
    for column in ("nodes", "inf/s", "inf/s per node", "efficiency", "p50 ms", "p99 ms"):
        table.add_column(column, justify="right")
    table.add_column("frontend CPU µs/inf", justify="right")
    for row in summary["scaleout"]:
        table.add_row(
            str(row["nodes"]),
            f"{row['throughput']:.1f}",
            f"{row['throughput_per_node']:.1f}",
            f"{row['scaling_efficiency']:.2f}",
            f"{row['p50_us'] / 1000:.1f}",
            f"{row['p99_us'] / 1000:.1f}",
            f"{row['frontend_cpu_us_per_inference']:.0f}",
        )
    console.print(table)
    table = Table(title="overhead: identity, one instance as a Ray actor vs in the server")
    for column in ("c", "ray inf/s", "local inf/s", "ray/local", "ray p50 µs", "local p50 µs"):
        table.add_column(column, justify="right")
    table.add_column("frontend CPU µs/inf ray / local", justify="right")
    for row in summary["overhead"]:
        ray, local = row["ray"], row["local"]
        table.add_row(
            str(row["concurrency"]),
            f"{ray['throughput']:.1f}",
            f"{local['throughput']:.1f}",
            f"{row.get('ray_over_local_throughput', 0):.2f}",
            f"{ray['p50_us']:.0f}",
            f"{local['p50_us']:.0f}",
            f"{ray['frontend_cpu_us_per_inference']:.0f} / "
            f"{local['frontend_cpu_us_per_inference']:.0f}",
        )
    console.print(table)
    call = summary["bare_ray_call"][0]
    if call["wall_us_per_call"] is not None:
        console.print(
            f"bare Ray actor call: {call['wall_us_per_call']:.0f} µs wall, "
            f"{call['caller_cpu_us_per_call']:.0f} µs caller CPU"
        )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=2, help="rounds (default 2)")
    parser.add_argument(
        "--batch-ms", type=float, default=50.0, help="sleep per batch of sleepy (default 50)"
    )
    parser.add_argument(
        "--concurrency", type=int, default=64, help="scale-out requests in flight (default 64)"
    )
    parser.add_argument("--window-ms", type=int, default=2000, help="window (default 2000)")
    parser.add_argument("--max-trials", type=int, default=5, help="windows per point (default 5)")
    parser.add_argument("--out", type=Path, default=HERE / "results" / "serve_scaleout.json")
    parser.add_argument(
        "--summarize",
        type=Path,
        default=None,
        metavar="FILE",
        help="only recompute FILE's summary from its records and print it (default: measure)",
    )
    args = parser.parse_args(argv)
    if args.summarize is not None:
        document = json.loads(args.summarize.read_text())
        document["summary"] = summarize(document["records"])
        args.summarize.write_text(json.dumps(document, indent=2) + "\n")
        print_tables(document["summary"])
        return 0

    import ray
    from ray.cluster_utils import Cluster

    started = time.monotonic()
    cluster = Cluster(
        initialize_head=True, head_node_args={"num_cpus": 0, "include_dashboard": False}
    )
    try:
        for index in range(3):
            cluster.add_node(num_cpus=1, resources={f"node{index + 1}": 1})
        cluster.wait_for_nodes()
        with tempfile.TemporaryDirectory(prefix="serve_scaleout-") as tmp:
            workdir = Path(tmp)
            (workdir / "ray").mkdir()
            (workdir / "local").mkdir()
            print("scale-out:", flush=True)
            records = scaleout(cluster.address, workdir, args)
            print("overhead:", flush=True)
            records += overhead(cluster.address, workdir, args)
            records += [bare_ray_call(cluster.address) for _ in range(args.rounds)]
    finally:
        ray.shutdown()
        cluster.shutdown()
    summary = summarize(records)
    print_tables(summary)
    document = {
        "benchmark": "serve_scaleout",
        "date": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "machine": machine_info(),
        "settings": {**{k: str(v) for k, v in vars(args).items()}, "cluster": _cluster_text()},
        "seconds": round(time.monotonic() - started, 1),
        "summary": summary,
        "records": records,
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(document, indent=2) + "\n")
    print(f"results: {args.out}")
    return 0


def _cluster_text() -> str:
    return (
        "ray.cluster_utils.Cluster on this machine: head num_cpus=0, 3 worker nodes num_cpus=1 "
        "each (one actor per node); headrace serve --ray-address <cluster>; load: headrace "
        "bench load, gRPC, 2 client processes"
    )


if __name__ == "__main__":
    raise SystemExit(main())
