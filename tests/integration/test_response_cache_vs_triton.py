"""Side by side with NVIDIA Triton 2.51: the same cached models, the same client script.

Runs only where the tritonserver tool is installed. Both servers get ``--cache-config
local,size=1048576`` and the :func:`cache_client.scenario` requests, whose hits and misses are
the same under both keys; the answers (output names, datatypes, shapes, values) and the
statistics counts must be equal, and both must export the same ``nv_cache_*`` metric
families with the same labels. Where headrace's key differs on purpose (it also covers data
types, shapes, requested outputs and parameters) is tested in test_serve_response_cache.py.
"""

from __future__ import annotations

import re
import urllib.request
from pathlib import Path

import pytest
from cache_client import cache_repository, scenario
from serve_process import start_server
from triton_process import TRITON_MISSING, triton_server

pytestmark = pytest.mark.skipif(TRITON_MISSING, reason="the tritonserver tool is not installed")

CACHE = ["--cache-config", "local,size=1048576"]


def _cache_families(metrics_url: str) -> dict[str, tuple[str, set[str]]]:
    """Each ``nv_cache*`` family: its type and the label names of its samples."""
    with urllib.request.urlopen(metrics_url, timeout=10) as response:
        text = response.read().decode()
    families: dict[str, tuple[str, set[str]]] = {}
    for name, kind in re.findall(r"^# TYPE (nv_cache\w*) (\w+)$", text, re.MULTILINE):
        labels: set[str] = set()
        for found in re.findall(rf"^{name}(?:{{([^}}]*)}})? ", text, re.MULTILINE):
            labels |= {pair.split("=")[0] for pair in found.split(",") if pair}
        families[name] = (kind, labels)
    return families


def test_headrace_and_triton_cache_alike(tmp_path: Path) -> None:
    (tmp_path / "triton").mkdir()
    with triton_server(
        cache_repository(tmp_path / "triton" / "repo"), tmp_path / "triton", CACHE
    ) as triton:
        theirs = scenario(triton.http_url, triton.grpc_url)
        their_families = _cache_families(triton.metrics_url)
    (tmp_path / "headrace").mkdir()
    ours_server = start_server(
        cache_repository(tmp_path / "headrace" / "repo"), tmp_path / "headrace", CACHE
    )
    try:
        ours = scenario(ours_server.http_url, ours_server.grpc_url)
        our_families = _cache_families(ours_server.metrics_url)
    finally:
        assert ours_server.stop() == 0, ours_server.log_tail()
    assert ours.keys() == theirs.keys()
    for step in ours:
        assert ours[step] == theirs[step], step
    assert our_families == their_families
