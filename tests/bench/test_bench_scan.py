"""The batch-size scan: the timing loop, its statistics, the direct scan and the command.

No timing assertions: the tests count calls and check the arithmetic on known elapsed times.
The served scan against a real ``headrace serve`` is in tests/integration.
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from headrace.bench.scan import (
    InputSpec,
    ScanOptions,
    Target,
    point,
    random_inputs,
    run_scan,
    time_trials,
)
from headrace.bench.scan_cli import parse_url
from headrace.bench.scan_direct import direct_target
from headrace.bench.scan_report import free_path
from headrace.errors import InvalidInput
from headrace.types import DataType

SPECS = (InputSpec("x", DataType.FP32, (3,)), InputSpec("n", DataType.INT32, (2,)))


def test_random_inputs_are_standard_normal_floats_and_binary_integers() -> None:
    rng = np.random.default_rng(0)
    inputs = random_inputs(SPECS, 4000, rng)
    assert inputs["x"].shape == (4000, 3) and inputs["x"].dtype == np.float32
    assert abs(float(inputs["x"].mean())) < 0.05 and abs(float(inputs["x"].std()) - 1) < 0.05
    assert inputs["n"].dtype == np.int32 and set(np.unique(inputs["n"])) == {0, 1}
    assert random_inputs(SPECS, 5, rng, batched=False)["x"].shape == (3,)
    with pytest.raises(InvalidInput, match="'v' has variable dims"):
        random_inputs([InputSpec("v", DataType.FP32, (-1,))], 1, rng)


def test_time_trials_runs_warmup_then_trials_with_fresh_inputs_each() -> None:
    made: list[int] = []
    seen: list[int] = []

    def make() -> dict[str, Any]:
        made.append(len(made))
        return {"i": np.array(len(made) - 1)}

    elapsed = time_trials(lambda inputs: seen.append(int(inputs["i"])), make, trials=5, warmup=2)
    assert len(elapsed) == 5 and all(ns >= 0 for ns in elapsed)
    assert seen == list(range(7))  # every call got its own inputs, warmup first


def test_point_turns_elapsed_times_into_throughput_mean_and_sem() -> None:
    # batch 10 in 10 ms, 20 ms, 40 ms -> 1000, 500, 250 items/s
    p = point("direct", "m", 10, [10_000_000, 20_000_000, 40_000_000], 1.0, 2.0)
    assert p.throughput_mean == pytest.approx(1750 / 3)
    std = math.sqrt(((1000 - 1750 / 3) ** 2 + (500 - 1750 / 3) ** 2 + (250 - 1750 / 3) ** 2) / 2)
    assert p.throughput_std == pytest.approx(std)
    assert p.throughput_sem == pytest.approx(std / math.sqrt(3))
    assert p.latency_ms["p50"] == pytest.approx(20.0) and p.latency_ms["mean"] == pytest.approx(
        70 / 3
    )
    assert (p.trials, p.start_time, p.end_time) == (3, 1.0, 2.0)


def test_run_scan_alternates_targets_at_each_batch_size() -> None:
    calls: list[tuple[str, int]] = []

    def target(name: str) -> Target:
        return Target(name, "m", SPECS[:1], 8, lambda x, n=name: calls.append((n, len(x["x"]))))

    points = run_scan([target("a"), target("b")], ScanOptions((1, 4), trials=2, warmup=1))
    assert [(p.mode, p.batch_size) for p in points] == [("a", 1), ("b", 1), ("a", 4), ("b", 4)]
    assert calls == [("a", 1)] * 3 + [("b", 1)] * 3 + [("a", 4)] * 3 + [("b", 4)] * 3


def test_options_refuse_batches_over_the_models_limit_and_bad_counts() -> None:
    with pytest.raises(InvalidInput, match="batch size 16 is over the model's max_batch_size 8"):
        ScanOptions((1, 16)).validate(8)
    with pytest.raises(InvalidInput, match="--trials"):
        ScanOptions(trials=0).validate()
    ScanOptions((1,)).validate(0)  # a model without batching takes one item at a time


def tiny_onnx(tmp_path: Path) -> Path:
    torch = pytest.importorskip("torch")
    pytest.importorskip("onnxruntime")
    from headrace.repository import ModelRepository

    torch.manual_seed(0)
    repo = ModelRepository(tmp_path / "repo")
    entry = repo.add("tiny", max_batch_size=8)
    entry.export_version(
        torch.nn.Sequential(torch.nn.Linear(4, 3), torch.nn.ReLU()),
        input_shapes={"INPUT0": (None, 4)},
        output_names=["OUTPUT0"],
    )
    return tmp_path / "repo" / "tiny"


def test_direct_scan_of_a_tiny_model(tmp_path: Path) -> None:
    model = tiny_onnx(tmp_path)
    with direct_target(str(model), 4, device="cpu") as target:
        assert (target.model, target.device, target.max_batch_size) == ("tiny", "cpu", 8)
        assert target.inputs == (InputSpec("INPUT0", DataType.FP32, (4,)),)
        outputs = target.infer(random_inputs(target.inputs, 2, np.random.default_rng(0)))
        assert np.asarray(outputs["OUTPUT0"]).shape == (2, 3)  # type: ignore[index]
        points = run_scan([target], ScanOptions((1, 4), trials=3, warmup=1))
    assert [(p.mode, p.batch_size, p.trials) for p in points] == [
        ("direct", 1, 3),
        ("direct", 4, 3),
    ]
    assert all(p.throughput_mean > 0 and p.throughput_sem >= 0 for p in points)


def test_scan_command_writes_json_with_machine_monitor_and_plot(tmp_path: Path) -> None:
    from headrace.cli import main

    model = tiny_onnx(tmp_path)
    out = tmp_path / "results" / "scan.json"
    args = ["bench", "scan", str(model), "--trials", "3", "--warmup", "1", "--batch-sizes", "1,2"]
    assert main([*args, "--device", "cpu", "--monitor", "--out", str(out)]) == 0
    document = json.loads(out.read_text())
    assert document["study"] == "scan" and document["machine"]["cpu_model"]
    assert document["command"][:4] == ["headrace", "bench", "scan", str(model)]
    assert "--monitor" in document["command"]
    assert document["options"] == {"batch_sizes": [1, 2], "trials": 3, "warmup": 1, "seed": 0}
    assert document["targets"] == [
        {"model": "tiny", "mode": "direct", "device": "cpu", "server": None}
    ]
    assert [(p["batch_size"], p["trials"]) for p in document["points"]] == [(1, 3), (2, 3)]
    monitor = document["monitor"]
    assert monitor["csv"] == str(tmp_path / "results" / "scan_monitor.csv")
    header = Path(monitor["csv"]).read_text().splitlines()[0]
    assert header == "Timestamp,GPU Util (%),GPU Mem (%),CPU Util (%),RAM Util (%)"
    pytest.importorskip("matplotlib")
    assert (tmp_path / "results" / "scan.png").stat().st_size > 0


def test_unknown_model_names_say_what_is_accepted(capsys: pytest.CaptureFixture[str]) -> None:
    from headrace.cli import main

    assert main(["bench", "scan", "no_such_model", "--trials", "1"]) != 0
    assert "not a path, and not an example" in capsys.readouterr().err


def test_urls_and_result_paths(tmp_path: Path) -> None:
    assert parse_url("grpc://127.0.0.1:8001", "http") == ("grpc", "127.0.0.1:8001")
    assert parse_url("http://h:8000/", "grpc") == ("http", "h:8000")
    assert parse_url("h:8001", "grpc") == ("grpc", "h:8001")
    with pytest.raises(InvalidInput, match="https://h"):
        parse_url("https://h", "http")
    first = tmp_path / "r.json"
    assert free_path(str(first)) == str(first)
    first.write_text("{}")
    assert free_path(str(first)) == str(tmp_path / "r_2.json")
    (tmp_path / "r_2.json").write_text("{}")
    assert free_path(str(first)) == str(tmp_path / "r_3.json")


@pytest.mark.gpu
def test_direct_scan_on_cuda_synchronizes_and_reports_the_device(tmp_path: Path) -> None:
    torch = pytest.importorskip("torch")
    if not torch.cuda.is_available():
        pytest.skip("no GPU")
    from headrace.repository import ModelRepository

    repo = ModelRepository(tmp_path / "repo")
    entry = repo.add("tiny_ts", max_batch_size=8)
    entry.export_version(
        torch.nn.Linear(4, 3),
        input_shapes={"x": (None, 4)},
        output_names=["y"],
        format="torchscript",
    )
    with direct_target(str(tmp_path / "repo" / "tiny_ts"), 8, device="cuda") as target:
        assert target.device.startswith("cuda")
        points = run_scan([target], ScanOptions((1, 8), trials=3, warmup=1))
    assert [p.batch_size for p in points] == [1, 8] and all(p.throughput_mean > 0 for p in points)
