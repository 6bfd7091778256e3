"""benchmarks/http_stack.py: every stack serves the same correct endpoint; the summary's maths."""

from __future__ import annotations

import json
from pathlib import Path
from types import ModuleType

import numpy as np
import pytest
from bench_scripts import load_script

SCRIPT = Path(__file__).resolve().parents[2] / "benchmarks" / "http_stack.py"
NEEDS = {
    "aiohttp": ("aiohttp", "uvloop", "orjson"),
    "starlette": ("uvicorn", "starlette", "httptools", "uvloop", "orjson"),
    "asgi": ("uvicorn", "httptools", "uvloop", "orjson"),
    "headrace": ("aiohttp", "uvloop", "orjson"),
}


@pytest.fixture(scope="module")
def bench() -> ModuleType:
    module = load_script(SCRIPT, "http_stack_bench")
    return module


def _binary_request(x: np.ndarray, header: dict | None = None) -> tuple[bytes, int]:
    head = json.dumps(
        header
        or {
            "id": "7",
            "inputs": [
                {
                    "name": "x",
                    "datatype": "FP32",
                    "shape": list(x.shape),
                    "parameters": {"binary_data_size": x.nbytes},
                }
            ],
        }
    ).encode()
    return head + x.tobytes(), len(head)


def test_infer_bytes_sums_rows_and_names_bad_input(bench: ModuleType) -> None:
    pytest.importorskip("orjson")
    x = np.arange(2 * 64, dtype=np.float32).reshape(2, 64)
    body, length = _binary_request(x)
    out, head_length = bench.infer_bytes(body, length)
    header = json.loads(out[:head_length])
    assert header["id"] == "7" and header["outputs"][0]["shape"] == [2, 1]
    y = np.frombuffer(out, dtype=np.float32, offset=head_length)
    np.testing.assert_allclose(y, x.sum(axis=1))
    with pytest.raises(ValueError, match="missing Inference-Header-Content-Length"):
        bench.infer_bytes(body, None)
    with pytest.raises(ValueError, match="expects \\[-1, 64\\]"):
        bench.infer_bytes(*_binary_request(np.zeros((1, 3), np.float32)))


def test_summary_takes_medians_and_ratios_to_aiohttp(bench: ModuleType) -> None:
    runs = [
        {"stack": s, "concurrency": 4, "stable": True, "throughput": t, "p50_us": p, "p99_us": p}
        for s, t, p in [
            ("aiohttp", 100.0, 10.0),
            ("aiohttp", 300.0, 30.0),
            ("aiohttp", 200.0, 20.0),
            ("asgi", 400.0, 5.0),
        ]
    ]
    rows = {r["stack"]: r for r in bench.summarize(runs, ["aiohttp", "asgi"])}
    assert rows["aiohttp"]["throughput"] == 200.0 and rows["aiohttp"]["rounds"] == 3
    assert (rows["aiohttp"]["throughput_min"], rows["aiohttp"]["throughput_max"]) == (100, 300)
    assert rows["asgi"]["throughput_vs_aiohttp"] == 2.0
    assert rows["asgi"]["p50_vs_aiohttp"] == 0.25


@pytest.mark.timeout(120)
@pytest.mark.parametrize("stack", ["aiohttp", "starlette", "asgi", "headrace"])
def test_each_stack_serves_the_same_endpoint(bench: ModuleType, stack: str, tmp_path: Path) -> None:
    for module in NEEDS[stack]:
        pytest.importorskip(module)
    http = pytest.importorskip("tritonclient.http")
    with bench.running(stack, None, tmp_path / "server.log") as port:
        client = http.InferenceServerClient(f"127.0.0.1:{port}")
        assert client.is_server_ready()
        assert client.get_model_metadata("m")["inputs"][0]["shape"] == [-1, 64]
        assert client.get_model_config("m")["max_batch_size"] == 8
        x = np.random.default_rng(0).random((1, 64), dtype=np.float32)
        tensor = http.InferInput("x", [1, 64], "FP32")
        tensor.set_data_from_numpy(x, binary_data=True)
        result = client.infer("m", [tensor], outputs=[http.InferRequestedOutput("y")])
        np.testing.assert_allclose(result.as_numpy("y"), x.sum(axis=1, keepdims=True), rtol=1e-6)
        client.close()


@pytest.mark.timeout(120)
def test_main_writes_results_with_perf_analyzer(bench: ModuleType, tmp_path: Path) -> None:
    for module in NEEDS["asgi"] + NEEDS["aiohttp"]:
        pytest.importorskip(module)
    from headrace.bench.perf_analyzer import locate
    from headrace.errors import Unavailable

    try:
        tool = locate()
    except Unavailable:
        pytest.skip("perf_analyzer is not installed")
    out = tmp_path / "result.json"
    argv = ["--stacks", "aiohttp,asgi", "--rounds", "1", "--concurrency", "2"]
    argv += ["--window-ms", "300", "--max-trials", "3", "--budget-s", "90"]
    assert bench.main([*argv, "--perf-analyzer", tool, "--no-pin", "--out", str(out)]) == 0
    result = json.loads(out.read_text())
    assert {r["stack"] for r in result["runs"]} == {"aiohttp", "asgi"}
    assert all(r["throughput"] > 0 and r["p99_us"] >= r["p50_us"] > 0 for r in result["runs"])
    assert result["machine"]["cpu_count"] and result["versions"]["aiohttp"]
