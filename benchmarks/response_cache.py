"""The response cache on and off: perf_analyzer sends one identical request over and over.

    python benchmarks/response_cache.py                  # ~4 min: 3 rounds, c = 1 and 4, gRPC
    python benchmarks/response_cache.py --rounds 1 --seconds 2 --concurrency 1   # a look

The model is a compute-heavy Triton python-backend ``model.py`` (numpy): ``INPUT`` FP32
[``--rows``, 512] goes through ``--iterations`` layers ``x = tanh(x @ W)`` (W 512x512, seeded)
to ``OUTPUT``. The repository holds it twice: ``heavy`` and ``heavy_cached``, the same file,
the second with ``response_cache { enable: true }``. Each server under test starts once with
``--cache-config local,size=--cache-bytes`` and serves both, so "off" and "on" differ only in
the model's config, as a user would switch it:

| system | what serves |
| --- | --- |
| headrace | ``headrace serve`` (the model.py in its own process) |
| triton | NVIDIA Triton 2.51 (``../shared/tools/tritonserver``, python-backend stub), when installed |

perf_analyzer (``--input-data zero``: every request identical, so after the first miss every
request of ``heavy_cached`` is a hit) runs each load for ``--seconds`` windows; per round every
(system, model) pair runs in turn, the order turning around each round. Around each load the
benchmark reads the model's statistics (requests, executions, cache hits), so the table shows
that hits skipped the model. Before measuring, one request per model checks that a hit
answers exactly what a miss computed.

Output: ``results/response_cache.json`` (machine, settings, every load, medians over rounds per
system, model and concurrency, and the cache-on / cache-off ratios) and a rich table.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
from collections import defaultdict
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE / "serve_models"))

import servers  # noqa: E402

MODELS = ("heavy", "heavy_cached")
WIDTH = 512

MODEL_PY = """\
import numpy as np
import triton_python_backend_utils as pb_utils

ITERATIONS = {iterations}


class TritonPythonModel:
    def initialize(self, args):
        rng = np.random.default_rng(0)
        self.w = (rng.standard_normal(({width}, {width})) / np.sqrt({width})).astype(np.float32)

    def execute(self, requests):
        responses = []
        for request in requests:
            x = pb_utils.get_input_tensor_by_name(request, "INPUT").as_numpy()
            for _ in range(ITERATIONS):
                x = np.tanh(x @ self.w)
            output = pb_utils.Tensor("OUTPUT", x.astype(np.float32))
            responses.append(pb_utils.InferenceResponse(output_tensors=[output]))
        return responses
"""

CONFIG = """\
name: "{name}"
backend: "python"
max_batch_size: 0
input [ {{ name: "INPUT" data_type: TYPE_FP32 dims: [ {rows}, {width} ] }} ]
output [ {{ name: "OUTPUT" data_type: TYPE_FP32 dims: [ {rows}, {width} ] }} ]
instance_group [ {{ kind: KIND_CPU count: 1 }} ]
{extra}"""


def write_repository(root: Path, rows: int, iterations: int) -> None:
    for name in MODELS:
        extra = "response_cache { enable: true }\n" if name.endswith("_cached") else ""
        (root / name / "1").mkdir(parents=True)
        config = CONFIG.format(name=name, rows=rows, width=WIDTH, extra=extra)
        (root / name / "config.pbtxt").write_text(config)
        source = MODEL_PY.format(iterations=iterations, width=WIDTH)
        (root / name / "1" / "model.py").write_text(source)


def check_answers(url: str, rows: int) -> float:
    """A hit must answer what the miss computed; returns the largest difference (0 expected)."""
    import numpy as np
    import tritonclient.grpc as grpcclient

    client = grpcclient.InferenceServerClient(url)
    try:
        answers = []
        for model in ("heavy", "heavy_cached", "heavy_cached"):
            tensor = grpcclient.InferInput("INPUT", [rows, WIDTH], "FP32")
            tensor.set_data_from_numpy(np.zeros((rows, WIDTH), np.float32) + 0.5)
            answers.append(client.infer(model, [tensor]).as_numpy("OUTPUT"))
    finally:
        client.close()
    return float(max(np.abs(a - answers[0]).max() for a in answers[1:]))


def counts(server: servers.ServerProcess, model: str) -> dict[str, int]:
    stats = server.stats(model)
    infer = stats["inference_stats"]
    return {
        "requests": int(infer["success"]["count"]),
        "executions": int(stats["execution_count"]),
        "hits": int(infer["cache_hit"]["count"]),
    }


def run_load(
    server: servers.ServerProcess, model: str, protocol: str, concurrency: int, args: Any
) -> dict[str, Any]:
    from headrace.bench.perf_analyzer import PerfAnalyzerFailed, PerfLoad, run_perf_analyzer

    assert server.ports is not None
    load = PerfLoad(
        model=model,
        url=server.ports.url(protocol),
        protocol=protocol,
        concurrency=concurrency,
        measurement_ms=int(args.seconds * 1000),
        input_data="zero",
    )
    before = counts(server, model)
    record: dict[str, Any] = {
        "system": server.system,
        "model": model,
        "cached": model.endswith("_cached"),
        "protocol": protocol,
        "concurrency": concurrency,
    }
    try:
        row = run_perf_analyzer(load)
    except PerfAnalyzerFailed as exc:
        record["error"] = str(exc)[:400]
        return record
    after = counts(server, model)
    record.update(
        throughput=row.throughput,
        p50_us=row.p50_us,
        p99_us=row.p99_us,
        **{key: after[key] - before[key] for key in after},
    )
    return record


def summarize(records: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Medians over rounds per (system, protocol, concurrency), cache off and on side by side."""
    groups: dict[tuple[str, str, int, bool], list[dict[str, Any]]] = defaultdict(list)
    for record in records:
        if "error" not in record:
            key = (record["system"], record["protocol"], record["concurrency"], record["cached"])
            groups[key].append(record)
    rows = []
    for system, protocol, concurrency in sorted({k[:3] for k in groups}):
        row: dict[str, Any] = {"system": system, "protocol": protocol, "concurrency": concurrency}
        for cached, label in ((False, "off"), (True, "on")):
            group = groups.get((system, protocol, concurrency, cached), [])
            for metric in ("throughput", "p50_us", "p99_us"):
                values = [g[metric] for g in group]
                row[f"{metric}_{label}"] = statistics.median(values) if values else None
            row[f"rounds_{label}"] = len(group)
            row[f"executions_per_request_{label}"] = (
                sum(g["executions"] for g in group) / max(1, sum(g["requests"] for g in group))
                if group
                else None
            )
        on, off = row["throughput_on"], row["throughput_off"]
        row["throughput_ratio"] = on / off if on and off else None
        p50_on, p50_off = row["p50_us_on"], row["p50_us_off"]
        row["p50_ratio"] = p50_on / p50_off if p50_on and p50_off else None
        rows.append(row)
    return rows


