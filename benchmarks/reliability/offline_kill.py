"""Offline proof: ``headrace run`` killed with SIGKILL at random points resumes to every row once.

    python benchmarks/reliability/offline_kill.py                 # 20 runs, ~8 min on 2 busy cores
    python benchmarks/reliability/offline_kill.py --runs 3 --rows 200000   # a quick look

The job: the examples' ``mlp`` (ONNX, ``headrace examples create``) over a ``.npy`` of --rows
rows of 64 features, --shard-size rows per Parquet shard. First one uninterrupted run gives
the reference outputs and its duration T. Then each of --runs runs starts from an empty
output folder and is killed (SIGKILL, no chance to clean up) 1 to --max-kills times, then
rerun with the same command until it completes. A third of the kills come at a time drawn
from [0, T] after the attempt's start (start-up included); the others at a drawn point of
the job's progress: 0-200 ms after the manifest first lists k shards, k drawn from every
shard (reading, computing, writing a shard, renaming it, updating the manifest), since on a
loaded machine start-up alone can take most of T. Every run is then checked: the row ids read
back are exactly 0..rows-1 (none lost, none twice), the outputs equal the reference, and the
folder holds the manifest and its shards only.

Output: ``results/reliability/offline_kill.json`` (machine, settings, one record per run with
its kill points and the shards done at each kill) and a rich table.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))

from serve_models.report import write_document  # noqa: E402

BENCHMARK = "reliability/offline_kill"
FEATURES = 64
_POLL_S = 0.01  # how often an attempt looks at its process and its manifest


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--runs", type=int, default=20, help="killed runs (default %(default)s)")
    p.add_argument("--rows", type=int, default=1_000_000, help="rows (default %(default)s)")
    p.add_argument(
        "--shard-size", type=int, default=10_000, help="rows per shard (default %(default)s)"
    )
    p.add_argument("--batch-size", type=int, default=64, help="(default %(default)s)")
    p.add_argument(
        "--max-kills", type=int, default=2, help="kills per run, at most (default %(default)s)"
    )
    p.add_argument("--seed", type=int, default=13, help="kill points' seed (default %(default)s)")
    p.add_argument(
        "--timeout", type=float, default=300.0, help="seconds per attempt (default %(default)s)"
    )
    p.add_argument(
        "--out", type=Path, default=HERE.parent / "results/reliability/offline_kill.json"
    )
    args = p.parse_args(argv)
    if args.runs < 1 or args.max_kills < 1 or args.rows < 1 or args.shard_size < 1:
        p.error("--runs, --max-kills, --rows and --shard-size must be at least 1")
    return args


def command(model: str, data: str, out: str, args: argparse.Namespace) -> list[str]:
    return [
        sys.executable, "-m", "headrace.cli", "run", model, data, "--out", out,
        "--batch-size", str(args.batch_size), "--shard-size", str(args.shard_size),
        "--map", "INPUT0=x", "--quiet",
    ]  # fmt: skip


def phase(out: str) -> tuple[str, int]:
    """Where a job stands by its manifest: the phase's name and the shards it lists."""
    try:
        with open(os.path.join(out, "manifest.json")) as handle:
            manifest = json.load(handle)
    except (OSError, ValueError):
        return "start-up", 0
    shards = len(manifest.get("shards", []))
    if manifest.get("complete"):
        return "complete", shards
    return ("mid-job" if shards else "before first shard"), shards


def attempt(
    cmd: list[str], plan: dict[str, float] | None, timeout: float, out: str
) -> dict[str, Any]:
    """One ``headrace run``, killed as ``plan`` says (None: left to finish).

    ``{"after_s": t}`` kills it ``t`` seconds after its start; ``{"after_shards": k,
    "then_s": d}`` kills it ``d`` seconds after the manifest first lists ``k`` shards, so kills
    spread over the job's progress however long its start-up takes on a loaded machine.
    """
    started = time.monotonic()
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    due = None if plan is None or "after_s" not in plan else started + plan["after_s"]
    killed = timed_out = False
    while True:
        try:
            proc.wait(timeout=_POLL_S)
            break
        except subprocess.TimeoutExpired:
            pass
        now = time.monotonic()
        waiting = due is None and plan is not None and "after_shards" in plan
        if waiting and phase(out)[1] >= plan["after_shards"]:  # type: ignore[index]
            due = now + plan["then_s"]  # type: ignore[index]
        timed_out = now - started > timeout
        if timed_out or (due is not None and now >= due):
            proc.send_signal(signal.SIGKILL)
            killed = not timed_out
            break
    stdout, stderr = proc.communicate()
    return {
        "plan": plan,
        "kill_after_s": round(time.monotonic() - started, 3) if killed else None,
        "killed": killed,
        "timed_out": timed_out,
        "returncode": proc.returncode,
        "seconds": round(time.monotonic() - started, 3),
        "stdout": stdout.strip()[-300:],
        "stderr": stderr.strip()[-300:],
    }


def kill_plan(rng: random.Random, t_full: float, done: int, shards: int) -> dict[str, float]:
    """A third of the kills at a time drawn over the whole run (start-up included), the rest
    at a drawn point of what is left of the job (``done`` of ``shards`` are written)."""
    if rng.random() < 1 / 3 or done >= shards:
        return {"after_s": rng.uniform(0.0, t_full)}
    return {"after_shards": rng.randint(done, shards - 1), "then_s": rng.uniform(0.0, 0.2)}


