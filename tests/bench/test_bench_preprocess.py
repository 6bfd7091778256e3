"""The pipeline study's preprocessing kinds: sleep, spin (GIL held), decode (GIL released)."""

from __future__ import annotations

import json
import zlib
from pathlib import Path

import numpy as np
import pytest

from headrace.bench.pipeline import PipelineStudyConfig, run_study
from headrace.bench.preprocess import PREPROCESS_KINDS, Decoder, cpu_stage, spin
from headrace.bench.workload import simulated_cpu_stage
from headrace.errors import InvalidInput


@pytest.mark.parametrize("kind", PREPROCESS_KINDS)
def test_every_kind_passes_the_batch_through_and_none_without_delay(kind: str) -> None:
    assert cpu_stage(kind, 0.0) is None
    stage = cpu_stage(kind, 0.2)
    assert stage is not None
    requests = [object(), object()]
    assert stage(requests) is requests  # type: ignore[arg-type]


def test_an_unknown_kind_names_the_flag_and_the_choices() -> None:
    with pytest.raises(InvalidInput, match=r"--preprocess 'busy' is not one of sleep, spin"):
        cpu_stage("busy", 1.0)
    with pytest.raises(InvalidInput, match="invalid --preprocess 'busy'"):
        PipelineStudyConfig(preprocess="busy").validate()


def test_the_default_stays_sleep() -> None:
    assert PipelineStudyConfig().preprocess == "sleep"
    assert simulated_cpu_stage(0.0) is None
    assert simulated_cpu_stage(0.1) is not None


def test_spin_runs_python_until_its_deadline() -> None:
    assert spin(0.0) == 1
    assert spin(0.002) > 1  # the loop turned: Python bytecode, holding the GIL


def test_decoder_sizes_its_payload_from_the_rate_and_decodes_it() -> None:
    decoder = Decoder(0.004, rate=2_000_000.0, seed=3)
    assert decoder.raw_bytes == 8000
    raw = zlib.decompress(decoder.payload)
    assert len(raw) == 8000 and max(raw) < 16
    assert len(decoder.payload) < len(raw)  # low-entropy bytes compress
    decoded = decoder()
    assert decoded.dtype == np.float32
    np.testing.assert_array_equal(decoded, np.frombuffer(raw, dtype=np.uint8))
    assert Decoder(1e-9, rate=1.0).raw_bytes == 4096  # never an empty payload


def test_decoder_measures_its_rate_when_not_given() -> None:
    assert Decoder(0.001).raw_bytes >= 4096


@pytest.mark.parametrize("kind", ["spin", "decode"])
def test_the_study_runs_with_cpu_bound_preprocessing(kind: str) -> None:
    config = PipelineStudyConfig(
        batch_size=2,
        input_shape=(8,),
        depth=1,
        num_iterations=3,
        warmup_iterations=0,
        num_buffers=(1, 2),
        cpu_delays_ms=(0.5,),
        device="cpu",
        preprocess=kind,
    )
    results = run_study(config)
    assert [r.num_buffers for r in results] == [1, 2]
    assert all(r.stage_mean_ms["stage"] > 0 for r in results)


def test_the_command_records_the_kind(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from headrace.cli import build_parser

    out = tmp_path / "pipeline_cpu_spin.json"
    parser = build_parser(plugins=("headrace.bench.cli",))
    args = parser.parse_args(
        [
            "bench",
            "pipeline",
            "--batch-size=2",
            "--input-shape=8",
            "--num-iterations=2",
            "--warmup-iterations=0",
            "--num-buffers=1",
            "--cpu-delay-ms=0.2",
            "--preprocess=spin",
            "--device=cpu",
            "--no-plot",
            f"--out={out}",
        ]
    )
    assert args.func(args) == 0
    assert json.loads(out.read_text())["config"]["preprocess"] == "spin"
    assert "spin preprocessing" in capsys.readouterr().out
    with pytest.raises(SystemExit):
        parser.parse_args(["bench", "pipeline", "--preprocess=busy"])


def test_help_shows_the_default(capsys: pytest.CaptureFixture[str]) -> None:
    from headrace.cli import build_parser

    parser = build_parser(plugins=("headrace.bench.cli",))
    with pytest.raises(SystemExit):
        parser.parse_args(["bench", "pipeline", "--help"])
    text = " ".join(capsys.readouterr().out.split())
    assert "(default sleep)" in text
