"""``headrace serve --cache-config local,size=N`` with unmodified tritonclient: hits, misses,
requested outputs, eviction, metrics, and a malformed flag."""

from __future__ import annotations

import subprocess
import sys
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
from cache_client import ADD_SUB, BYTES, cache_repository, infer, scenario, statistics
from serve_process import ServeProcess, start_server


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServeProcess]:
    workdir = tmp_path_factory.mktemp("cache-serve")
    repository = cache_repository(workdir / "repo")
    process = start_server(repository, workdir, ["--cache-config", "local,size=1048576"])
    yield process
    assert process.stop() == 0, process.log_tail()


def _metrics(server: ServeProcess) -> str:
    with urllib.request.urlopen(server.metrics_url, timeout=10) as response:
        return response.read().decode()


def test_hits_answer_exactly_what_the_miss_did_over_every_door(server: ServeProcess) -> None:
    steps = scenario(server.http_url, server.grpc_url)
    miss = steps["miss"]
    assert list(miss) == ["OUTPUT0", "OUTPUT1"]
    assert miss["OUTPUT0"] == {"datatype": "FP32", "shape": [1, 4], "values": [2, 3, 4, 5]}
    for step in ("hit", "hit, grpc", "hit, json"):
        assert steps[step] == miss, step
    assert steps["other input hits"] == steps["other input misses"]
    assert steps["bytes hit"] == steps["bytes miss"]
    assert steps["bytes hit"]["OUT"]["values"] == ["one", "two"]
    stats = steps["statistics"]
    assert stats[ADD_SUB] == {
        "inference_count": 4,  # the misses' batch items: 1 + 1 + 2
        "execution_count": 3,
        "success.count": 7,
        "fail.count": 0,
        "queue.count": 7,
        "cache_hit.count": 4,
        "cache_miss.count": 3,
    }
    assert (stats[BYTES]["execution_count"], stats[BYTES]["cache_hit.count"]) == (1, 1)
    text = _metrics(server)
    assert f'nv_cache_num_hits_per_model{{model="{ADD_SUB}",version="1"}} 4' in text
    assert f'nv_cache_num_misses_per_model{{model="{ADD_SUB}",version="1"}} 3' in text
    assert f'nv_inference_exec_count{{model="{ADD_SUB}",version="1"}} 3' in text
    assert "nv_cache_num_entries " in text and "nv_cache_util " in text


def test_requested_outputs_and_binary_data_are_respected_on_a_hit(server: ServeProcess) -> None:
    a = np.array([[5, 6, 7, 8]], np.float32)
    b = np.full((1, 4), 3, np.float32)
    before = statistics(server.http_url)[ADD_SUB]
    only_json = infer(server.http_url, server.grpc_url, a, b, door="http-json", outputs=["OUTPUT1"])
    again_json = infer(
        server.http_url, server.grpc_url, a, b, door="http-json", outputs=["OUTPUT1"]
    )
    again_binary = infer(server.http_url, server.grpc_url, a, b, outputs=["OUTPUT1"])
    again_grpc = infer(server.http_url, server.grpc_url, a, b, door="grpc", outputs=["OUTPUT1"])
    everything = infer(server.http_url, server.grpc_url, a, b)
    assert list(only_json) == ["OUTPUT1"]
    assert only_json["OUTPUT1"]["values"] == [2, 3, 4, 5]
    assert again_json == again_binary == again_grpc == only_json
    assert list(everything) == ["OUTPUT0", "OUTPUT1"]  # other outputs asked for: a miss
    after = statistics(server.http_url)[ADD_SUB]
    assert after["cache_hit.count"] - before["cache_hit.count"] == 3
    assert after["cache_miss.count"] - before["cache_miss.count"] == 2
    assert after["execution_count"] - before["execution_count"] == 2


def test_the_least_recently_used_response_is_evicted(tmp_path: Path) -> None:
    # one [1, 4] response of two FP32 outputs counts 128 + 2 * (64 + 7 + 16) = 302 bytes
    repository = cache_repository(tmp_path / "repo")
    small = start_server(repository, tmp_path, ["--cache-config=local,size=400"])
    try:
        a = np.zeros((1, 4), np.float32)
        for value in (1, 2, 1, 1):
            infer(small.http_url, small.grpc_url, a, np.full((1, 4), value, np.float32))
        stats = statistics(small.http_url)[ADD_SUB]
        assert (stats["cache_miss.count"], stats["cache_hit.count"]) == (3, 1)
        text = _metrics(small)
        assert "nv_cache_num_evictions 2" in text
        assert "nv_cache_num_entries 1" in text
    finally:
        assert small.stop() == 0, small.log_tail()


@pytest.mark.parametrize(
    ("value", "message"),
    [
        ("local,size=abc", "size must be a whole number of bytes, got 'abc'"),
        ("local", "expected <cache>,<key>=<value>"),
        ("redis,host=x", "unknown cache 'redis'"),
    ],
)
def test_a_malformed_cache_config_exits_with_one_line(
    tmp_path: Path, value: str, message: str
) -> None:
    command = [sys.executable, "-m", "headrace.cli", "serve", str(tmp_path), "--no-http"]
    result = subprocess.run(
        [*command, "--no-grpc", "--no-metrics", "--cache-config", value],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 1
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith(f"headrace: error: --cache-config {value!r}: ")
    assert message in lines[0]