def check(out: str, rows: int, reference: np.ndarray) -> dict[str, Any]:
    """Every row exactly once, the reference's outputs, nothing but the manifest and shards."""
    from headrace.batch.results import load_results

    result = load_results(out)
    ids = np.sort(result.row_ids)
    unique = np.unique(ids)
    missing = int(rows - np.isin(np.arange(rows), unique).sum())
    duplicates = int(len(ids) - len(unique))
    outputs = result.outputs.get("OUTPUT0")
    order = np.argsort(result.row_ids, kind="stable")
    matches = bool(
        outputs is not None
        and duplicates == 0
        and missing == 0
        and np.allclose(outputs[order], reference, rtol=1e-5, atol=1e-6)
    )
    with open(os.path.join(out, "manifest.json")) as handle:
        listed = {f for shard in json.load(handle)["shards"] for f in shard["files"]}
    stray = sorted(set(os.listdir(out)) - listed - {"manifest.json"})
    return {
        "rows_read": len(ids),
        "missing": missing,
        "duplicates": duplicates,
        "outputs_match": matches,
        "stray_files": stray,
        "ok": missing == 0 and duplicates == 0 and matches and not stray,
    }


def one_run(
    index: int, cmd_for: Any, rows: int, reference: np.ndarray, t_full: float,
    rng: random.Random, args: argparse.Namespace, work: Path,
) -> dict[str, Any]:  # fmt: skip
    out = str(work / f"run{index:02d}")
    cmd = cmd_for(out)
    attempts = []
    shards = -(-args.rows // args.shard_size)
    for _ in range(rng.randint(1, args.max_kills)):
        killed = attempt(cmd, kill_plan(rng, t_full, phase(out)[1], shards), args.timeout, out)
        killed["phase"], killed["shards_at_kill"] = phase(out)
        attempts.append(killed)
        if not killed["killed"]:
            break  # it finished before its kill point: the job is complete
    final = attempt(cmd, None, args.timeout, out)
    attempts.append(final)
    record: dict[str, Any] = {"run": index, "attempts": attempts}
    if final["returncode"] != 0:
        record.update(ok=False, error=f"the resuming run failed: {final['stderr']}")
    else:
        record.update(check(out, rows, reference))
    shutil.rmtree(out, ignore_errors=True)
    return record


def summarize(records: list[dict[str, Any]]) -> dict[str, Any]:
    kills = [a for r in records for a in r["attempts"] if a["killed"]]
    return {
        "runs": len(records),
        "runs_ok": sum(1 for r in records if r.get("ok")),
        "kills": len(kills),
        **{
            f"kills_{name.replace(' ', '_').replace('-', '_')}": sum(
                1 for a in kills if a["phase"] == name
            )
            for name in ("start-up", "before first shard", "mid-job", "complete")
        },
        "attempts_finished_before_kill": sum(
            1 for r in records for a in r["attempts"][:-1] if not a["killed"]
        ),
        "rows_missing": sum(r.get("missing", 0) for r in records),
        "rows_duplicated": sum(r.get("duplicates", 0) for r in records),
    }


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    args = parse_args(argv)
    started = time.monotonic()
    from rich.console import Console
    from rich.table import Table

    from headrace.batch.results import load_results
    from headrace.repository.examples import create_examples_repository

    console = Console()
    rng = random.Random(args.seed)
    records: list[dict[str, Any]] = []
    error = None
    with tempfile.TemporaryDirectory(prefix="offline-kill-") as tmp:
        work = Path(tmp)
        create_examples_repository(work / "repo")
        data = work / "x.npy"
        np.save(data, np.random.default_rng(0).standard_normal((args.rows, FEATURES), np.float32))
        model = str(work / "repo" / "mlp")

        def cmd_for(out: str) -> list[str]:
            return command(model, str(data), out, args)

        reference_run = attempt(cmd_for(str(work / "reference")), None, args.timeout, "")
        if reference_run["returncode"] != 0:
            error = f"the uninterrupted run failed: {reference_run['stderr']}"
        else:
            t_full = reference_run["seconds"]
            reference = load_results(str(work / "reference"))
            order = np.argsort(reference.row_ids, kind="stable")
            expected = reference.outputs["OUTPUT0"][order]
            console.print(f"uninterrupted run: {t_full:.1f} s; killing within [0, {t_full:.1f}] s")
            for index in range(args.runs):
                record = one_run(index, cmd_for, args.rows, expected, t_full, rng, args, work)
                records.append(record)
                kills = [a for a in record["attempts"] if a["killed"]]
                console.print(
                    f"run {index:2d}: killed at "
                    + ", ".join(
                        f"{a['kill_after_s']:.2f}s ({a['phase']}, {a['shards_at_kill']} shards)"
                        for a in kills
                    )
                    + (
                        " (one attempt finished first)"
                        if len(kills) < len(record["attempts"]) - 1
                        else ""
                    )
                    + f" -> {'ok' if record.get('ok') else 'FAILED ' + str(record)}"
                )
    summary = summarize(records)
    write_document(
        args.out, BENCHMARK, argv, args, started=started, error=error, summary=summary,
        records=records,
    )  # fmt: skip
    table = Table(title="headrace run, killed with SIGKILL and resumed")
    table.add_column("")
    table.add_column("count", justify="right")
    for key, value in summary.items():
        table.add_row(key.replace("_", " "), str(value))
    console.print(table)
    console.print(f"wrote {args.out}")
    return 0 if error is None and summary["runs_ok"] == summary["runs"] else 1


if __name__ == "__main__":
    sys.exit(main())
