"""perf_analyzer against a served ensemble: every load level completes without an error.

Runs where ``../shared/tools/perf-analyzer`` is installed (not in CI). The repository is
benchmarks/ensemble_vs_triton.py's: python-backend models and a chain, a diamond and an
ensemble of ensembles.
"""

from __future__ import annotations

import importlib.util
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from serve_process import ServeProcess, start_server

from headrace.bench.perf_analyzer import PerfLoad, locate, run_perf_analyzer
from headrace.errors import Unavailable

ROOT = Path(__file__).resolve().parents[2]
TOOL = (
    Path.home() / ".cache" / "headrace-tools" / "perf-analyzer" / "venv" / "bin" / "perf_analyzer"
)


def _write_repository(path: Path) -> None:
    spec = importlib.util.spec_from_file_location(
        "ensemble_vs_triton", ROOT / "benchmarks" / "ensemble_vs_triton.py"
    )
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    module.write_repository(path)


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServeProcess]:
    if not TOOL.exists():
        pytest.skip("perf_analyzer is not installed")
    try:
        locate()
    except Unavailable:
        pytest.skip("perf_analyzer is not installed")
    workdir = tmp_path_factory.mktemp("ensemble-pa")
    _write_repository(workdir / "repo")
    process = start_server(workdir / "repo", workdir)
    yield process
    assert process.stop() == 0, process.log_tail()


@pytest.mark.slow
@pytest.mark.parametrize("model", ["diamond", "outer"])  # chain fails negative inputs on purpose
@pytest.mark.parametrize("protocol", ["grpc", "http"])
def test_perf_analyzer_loads_an_ensemble_without_errors(
    server: ServeProcess, model: str, protocol: str
) -> None:
    url = server.grpc_url if protocol == "grpc" else server.http_url
    load = PerfLoad(
        model,
        url,
        protocol=protocol,
        concurrency=8,
        shapes={"IN": [4]},
        measurement_ms=500,
        max_trials=4,
        stability_percent=1e6,  # this checks errors, not timing
    )
    row = run_perf_analyzer(load)  # raises on any failed request
    assert row.throughput > 0
