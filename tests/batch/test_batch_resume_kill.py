"""A real ``headrace run`` subprocess killed with SIGKILL mid-way resumes to a complete result."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys

import numpy as np
from batch_models import direct, features, mlp_repository

from headrace.batch.results import load_results

ROWS, SHARD = 4000, 100

# Blocks the run for good once the manifest lists two shards, and says so on stderr: the test
# then kills the process while later shards are read, computed or half-written.
GATE = """
import json, os, sys, threading

def gate(cols):
    if os.environ.get("GATE_MANIFEST"):
        with open(os.environ["GATE_MANIFEST"]) as handle:
            if len(json.load(handle)["shards"]) >= 2:
                print("BLOCKED", file=sys.stderr, flush=True)
                threading.Event().wait()
    return cols
"""


def _command(model: str, data: str, out: str, hook: str) -> list[str]:
    return [
        sys.executable,
        "-m",
        "headrace.cli",
        "run",
        model,
        data,
        "--out",
        out,
        "--batch-size",
        "50",
        "--shard-size",
        str(SHARD),
        "--instances",
        "2",
        "--preprocess",
        f"{hook}:gate",
        "--quiet",
    ]


def test_kill_9_mid_run_then_resume_gives_every_row_once(tmp_path) -> None:
    model, module = mlp_repository(tmp_path)
    x = features(ROWS, seed=9)
    np.save(tmp_path / "x.npy", x)
    hook = tmp_path / "gate.py"
    hook.write_text(GATE)
    out = tmp_path / "out"
    command = _command(model, str(tmp_path / "x.npy"), str(out), str(hook))

    env = {**os.environ, "GATE_MANIFEST": str(out / "manifest.json")}
    victim = subprocess.Popen(command, env=env, stderr=subprocess.PIPE, text=True)
    assert victim.stderr is not None
    for line in victim.stderr:  # blocking reads, bounded by the test timeout
        if "BLOCKED" in line:
            break
    victim.send_signal(signal.SIGKILL)
    assert victim.wait() == -signal.SIGKILL
    victim.stderr.close()

    with open(out / "manifest.json") as handle:
        done = len(json.load(handle)["shards"])
    assert 2 <= done < ROWS // SHARD

    env.pop("GATE_MANIFEST")
    resumed = subprocess.run(command, env=env, capture_output=True, text=True, check=True)
    assert f"{ROWS // SHARD - done} shards written, {done} already done" in resumed.stdout

    result = load_results(str(out))
    assert np.array_equal(result.row_ids, np.arange(ROWS))  # none lost, none duplicated
    np.testing.assert_allclose(result.outputs["y"], direct(module, x), rtol=1e-5, atol=1e-6)
    names = os.listdir(out)
    assert sorted(names) == sorted(
        ["manifest.json", *(f"shard-{i:05d}.parquet" for i in range(ROWS // SHARD))]
    )
