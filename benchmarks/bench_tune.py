"""``headrace bench tune`` on the examples' models, the pick measured side by side with the
model's own config.

    python benchmarks/bench_tune.py                     # three models, ~12 min on 2 cores
    python benchmarks/bench_tune.py --models fixed_cost:plain --measurement-ms 2000

Builds the examples repository (``headrace examples create``) and runs one ``headrace bench
tune`` per model. ``MODEL`` tunes the model with its examples config as the baseline (the MLP's
is already tuned by hand: Triton's default instances (2 on a CPU), max batch 64, 100 µs queue
delay); ``MODEL:plain``
first strips the config to what a user starts with (no ``dynamic_batching``, no
``instance_group``: Triton's defaults fill them in), which is the config that the knobs are for.
``fixed_cost`` is not an example: a python-backend model written here whose every call waits
2 ms whatever its batch size (an accelerator's launch and transfer latency, which a CPU
lacks) and then returns its input, the case dynamic batching is made for.
Each run writes its JSON (machine included) and the chosen ``config.pbtxt`` to
``benchmarks/results/bench_tune/``.
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import tempfile
from pathlib import Path

HERE = Path(__file__).resolve().parent
RESULTS = HERE / "results" / "bench_tune"


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument(
        "--models",
        default="mlp,particlenet:plain,fixed_cost:plain",
        help="(default mlp,particlenet:plain,fixed_cost:plain)",
    )
    p.add_argument("--instances", default="1,2", help="(default 1,2)")
    p.add_argument("--max-batch-sizes", default="8,64", help="(default 8,64)")
    p.add_argument("--queue-delays-us", default="0,500", help="(default 0,500)")
    p.add_argument("--intra-op-threads", default="0,1", help="(default 0,1)")
    p.add_argument("--concurrency", default="4,16", help="(default 4,16)")
    p.add_argument("--measurement-ms", default="1500", help="(default 1500)")
    p.add_argument("--side-by-side-rounds", default="3", help="(default 3)")
    p.add_argument(
        "--p99-ms",
        default="mlp=20,particlenet=50,fixed_cost=50",
        help="per model (default mlp=20,particlenet=50,fixed_cost=50)",
    )
    p.add_argument("--out-dir", type=Path, default=RESULTS, help=f"(default {RESULTS})")
    p.add_argument(
        "--suffix", default="", help="appended to each file's stem, e.g. _c1 (default none)"
    )
    return p.parse_args(argv)


FIXED_COST_MS = 2.0
_FIXED_COST_CONFIG = """\
name: "fixed_cost"
backend: "python"
max_batch_size: 64
input { name: "INPUT0" data_type: TYPE_FP32 dims: [ 16 ] }
output { name: "OUTPUT0" data_type: TYPE_FP32 dims: [ 16 ] }
"""
_FIXED_COST_MODEL = """\
import time

import triton_python_backend_utils as pb_utils


class TritonPythonModel:
    \"\"\"OUTPUT0 = INPUT0 after a fixed wait per call (per batch), as a device's latency.\"\"\"

    def execute(self, requests):
        time.sleep(%(seconds)r)
        responses = []
        for request in requests:
            data = pb_utils.get_input_tensor_by_name(request, "INPUT0").as_numpy()
            output = pb_utils.Tensor("OUTPUT0", data)
            responses.append(pb_utils.InferenceResponse(output_tensors=[output]))
        return responses
"""


def write_fixed_cost(repository: Path) -> None:
    """The fixed-cost python model, its config without batching or instance groups."""
    folder = repository / "fixed_cost"
    (folder / "1").mkdir(parents=True)
    (folder / "config.pbtxt").write_text(_FIXED_COST_CONFIG, encoding="utf-8")
    code = _FIXED_COST_MODEL % {"seconds": FIXED_COST_MS / 1000}
    (folder / "1" / "model.py").write_text(code, encoding="utf-8")


def plain(model_dir: Path, into: Path) -> Path:
    """A copy of the model's folder whose config has no dynamic_batching nor instance_group."""
    import shutil

    from headrace.config.text import format_config, read_config

    target = into / model_dir.name
    shutil.copytree(model_dir, target)
    config = read_config(str(target / "config.pbtxt"))
    config.ClearField("dynamic_batching")
    config.ClearField("instance_group")
    (target / "config.pbtxt").write_text(format_config(config), encoding="utf-8")
    return target


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    bounds = dict(item.split("=") for item in args.p99_ms.split(","))
    args.out_dir.mkdir(parents=True, exist_ok=True)
    failed = 0
    with tempfile.TemporaryDirectory(prefix="bench-tune-") as tmp:
        repository = Path(tmp) / "repo"
        subprocess.run(
            [sys.executable, "-m", "headrace.cli", "examples", "create", str(repository)],
            check=True,
            capture_output=True,
        )
        write_fixed_cost(repository)
        for item in args.models.split(","):
            model, _, variant = item.partition(":")
            model_dir = repository / model
            if variant == "plain":
                model_dir = plain(model_dir, Path(tmp) / "plain")
            stem = f"{model}_{variant or 'own'}{args.suffix}"
            command = [
                sys.executable, "-m", "headrace.cli", "bench", "tune", str(model_dir),
                "--instances", args.instances, "--max-batch-sizes", args.max_batch_sizes,
                "--queue-delays-us", args.queue_delays_us,
                "--intra-op-threads", args.intra_op_threads, "--concurrency", args.concurrency,
                "--measurement-ms", args.measurement_ms,
                "--side-by-side-rounds", args.side_by_side_rounds,
                "--p99-ms", bounds.get(model, "50"), "--budget-s", "900",
                "--write-config", str(args.out_dir / f"{stem}_config.pbtxt"),
                "--out", str(args.out_dir / f"{stem}.json"),
            ]  # fmt: skip
            print("$", " ".join(command[1:]), flush=True)
            failed += subprocess.run(command).returncode != 0
    return 1 if failed else 0


if __name__ == "__main__":
    raise SystemExit(main())
