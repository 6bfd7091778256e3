"""The LIGO offline example: the shard plan, and a small run of 2 servers x 3 clients whose
output must equal the single stream's, each server having run exactly its clients' updates."""

from __future__ import annotations

import importlib
import json
import sys
from pathlib import Path
from types import ModuleType

import numpy as np
import pytest

pytest.importorskip("torch")
pytest.importorskip("tritonclient.grpc")

FOLDER = Path(__file__).resolve().parents[2] / "examples" / "ligo_offline"


def _load(monkeypatch: pytest.MonkeyPatch, module: str) -> ModuleType:
    monkeypatch.syspath_prepend(str(FOLDER))
    sys.modules.pop(module, None)
    return importlib.import_module(module)


def test_every_shard_goes_to_one_client_and_each_client_to_one_server(monkeypatch):
    assign = _load(monkeypatch, "assign")
    plan = assign.assign(shards=14, servers=2, clients=3, first_sequence_id=7)
    assert [c.server for c in plan] == [0, 1, 0, 1, 0, 1]  # 3 clients on each server
    assert [c.sequence_id for c in plan] == list(range(7, 13))  # one correlation id each
    dealt = sorted(shard for c in plan for shard in c.shards)
    assert dealt == list(range(14))  # every shard exactly once
    assert all(list(c.shards) == sorted(c.shards) for c in plan)  # streamed in order
    assert [len(c.shards) for c in plan] == [3, 3, 2, 2, 2, 2]


@pytest.mark.parametrize(
    ("shards", "servers", "clients", "text"),
    [(5, 2, 3, "--shards 5 leaves clients idle"), (4, 0, 3, "--servers and --clients")],
)
def test_a_plan_that_cannot_work_is_refused(monkeypatch, shards, servers, clients, text):
    assign = _load(monkeypatch, "assign")
    with pytest.raises(ValueError, match=text):
        assign.assign(shards, servers, clients)


@pytest.mark.slow
def test_two_servers_three_clients_match_the_single_stream(tmp_path, monkeypatch):
    example = _load(monkeypatch, "run")
    args = example.parse_args(["--tiny", "--servers", "2", "--clients", "3",
                               "--workdir", str(tmp_path)])  # fmt: skip
    result = example.run(args)
    assert result.errors == []
    assert result.answered == 12 * 6
    # Each server's snapshotter ran exactly the updates of the 3 clients dealt to it.
    assert result.updates_per_server == result.planned_per_server == [36, 36]
    assert result.max_abs_diff <= example.TOLERANCE
    cleaned = np.load(tmp_path / "cleaned.npy")
    assert cleaned.shape == (12, 2, 6 * 256) and np.isfinite(cleaned).all()
    assert np.load(tmp_path / "probabilities.npy").shape == (12, 6)
    document = json.loads(result.json_path.read_text())
    assert {c["server"] for c in document["plan"]} == {0, 1} and len(document["plan"]) == 6
