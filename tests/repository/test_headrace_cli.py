"""The ``headrace`` command: repo check, examples create, plugin loading, exit codes."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from headrace import __version__
from headrace.cli import build_parser, main
from headrace.repository.example_sources import IDENTITY_MODEL
from headrace.repository.examples import EXAMPLE_MODELS

AUTO_COMPLETED_MODEL = """
import triton_python_backend_utils as pb_utils


class TritonPythonModel:
    @staticmethod
    def auto_complete_config(config):
        config.set_max_batch_size(4)
        config.add_input({"name": "X", "data_type": "TYPE_FP32", "dims": [2]})
        config.add_output({"name": "Y", "data_type": "TYPE_FP32", "dims": [2]})
        return config

    def execute(self, requests):
        return [pb_utils.InferenceResponse(output_tensors=[
            pb_utils.Tensor("Y", pb_utils.get_input_tensor_by_name(r, "X").as_numpy())])
            for r in requests]
"""


@pytest.fixture(autouse=True)
def wide_terminal(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("COLUMNS", "250")


def test_examples_create_then_check_lists_every_model_valid(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    pytest.importorskip("torch")
    pytest.importorskip("onnxruntime")
    target = tmp_path / "examples"
    assert main(["examples", "create", str(target)]) == 0
    assert main(["examples", "create", str(target)]) == 0  # the README's command, run twice
    assert "reused the 12 example models" in capsys.readouterr().out
    (target / "notes.txt").write_text("mine")
    assert main(["examples", "create", str(target)]) == 1  # something else there, no --force
    assert "notes.txt is not an example file" in capsys.readouterr().err
    assert main(["examples", "create", str(target), "--force"]) == 0
    capsys.readouterr()

    assert main(["repo", "check", str(target)]) == 0
    out = capsys.readouterr().out
    rows = [line for line in out.splitlines() if line.startswith("│")]
    assert len([row for row in rows if row.split("│")[-2].strip() == "OK"]) == len(EXAMPLE_MODELS)
    for name in EXAMPLE_MODELS:
        row = next(r for r in rows if r.split("│")[1].strip() == name)
        assert row.split("│")[-2].strip() == "OK"
    assert "no problems" in out
    assert "INPUT0 INT32 [16]" in out and "INPUT0 BYTES [-1]" in out


def test_broken_repository_exits_1_and_names_file_and_field(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    (tmp_path / "bad" / "1").mkdir(parents=True)
    (tmp_path / "bad" / "1" / "model.py").write_text(IDENTITY_MODEL)
    (tmp_path / "bad" / "config.pbtxt").write_text(
        'name: "bad"\nbackend: "python"\nmax_batch_size: -3\n'
        'input { name: "I" data_type: TYPE_FP32 dims: [1] }\n'
        'output { name: "O" data_type: TYPE_FP32 dims: [1] }\n'
    )
    (tmp_path / "empty").mkdir()
    (tmp_path / "empty" / "config.pbtxt").write_text('name: "empty"\nbackend: "python"\n')
    assert main(["repo", "check", str(tmp_path)]) == 1
    out = capsys.readouterr().out
    assert "INVALID" in out
    assert f"{tmp_path / 'bad' / 'config.pbtxt'}: max_batch_size:" in out
    assert "-3" in out
    assert f"{tmp_path / 'empty'}: no version directory" in out


def test_missing_config_passes_only_without_strict_model_config(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    (tmp_path / "m" / "1").mkdir(parents=True)
    (tmp_path / "m" / "1" / "model.py").write_text(AUTO_COMPLETED_MODEL)
    assert main(["repo", "check", str(tmp_path)]) == 1
    assert f"{tmp_path / 'm' / 'config.pbtxt'}: file is missing" in capsys.readouterr().out
    # model.py alone means the python backend, whose auto_complete_config declares the tensors.
    assert main(["repo", "check", str(tmp_path), "--strict-model-config", "false"]) == 0
    out = capsys.readouterr().out
    assert "python" in out and "X FP32 [2]" in out and "no problems" in out


def test_check_on_a_missing_directory_fails(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["repo", "check", str(tmp_path / "nope")]) == 1
    assert "not a directory" in capsys.readouterr().out


def test_no_command_prints_help_and_exits_2(capsys: pytest.CaptureFixture[str]) -> None:
    assert main([]) == 2
    assert "repo" in capsys.readouterr().err


def test_version_and_module_entry_point() -> None:
    result = subprocess.run(
        [sys.executable, "-m", "headrace.cli", "--version"],
        capture_output=True,
        text=True,
        check=False,
        timeout=120,
    )
    assert result.returncode == 0
    assert result.stdout.strip() == f"headrace {__version__}"


def test_plugins_register_and_only_absent_modules_are_skipped(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    (tmp_path / "hr_fake_plugin.py").write_text(
        "def register(subparsers):\n"
        "    p = subparsers.add_parser('hello')\n"
        "    p.set_defaults(func=lambda args: 7)\n"
    )
    (tmp_path / "hr_broken_plugin.py").write_text("import hr_dependency_that_is_not_there\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    parser = build_parser(["hr_fake_plugin", "hr_absent_plugin"])
    args = parser.parse_args(["hello"])
    assert args.func(args) == 7
    with pytest.raises(ModuleNotFoundError, match="hr_dependency_that_is_not_there"):
        build_parser(["hr_broken_plugin"])


def test_check_tables_fit_80_columns(tmp_path: Path) -> None:
    pytest.importorskip("torch")
    pytest.importorskip("onnxruntime")
    from headrace.repository import ModelRepository
    from headrace.repository.cli import models_table, tensors_table
    from headrace.repository.examples import create_examples_repository
    from narrow_terminal import assert_fits

    repo = create_examples_repository(tmp_path / "a_rather_long_repository_directory_name")
    (tmp_path / "a_rather_long_repository_directory_name" / "broken_model").mkdir()
    repo = ModelRepository(repo.path)
    report = repo.scan()
    text = assert_fits(models_table(repo, report))
    assert "streaming_detector" in text and "INVALID" in text
    assert "probability FP32 [1]" in assert_fits(tensors_table(report))
