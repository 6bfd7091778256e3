"""Scanning a repository: good models become entries, every broken one a named problem."""

from __future__ import annotations

from pathlib import Path

import pytest

from headrace.repository import ModelRepository, RepositoryProblem
from headrace.repository.example_sources import IDENTITY_MODEL

GOOD_CONFIG = """
name: "{name}"
backend: "python"
max_batch_size: 4
input {{ name: "INPUT0" data_type: TYPE_FP32 dims: [ 3 ] }}
output {{ name: "OUTPUT0" data_type: TYPE_FP32 dims: [ 3 ] }}
{extra}
"""


def write_model(
    root: Path,
    name: str,
    *,
    config: str | None = None,
    versions: tuple[str, ...] = ("1",),
    model_file: str | None = "model.py",
    extra: str = "",
) -> Path:
    model = root / name
    model.mkdir(parents=True)
    if config is None:
        config = GOOD_CONFIG.format(name=name, extra=extra)
    if config:
        (model / "config.pbtxt").write_text(config)
    for version in versions:
        (model / version).mkdir()
        if model_file:
            (model / version / model_file).write_text(IDENTITY_MODEL)
    return model


def only_problem(problems: tuple[RepositoryProblem, ...], model: str) -> RepositoryProblem:
    found = [p for p in problems if p.model == model]
    assert len(found) == 1, found
    return found[0]


def test_good_repository_scans_clean(tmp_path: Path) -> None:
    write_model(tmp_path, "a", versions=("1", "2", "not_a_version", "03"))
    write_model(tmp_path, "b", extra="version_policy { all { } }", versions=("1", "7"))
    report = ModelRepository(tmp_path).scan()
    assert report.ok, report.problems
    assert report.names() == ["a", "b"]
    a = report.entry("a")
    assert a is not None
    assert a.available_versions() == [1, 2]  # non-numeric and zero-prefixed dirs ignored
    assert a.versions() == [2]
    completed = a.completed_config()
    assert completed.name == "a" and completed.backend == "python"
    assert completed.max_batch_size == 4
    assert [t.name for t in completed.input] == ["INPUT0"]
    assert len(completed.instance_group) >= 1  # defaults filled
    b = report.entry("b")
    assert b is not None and b.versions() == [1, 7]


def test_config_name_may_be_omitted(tmp_path: Path) -> None:
    config = GOOD_CONFIG.format(name="x", extra="").replace('name: "x"', "")
    write_model(tmp_path, "unnamed", config=config)
    report = ModelRepository(tmp_path).scan()
    assert report.ok, report.problems
    assert report.entries[0].completed_config().name == "unnamed"


def test_broken_repository_names_file_and_field_for_each_problem(tmp_path: Path) -> None:
    write_model(tmp_path, "good")
    write_model(tmp_path, "no_config", config="")
    write_model(tmp_path, "syntax", config='name: "syntax"\nmax_batch: 4\n')
    bad_value = GOOD_CONFIG.format(name="bad_value", extra="")
    write_model(
        tmp_path, "bad_value", config=bad_value.replace("max_batch_size: 4", "max_batch_size: -2")
    )
    write_model(tmp_path, "no_version", versions=())
    write_model(tmp_path, "renamed", config=GOOD_CONFIG.format(name="other", extra=""))
    write_model(tmp_path, "no_file", model_file=None)
    bad_dims = GOOD_CONFIG.format(name="bad_dims", extra="")
    write_model(
        tmp_path,
        "bad_dims",
        config=bad_dims.replace("dims: [ 3 ] }\noutput", "dims: [ 0 ] }\noutput"),
    )
    report = ModelRepository(tmp_path).scan()

    assert report.names() == ["good"]
    assert not report.ok

    missing = only_problem(report.problems, "no_config")
    assert missing.path == str(tmp_path / "no_config" / "config.pbtxt")
    assert "missing" in missing.message

    syntax = only_problem(report.problems, "syntax")
    assert syntax.path.endswith("syntax/config.pbtxt")
    assert "max_batch" in syntax.message

    bad_value = only_problem(report.problems, "bad_value")
    assert bad_value.path.endswith("bad_value/config.pbtxt")
    assert bad_value.field == "max_batch_size"
    assert "-2" in bad_value.message

    no_version = only_problem(report.problems, "no_version")
    assert no_version.path == str(tmp_path / "no_version")
    assert "no version directory" in no_version.message

    renamed = only_problem(report.problems, "renamed")
    assert renamed.field == "name"
    assert "'other'" in renamed.message and "'renamed'" in renamed.message
    assert renamed.path.endswith("renamed/config.pbtxt")

    no_file = only_problem(report.problems, "no_file")
    assert no_file.path == str(tmp_path / "no_file" / "1")
    assert "model.py" in no_file.message

    bad_dims = only_problem(report.problems, "bad_dims")
    assert bad_dims.path.endswith("bad_dims/config.pbtxt")
    assert bad_dims.field.startswith("input[0].dims")

    text = str(bad_value)
    assert "bad_value" in text and "config.pbtxt" in text and "max_batch_size" in text


def test_missing_specific_version_is_reported_but_model_kept(tmp_path: Path) -> None:
    write_model(tmp_path, "m", extra="version_policy { specific { versions: [ 1, 4 ] } }")
    report = ModelRepository(tmp_path).scan()
    assert report.names() == ["m"]
    problem = only_problem(report.problems, "m")
    assert problem.field == "version_policy.specific.versions"
    assert "version 4" in problem.message


def test_older_served_version_without_model_file_is_reported(tmp_path: Path) -> None:
    model = write_model(tmp_path, "m", extra="version_policy { all { } }", versions=("1", "2"))
    (model / "1" / "model.py").unlink()
    report = ModelRepository(tmp_path).scan()
    assert report.names() == ["m"]
    assert only_problem(report.problems, "m").path == str(model / "1")


def test_missing_config_allowed_without_strict_model_config(tmp_path: Path) -> None:
    torch = pytest.importorskip("torch")
    pytest.importorskip("onnxruntime")
    from headrace.repository.export import export_onnx

    (tmp_path / "auto" / "1").mkdir(parents=True)
    export_onnx(
        torch.nn.Linear(8, 2),
        str(tmp_path / "auto" / "1" / "model.onnx"),
        input_shapes={"x": (None, 8)},
        output_names=["y"],
    )
    strict = ModelRepository(tmp_path).scan()
    assert strict.names() == [] and "missing" in only_problem(strict.problems, "auto").message

    report = ModelRepository(tmp_path, strict_model_config=False).scan()
    assert report.ok, report.problems
    completed = report.entries[0].completed_config()
    assert completed.backend == "onnxruntime"
    assert [(t.name, list(t.dims)) for t in completed.input] == [("x", [8])]
    assert [(t.name, list(t.dims)) for t in completed.output] == [("y", [2])]
    assert completed.max_batch_size > 0


def test_unknown_model_file_without_config_is_reported(tmp_path: Path) -> None:
    write_model(tmp_path, "odd", config="", model_file="model.savedmodel")
    report = ModelRepository(tmp_path, strict_model_config=False).scan()
    problem = only_problem(report.problems, "odd")
    assert problem.field == "backend"
    assert "model.savedmodel" in problem.message