def _fmt(value: float | None, digits: int = 0) -> str:
    return "-" if value is None else f"{value:,.{digits}f}"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=3, help="rounds (default 3)")
    parser.add_argument(
        "--seconds", type=float, default=2.0, help="perf_analyzer window, s (default 2)"
    )
    parser.add_argument(
        "--concurrency", type=int, nargs="+", default=[1, 4], help="levels (default 1 4)"
    )
    parser.add_argument(
        "--protocols", nargs="+", default=["grpc"], choices=["grpc", "http"], help="(default grpc)"
    )
    parser.add_argument(
        "--systems",
        nargs="+",
        default=["headrace", "triton"],
        choices=["headrace", "triton"],
        help="(default headrace triton; triton is skipped where its tool is missing)",
    )
    parser.add_argument("--rows", type=int, default=64, help="rows of INPUT (default 64)")
    parser.add_argument("--iterations", type=int, default=8, help="layers (default 8)")
    parser.add_argument(
        "--cache-bytes", type=int, default=16 << 20, help="cache size (default 16 MiB)"
    )
    parser.add_argument(
        "--out",
        type=Path,
        default=HERE / "results" / "response_cache.json",
        help="result JSON (default benchmarks/results/response_cache.json)",
    )
    args = parser.parse_args(argv)
    from rich.console import Console
    from rich.table import Table

    from headrace.bench.machine import machine_info

    systems = list(args.systems)
    if "triton" in systems:
        try:
            servers.shared_tool("tritonserver")
        except FileNotFoundError:
            systems.remove("triton")
    cache_flag = [f"--cache-config=local,size={args.cache_bytes}"]
    records: list[dict[str, Any]] = []
    checks: dict[str, float] = {}
    with tempfile.TemporaryDirectory(prefix="response-cache-") as tmp:
        root = Path(tmp)
        write_repository(root / "repo", args.rows, args.iterations)
        running: dict[str, servers.ServerProcess] = {}
        try:
            for system in systems:
                workdir = root / system
                workdir.mkdir()
                running[system] = servers.launch(
                    system, root / "repo", list(MODELS), workdir, {}, extra_args=cache_flag
                )
                ports = running[system].ports
                assert ports is not None
                checks[system] = check_answers(ports.url("grpc"), args.rows)
            pairs = [(system, model) for system in systems for model in MODELS]
            for round_index in range(args.rounds):
                order = pairs if round_index % 2 == 0 else pairs[::-1]
                for protocol in args.protocols:
                    for concurrency in args.concurrency:
                        for system, model in order:
                            record = run_load(running[system], model, protocol, concurrency, args)
                            record["round"] = round_index
                            records.append(record)
                            print(json.dumps(record), flush=True)
        finally:
            for server in running.values():
                server.stop()
    summary = summarize(records)
    table = Table(title="identical requests, response cache off vs on (medians over rounds)")
    for column in (
        "system",
        "protocol",
        "c",
        "infer/s off",
        "infer/s on",
        "on/off",
        "p50 µs off",
        "p50 µs on",
        "exec/request on",
    ):
        table.add_column(column, justify="right")
    for row in summary:
        table.add_row(
            row["system"],
            row["protocol"],
            str(row["concurrency"]),
            _fmt(row["throughput_off"]),
            _fmt(row["throughput_on"]),
            _fmt(row["throughput_ratio"], 1),
            _fmt(row["p50_us_off"]),
            _fmt(row["p50_us_on"]),
            _fmt(row["executions_per_request_on"], 4),
        )
    Console().print(table)
    document = {
        "benchmark": "response_cache",
        "date": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "machine": machine_info(),
        "settings": {
            key: value if not isinstance(value, Path) else str(value)
            for key, value in vars(args).items()
        }
        | {"systems": systems, "width": WIDTH},
        "hit_equals_miss_max_abs_diff": checks,
        "loads": records,
        "summary": summary,
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(document, indent=1) + "\n")
    print(f"results: {args.out}")
    failed = [r for r in records if "error" in r]
    return 1 if failed or any(checks.values()) else 0


if __name__ == "__main__":
    raise SystemExit(main())
