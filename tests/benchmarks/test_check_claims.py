"""benchmarks/check_claims.py: every figure the READMEs quote spans its result file's rows."""

from __future__ import annotations

import json
from pathlib import Path
from types import ModuleType

import pytest
from bench_scripts import load_script

SCRIPT = Path(__file__).resolve().parents[2] / "benchmarks" / "check_claims.py"


def _load() -> ModuleType:
    module = load_script(SCRIPT, "check_claims")
    return module


claims = _load()


@pytest.mark.parametrize(
    "claim",
    claims.CLAIMS,
    ids=[f"{c.result}:{' '.join(c.text.split())[:50]}" for c in claims.CLAIMS],
)
def test_every_claim_matches_its_result_file(claim: object) -> None:
    assert claims.check(claim) == []


def test_every_result_file_a_readme_quotes_has_a_claim() -> None:
    checked = {claim.result for claim in claims.CLAIMS}
    for name in ("pipeline_cpu.json", "pipeline_cpu_spin.json", "http_stack.json"):
        assert name in checked


def _repo(tmp_path: Path, doc: str, result: object) -> Path:
    (tmp_path / "benchmarks" / "results").mkdir(parents=True)
    (tmp_path / "README.md").write_text(doc)
    (tmp_path / "benchmarks" / "results" / "r.json").write_text(json.dumps(result))
    return tmp_path


ROWS = {
    "summary": [
        {"model": "compute_python", "c": 16, "ratio": 0.743},
        {"model": "compute_onnx", "c": 16, "ratio": 0.689},
        {"model": "compute_onnx", "c": 64, "ratio": 0.529},
        {"model": "mlp_python", "c": 16, "ratio": 1.2, "extra": None},
    ]
}


def test_a_range_that_leaves_a_row_out_fails(tmp_path: Path) -> None:
    root = _repo(tmp_path, "compute at c=16: 0.74-0.74\nand\n  wrapped", ROWS)
    claim = claims.Claim(
        "README.md", "c=16: 0.74-0.74", "r.json", "summary[model^=compute][c=16].ratio"
    )
    (problem,) = claims.check(claim, root)
    assert "0.689-0.743 over 2 values" in problem
    no_number = claims.Claim(
        "README.md", "and wrapped", "r.json", "summary[model=mlp_python].ratio"
    )
    with pytest.raises(ValueError, match="quotes no number"):
        claims.check(no_number, root)


def test_a_range_covering_every_row_passes_to_the_written_precision(tmp_path: Path) -> None:
    root = _repo(tmp_path, "compute at c=16: 0.69\u20130.74 (all)", ROWS)
    claim = claims.Claim(
        "README.md", "c=16: 0.69\u20130.74", "r.json", "summary[model^=compute][c=16].ratio"
    )
    assert claims.check(claim, root) == []
    coarse = claims.Claim(
        "README.md", "c=16: 0.7\u20130.7", "r.json", "summary[model^=compute][c=16].ratio"
    )
    root = _repo(tmp_path / "b", "c=16: 0.7\u20130.7", ROWS)
    assert claims.check(coarse, root) == []


def test_an_edited_number_or_missing_words_fail(tmp_path: Path) -> None:
    root = _repo(tmp_path, "| onnx | 0.69 | 0.54 |", ROWS)
    row = claims.Row(
        "README.md",
        "| onnx | 0.69 | 0.54 |",
        "r.json",
        ("summary[model=compute_onnx][c=16].ratio", "summary[model=compute_onnx][c=64].ratio"),
    )
    (problem,) = claims.check(row, root)
    assert "quotes 0.54-0.54" in problem and "0.529" in problem
    gone = claims.Claim("README.md", "| onnx | 0.70 |", "r.json", "summary[*].ratio")
    assert claims.check(gone, root) == ["README.md no longer says '| onnx | 0.70 |'"]
    short = claims.Row("README.md", "| onnx | 0.69 | 0.54 |", "r.json", (None,))
    assert "holds 2 numbers" in claims.check(short, root)[0]


def test_selectors_and_scale() -> None:
    data = {"a": {"x y": {"v": 2.0}, "z": {"v": 4.0}}, "rows": ROWS["summary"]}
    assert claims.select(data, "a[*].v") == [2.0, 4.0]
    assert claims.select(data, "a.x y.v") == [2.0]
    assert claims.select(data, "rows[model$=_onnx].ratio") == [0.689, 0.529]
    assert claims.select(data, "rows[model~=mlp_python,compute_python].ratio") == [0.743, 1.2]
    assert claims.select(data, "rows[c!=16].ratio") == [0.529]
    assert claims.select(data, "rows[1].ratio") == [0.689]
    assert claims.select(data, "rows[extra]") == []
    assert claims.select(data, "rows[ratio].c") == [16, 16, 64, 16]
    with pytest.raises(LookupError, match="no field 'nope'"):
        claims.select(data, "rows[*].nope")
    with pytest.raises(ValueError, match="cannot read"):
        claims.select(data, "rows[a b]")
    assert claims._span("r.json", data, "rows[c=64].ratio*1000", ("529", "529"), 1.0) == []


def test_quoted_reads_the_first_range_else_the_last_number() -> None:
    assert claims.quoted("c=16 0.69-1.08, c=64 0.53-0.74") == ("0.69", "1.08")
    assert claims.quoted("3,826 \u2013 4,334 infer/s") == ("3,826", "4,334")
    assert claims.quoted("c=16 says 0.99") == ("0.99", "0.99")


def test_the_script_exits_1_on_a_mismatch(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    root = _repo(tmp_path, "x 0.5-0.6", ROWS)
    bad = claims.Claim("README.md", "x 0.5-0.6", "r.json", "summary[*].ratio")
    monkeypatch.setattr(claims, "CLAIMS", (bad,))
    monkeypatch.setattr(claims, "ROOT", root)
    monkeypatch.setattr(claims.check, "__defaults__", (root,))
    assert claims.main([]) == 1
