"""Ensembles answer as NVIDIA Triton 2.51 does (benchmarks/ensemble_vs_triton.py).

Runs only where ``../shared/tools/tritonserver`` has been installed (it is not in CI): both
servers serve the same repository of python-backend models and ensembles, and every answer
(outputs, error statuses, the ensembles' statistics) must be the same.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from bench_scripts import load_script

SCRIPT = Path(__file__).resolve().parents[2] / "benchmarks" / "ensemble_vs_triton.py"
TRITON_READY = Path.home() / ".cache" / "headrace-tools" / "tritonserver" / "dist" / ".ready"
TOOL = Path(__file__).resolve().parents[3] / "shared" / "tools" / "tritonserver"


@pytest.mark.slow
@pytest.mark.skipif(
    not (TOOL.is_file() and TRITON_READY.exists()),
    reason="the tritonserver tool is not installed (../shared/tools/tritonserver next to the checkout)",
)
def test_ensembles_answer_as_triton_does(tmp_path: Path) -> None:
    module = load_script(SCRIPT, "ensemble_vs_triton")
    result = module.compare(tmp_path)
    assert result["differ"] == [], {
        key: (result["headrace"].get(key), result["triton"].get(key)) for key in result["differ"]
    }
    assert result["headrace"]["http diamond: fan-out, fan-in"]["SUM"][0] == [5.0, 10.0, 15.0, 20.0]
