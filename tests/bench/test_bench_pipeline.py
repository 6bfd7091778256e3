"""The pipeline study: its cases, bounds, result file and command line (tiny sizes, no timing)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from headrace.bench.machine import machine_info
from headrace.bench.pipeline import CaseResult, PipelineStudyConfig, run_study
from headrace.bench.workload import MatmulBackend, matmul_context
from headrace.errors import InvalidInput

TINY = PipelineStudyConfig(
    batch_size=4,
    input_shape=(8,),
    depth=2,
    num_iterations=6,
    warmup_iterations=1,
    num_buffers=(1, 2, 3),
    cpu_delays_ms=(0.0, 0.5),
    num_workers=2,
    device="cpu",
)


def test_study_runs_every_case_with_bounds_from_the_sequential_run() -> None:
    results = run_study(TINY)
    assert [(r.cpu_delay_ms, r.num_buffers) for r in results] == [
        (0.0, 1),
        (0.0, 2),
        (0.0, 3),
        (0.5, 1),
        (0.5, 2),
        (0.5, 3),
    ]
    assert [r.label for r in results[:3]] == ["sequential", "double", "3-way"]
    for result in results:
        assert result.batches == 12
        assert result.ideal_batches_per_s >= result.sequential_bound_batches_per_s > 0
        assert result.stage_mean_ms["compute"] > 0
    sequential = [r for r in results if r.num_buffers == 1]
    assert all(r.speedup == 1.0 for r in sequential)
    delayed = sequential[1]
    assert delayed.stage_mean_ms["stage"] >= 0.5  # the simulated CPU work is a stage of its own


def test_invalid_study_settings_name_the_field() -> None:
    with pytest.raises(InvalidInput, match="invalid --num-buffers"):
        run_study(PipelineStudyConfig(num_buffers=(0, 2), device="cpu"))


def test_matmul_workload_matches_numpy() -> None:
    backend = MatmulBackend(matmul_context((3, 8), 4, "cpu"), depth=1)
    x = np.random.default_rng(1).standard_normal((2, 3, 8)).astype(np.float32)
    weight = backend._weight.numpy()
    np.testing.assert_allclose(backend.execute({"x": x})["y"], np.tanh(x @ weight), rtol=1e-5)


def test_command_writes_json_with_machine_info(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from headrace.cli import build_parser

    out = tmp_path / "results" / "pipeline_cpu.json"
    parser = build_parser(plugins=("headrace.bench.cli",))
    args = parser.parse_args(
        [
            "bench",
            "pipeline",
            "--batch-size=4",
            "--input-shape=2x8",
            "--num-iterations=4",
            "--warmup-iterations=0",
            "--num-buffers=1,2",
            "--cpu-delay-ms=0",
            "--device=cpu",
            f"--out={out}",
        ]
    )
    assert args.func(args) == 0
    document = json.loads(out.read_text())
    assert document["study"] == "pipeline" and document["device"] == "cpu"
    assert document["config"]["input_shape"] == [2, 8]
    assert [r["mode"] for r in document["results"]] == ["sequential", "double"]
    assert document["machine"]["cpu_count"] >= 1
    printed = capsys.readouterr().out
    assert "pipeline study on cpu" in printed
    assert "plot" in printed


def test_bad_list_arguments_are_usage_errors() -> None:
    from headrace.cli import build_parser

    parser = build_parser(plugins=("headrace.bench.cli",))
    with pytest.raises(SystemExit):
        parser.parse_args(["bench", "pipeline", "--num-buffers=one,two"])


def test_machine_info_describes_the_host() -> None:
    info = machine_info()
    assert info["cpu_model"]
    assert isinstance(info["gpus"], list)
    json.dumps(info)


def test_plot_is_written_when_matplotlib_is_installed(tmp_path: Path) -> None:
    pytest.importorskip("matplotlib")
    from headrace.bench.pipeline_report import plot_results

    results = run_study(
        PipelineStudyConfig(
            batch_size=2,
            input_shape=(4,),
            num_iterations=2,
            warmup_iterations=0,
            num_buffers=(1, 2),
            cpu_delays_ms=(0.0,),
            device="cpu",
        )
    )
    path = plot_results(str(tmp_path / "study.png"), results, "cpu")
    assert path is not None
    assert (tmp_path / "study.png").read_bytes().startswith(b"\x89PNG")


def test_model_study_places_the_models_instance_group(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """``bench pipeline --model``: ``instance_group [{ count: 2, kind: KIND_CPU }]`` is two
    instances, as in serve and run; ``--instances`` overrides it."""
    import torch

    from headrace.cli import build_parser
    from headrace.repository import ModelRepository

    repo = ModelRepository(str(tmp_path / "repo"))
    entry = repo.add("tiny", max_batch_size=8)
    entry.export_version(torch.nn.Linear(4, 2), input_shapes={"x": (None, 4)}, output_names=["y"])
    entry.config.add_instance_group(count=2, kind="cpu")
    parser = build_parser(plugins=("headrace.bench.cli",))
    common = [
        "bench",
        "pipeline",
        f"--model={tmp_path / 'repo' / 'tiny'}",
        "--batch-size=8",
        "--num-iterations=3",
        "--warmup-iterations=0",
        "--num-buffers=1,2",
        "--cpu-delay-ms=0",
        "--no-plot",
    ]
    out = tmp_path / "tiny.json"
    args = parser.parse_args([*common, f"--out={out}"])
    assert args.func(args) == 0
    document = json.loads(out.read_text())
    assert [r["instances"] for r in document["results"]] == [2, 2]
    assert [r["devices"] for r in document["results"]] == [["cpu", "cpu"]] * 2
    assert [r["batches"] for r in document["results"]] == [6, 6]
    assert "pipeline study on cpu" in capsys.readouterr().out
    args = parser.parse_args([*common, "--instances=3", f"--out={out}"])
    assert args.func(args) == 0
    assert [r["instances"] for r in json.loads(out.read_text())["results"]] == [3, 3]


def test_without_out_a_new_file_in_the_working_directory(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    from headrace.cli import main

    monkeypatch.chdir(tmp_path)
    (tmp_path / "pipeline_cpu.json").write_text("recorded")  # never replaced silently
    argv = [
        "bench", "pipeline", "--batch-size=2", "--input-shape=4", "--num-iterations=2",
        "--warmup-iterations=0", "--num-buffers=1", "--cpu-delay-ms=0", "--device=cpu",
        "--no-plot",
    ]  # fmt: skip
    assert main(argv) == 0
    assert main(argv) == 0
    printed = capsys.readouterr().out
    assert "results: pipeline_cpu-2.json" in printed and "results: pipeline_cpu-3.json" in printed
    assert (tmp_path / "pipeline_cpu.json").read_text() == "recorded"
    assert json.loads((tmp_path / "pipeline_cpu-3.json").read_text())["study"] == "pipeline"


def test_a_gpu_that_is_not_there_is_one_line(capsys: pytest.CaptureFixture[str]) -> None:
    from headrace.cli import main
    from headrace.devices import gpu_count

    if gpu_count():
        pytest.skip("a GPU is present")
    for device in ("cuda", "cuda:0"):
        assert main(["bench", "pipeline", f"--device={device}", "--no-plot"]) == 1
        err = capsys.readouterr().err
        assert err.count("\n") == 1 and "no GPU" in err and "Traceback" not in err


def _case(delay: float, buffers: int, instances: int = 1) -> CaseResult:
    stages = {"stage": 10.02, "h2d": 0.51, "compute": 4.23, "d2h": 0.48}
    return CaseResult(
        cpu_delay_ms=delay,
        num_buffers=buffers,
        batches=200,
        elapsed_s=1.5,
        batches_per_s=12345.6,
        items_per_s=3160473.6,
        stage_mean_ms=stages,
        speedup=12.34,
        ideal_batches_per_s=23456.7,
        sequential_bound_batches_per_s=12345.6,
        instances=instances,
        devices=("cuda:0",),
    )


@pytest.mark.parametrize("instances", [1, 16])
def test_tables_fit_80_columns(instances: int) -> None:
    from headrace.bench.pipeline_report import results_table
    from headrace.bench.scaleout import ScaleoutResult, scaleout_table
    from narrow_terminal import assert_fits

    cases = [_case(d, b, instances) for d in (0.0, 12.5) for b in (1, 2, 16)]
    text = assert_fits(results_table(cases, "cuda:0, cuda:1, decode preprocessing"))
    assert "16-way" in text and f"{instances} instance" in text
    scaled = [
        ScaleoutResult(12.5, w, b, 200, 1.5, 1234.5, 3.1e5, [617.3] * w, [], 12.34, 0.99)
        for w in (1, 2, 4)
        for b in (1, 16)
    ]
    assert_fits(scaleout_table(scaled, "scale-out on gpu, ray workers"))
