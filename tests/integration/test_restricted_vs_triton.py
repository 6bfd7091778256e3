"""Side by side with NVIDIA Triton 2.51: the same restricted-API flags give the same answers.

Runs only where the tritonserver tool is installed. Both servers get the same
``--http-restricted-api`` / ``--grpc-restricted-protocol`` flags (two keys, several groups);
every call of :func:`restricted_client.answers` (HTTP and gRPC, unmodified tritonclient) must
answer the same, word for word, without a key, with a wrong one and with the right ones.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from restricted_client import answers, write_repository
from serve_process import start_server
from triton_process import TRITON_MISSING, triton_server

pytestmark = pytest.mark.skipif(TRITON_MISSING, reason="the tritonserver tool is not installed")

FLAGS = [
    "--model-control-mode=explicit",
    "--load-model=add_sub",
    "--http-restricted-api=model-repository,statistics:admin-key=s3cret",
    "--http-restricted-api=model-config,shared-memory:ops-key=0ps",
    "--grpc-restricted-protocol=model-repository:admin-key=s3cret",
    "--grpc-restricted-protocol=statistics,model-config,shared-memory:ops-key=0ps",
]
HEADERS = {
    "none": (None, None),
    "wrong": ({"admin-key": "x", "ops-key": "y"}, {"triton-grpc-protocol-admin-key": "x"}),
    "admin only": ({"admin-key": "s3cret"}, {"triton-grpc-protocol-admin-key": "s3cret"}),
    "both": (
        {"admin-key": "s3cret", "ops-key": "0ps"},
        {"triton-grpc-protocol-admin-key": "s3cret", "triton-grpc-protocol-ops-key": "0ps"},
    ),
}


def _scenario(http_url: str, grpc_url: str) -> dict[str, dict[str, str]]:
    return {label: answers(http_url, grpc_url, h, g) for label, (h, g) in HEADERS.items()}


def test_headrace_and_triton_restrict_alike(tmp_path: Path) -> None:
    (tmp_path / "triton").mkdir()
    repo = write_repository(tmp_path / "triton" / "repo")
    with triton_server(repo, tmp_path / "triton", FLAGS) as triton:
        theirs = _scenario(triton.http_url, triton.grpc_url)
    (tmp_path / "headrace").mkdir()
    ours_server = start_server(
        write_repository(tmp_path / "headrace" / "repo"), tmp_path / "headrace", FLAGS
    )
    try:
        ours = _scenario(ours_server.http_url, ours_server.grpc_url)
    finally:
        assert ours_server.stop() == 0, ours_server.log_tail()
    assert "403" in theirs["none"]["http.statistics"]  # the scenario does reach restrictions
    for label in HEADERS:
        assert ours[label] == theirs[label], label
