"""NVIDIA's example client programs exit 0 against ``headrace serve`` (issue 17).

The programs are NVIDIA's (``src/python/examples/`` of triton-inference-server/client) and not
ours to copy, so this runs only where ``HEADRACE_TRITON_EXAMPLES`` names a directory holding
them; ``benchmarks/example_clients.py`` writes the repositories they expect and runs them.
The defects they exposed each have a test of their own beside the behaviour (the server
metadata's name, a load override without backend, a python model without tensors, Triton's
words for raw and typed contents together, the texts of docs/errors.md).
"""

from __future__ import annotations

import importlib.util
import os
import sys
from pathlib import Path

import pytest

EXAMPLES = os.environ.get("HEADRACE_TRITON_EXAMPLES", "")
SCRIPT = Path(__file__).resolve().parents[2] / "benchmarks" / "example_clients.py"


@pytest.mark.skipif(
    not EXAMPLES or not Path(EXAMPLES).is_dir(),
    reason="HEADRACE_TRITON_EXAMPLES does not name a directory of NVIDIA's example programs",
)
@pytest.mark.parametrize("flavour", ["onnx", "python"])
def test_every_example_program_exits_0(flavour: str, tmp_path: Path) -> None:
    spec = importlib.util.spec_from_file_location("example_clients", SCRIPT)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    records, _ = module.run_all(Path(EXAMPLES), ["headrace"], [flavour], [], tmp_path)
    assert records
    failed = [
        (r["program"], r["exit_code"], r["output_tail"][-400:]) for r in records if not r["passed"]
    ]
    assert failed == []
