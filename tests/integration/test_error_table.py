"""docs/errors.md stays true: headrace answers every bad request as its table records, and
NVIDIA Triton 2.51 (where ``../shared/tools/tritonserver`` is installed) still answers the rows
the table calls the same alike.

The cases are ``benchmarks/error_cases.py``; the recorded answers are
``benchmarks/results/error_table.json`` (``python benchmarks/error_table.py`` rewrites both
files). Triton's python-backend stub prints a traceback into one answer; rows whose Triton
text carries it compare by their first line only.
"""

from __future__ import annotations

import importlib.util
import json
import sys
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest
from triton_process import TRITON_MISSING

BENCHMARKS = Path(__file__).resolve().parents[2] / "benchmarks"
RECORDED = json.loads((BENCHMARKS / "results" / "error_table.json").read_text())["records"]


def _load(name: str) -> ModuleType:
    spec = importlib.util.spec_from_file_location(name, BENCHMARKS / f"{name}.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="module")
def table() -> ModuleType:
    return _load("error_table")


def _answers(table: ModuleType, system: str, tmp_path: Path) -> dict[tuple[str, str], Any]:
    repository = table.error_cases.write_repository(tmp_path / "repo")
    return table.collect(system, repository, tmp_path)  # type: ignore[no-any-return]


def _first_line(text: str) -> str:
    return text.split("\n", 1)[0]


def test_headrace_answers_as_the_table_records(table: ModuleType, tmp_path: Path) -> None:
    answers = _answers(table, "headrace", tmp_path)
    assert {(r["case"], r["protocol"]) for r in RECORDED} == set(answers)
    wrong = [
        (row["case"], row["protocol"], row["headrace"], answers[(row["case"], row["protocol"])])
        for row in RECORDED
        if row["headrace"] != answers[(row["case"], row["protocol"])]
    ]
    assert wrong == []


@pytest.mark.skipif(TRITON_MISSING, reason="../shared/tools/tritonserver is not installed")
def test_triton_still_answers_the_rows_called_same_alike(table: ModuleType, tmp_path: Path) -> None:
    answers = _answers(table, "triton", tmp_path)
    changed = []
    for row in RECORDED:
        now = answers[(row["case"], row["protocol"])]
        if (now["status"], _first_line(now["text"])) != (
            row["triton"]["status"],
            _first_line(row["triton"]["text"]),
        ):
            changed.append((row["case"], row["protocol"], row["triton"], now))
        elif row["verdict"] == "same":
            assert table.verdict(now, row["headrace"]) == "same", row
    assert changed == []
