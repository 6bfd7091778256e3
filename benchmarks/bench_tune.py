"""``headrace bench tune`` on the examples' models, the pick measured side by side with the
model's own config.

    python benchmarks/bench_tune.py                     # mlp as shipped, ParticleNet plain; ~10 min
    python benchmarks/bench_tune.py --models particlenet:plain --measurement-ms 2000

Builds the examples repository (``headrace examples create``) and runs one ``headrace bench
tune`` per model. ``MODEL`` tunes the model with its examples config as the baseline (the MLP's
is already tuned by hand: 2 instances, max batch 64, 100 µs queue delay); ``MODEL:plain``
first strips the config to what a user starts with (no ``dynamic_batching``, no
``instance_group``: Triton's defaults fill them in), which is the config that the knobs are for.
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
        "--models", default="mlp,particlenet:plain", help="(default mlp,particlenet:plain)"
    )
    p.add_argument("--instances", default="1,2", help="(default 1,2)")
    p.add_argument("--max-batch-sizes", default="8,64", help="(default 8,64)")
    p.add_argument("--queue-delays-us", default="0,500", help="(default 0,500)")
    p.add_argument("--concurrency", default="4,16", help="(default 4,16)")
    p.add_argument("--measurement-ms", default="1500", help="(default 1500)")
    p.add_argument("--side-by-side-rounds", default="3", help="(default 3)")
    p.add_argument(
        "--p99-ms",
        default="mlp=20,particlenet=50",
        help="per model (default mlp=20,particlenet=50)",
    )
    p.add_argument("--out-dir", type=Path, default=RESULTS, help=f"(default {RESULTS})")
    return p.parse_args(argv)


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
        for item in args.models.split(","):
            model, _, variant = item.partition(":")
            model_dir = repository / model
            if variant == "plain":
                model_dir = plain(model_dir, Path(tmp) / "plain")
            stem = f"{model}_{variant or 'own'}"
            command = [
                sys.executable, "-m", "headrace.cli", "bench", "tune", str(model_dir),
                "--instances", args.instances, "--max-batch-sizes", args.max_batch_sizes,
                "--queue-delays-us", args.queue_delays_us, "--concurrency", args.concurrency,
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
