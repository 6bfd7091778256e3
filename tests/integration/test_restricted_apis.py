"""``--http-restricted-api`` / ``--grpc-restricted-protocol`` / ``--metrics-restricted`` through
``headrace serve`` and unmodified ``tritonclient``: restricted groups refused without their key
and with a wrong one (Triton's 403 and UNAVAILABLE texts), allowed with it; other groups open."""

from __future__ import annotations

import http.client
import subprocess
import sys
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest
from restricted_client import answers, write_repository
from serve_process import ServeProcess, start_server

RESTRICTED = "model-repository,statistics:admin-key=s3cret"
FLAGS = [
    "--model-control-mode=explicit",
    "--load-model=add_sub",
    f"--http-restricted-api={RESTRICTED}",
    f"--grpc-restricted-protocol={RESTRICTED}",
    "--metrics-restricted=scrape-key=m3trics",
]
HTTP_REFUSED = "403: This API is restricted, expecting header 'admin-key'"
GRPC_REFUSED = (
    "StatusCode.UNAVAILABLE: This protocol is restricted, expecting header "
    "'triton-grpc-protocol-admin-key'"
)
RESTRICTED_CALLS = {"statistics", "repository_index", "load"}
GRPC_KEY = "triton-grpc-protocol-admin-key"


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory, http_server: str) -> Iterator[ServeProcess]:
    workdir = tmp_path_factory.mktemp(f"restricted-{http_server}")
    repo = write_repository(workdir / "repo")
    process = start_server(repo, workdir, [*FLAGS, f"--http-server={http_server}"])
    yield process
    assert process.stop() == 0, process.log_tail()


def _expected(refused: bool) -> dict[str, str]:
    out = {}
    for door, text in (("http", HTTP_REFUSED), ("grpc", GRPC_REFUSED)):
        for call in (
            "live", "model_ready", "server_metadata", "model_metadata", "model_config",
            "infer", "statistics", "repository_index", "load", "shm_status",
        ):  # fmt: skip
            out[f"{door}.{call}"] = text if refused and call in RESTRICTED_CALLS else "ok"
    return out


def test_restricted_groups_refused_without_the_key(server: ServeProcess) -> None:
    assert answers(server.http_url, server.grpc_url) == _expected(refused=True)


def test_restricted_groups_refused_with_a_wrong_key(server: ServeProcess) -> None:
    got = answers(
        server.http_url,
        server.grpc_url,
        {"admin-key": "s3cre"},
        {GRPC_KEY: "s3cret-and-more"},
    )
    assert got == _expected(refused=True)


def test_the_http_header_without_the_grpc_prefix_does_not_open_grpc(
    server: ServeProcess,
) -> None:
    got = answers(server.http_url, server.grpc_url, None, {"admin-key": "s3cret"})
    assert got == _expected(refused=True)


def test_restricted_groups_allowed_with_the_key(server: ServeProcess) -> None:
    got = answers(server.http_url, server.grpc_url, {"Admin-Key": "s3cret"}, {GRPC_KEY: "s3cret"})
    assert got == _expected(refused=False)


def test_a_wrong_method_on_a_restricted_path_is_refused_first(server: ServeProcess) -> None:
    """As Triton: the group is decided by the path, before the method is checked."""
    host, port = server.http_url.split(":")
    connection = http.client.HTTPConnection(host, int(port), timeout=10)
    try:
        connection.request("PUT", "/v2/models/stats")
        response = connection.getresponse()
        body = response.read()
    finally:
        connection.close()
    assert response.status == 403
    assert response.getheader("Content-Type", "").startswith("text/plain")
    assert body == b'{"error":"This API is restricted, expecting header \'admin-key\'"}'


def test_metrics_need_their_key(server: ServeProcess) -> None:
    with pytest.raises(urllib.error.HTTPError) as refused:
        urllib.request.urlopen(server.metrics_url, timeout=10)
    assert refused.value.code == 403
    assert b"expecting header 'scrape-key'" in refused.value.read()
    request = urllib.request.Request(server.metrics_url, headers={"scrape-key": "m3trics"})
    with urllib.request.urlopen(request, timeout=10) as response:
        assert b"nv_inference_request_success" in response.read()


@pytest.mark.parametrize(
    ("flag", "message"),
    [
        ("--http-restricted-api=bogus:k=v", "unknown restricted api 'bogus'"),
        ("--grpc-restricted-protocol=bogus:k=v", "unknown restricted protocol 'bogus'"),
        ("--http-restricted-api=health:k", "option format is '<config name>:<setting>=<value>'"),
        ("--metrics-restricted=novalue", "--metrics-restricted option format is '<key>=<value>'"),
        ("--grpc-use-ssl", "--grpc-use-ssl needs --grpc-server-cert and --grpc-server-key"),
    ],
)
def test_bad_flags_stop_the_start_with_their_name(tmp_path: Path, flag: str, message: str) -> None:
    result = subprocess.run(
        [sys.executable, "-m", "headrace.cli", "serve", str(tmp_path), flag],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 1
    assert message in result.stderr


def test_one_group_in_two_flags_is_refused(tmp_path: Path) -> None:
    flags = ["--http-restricted-api=health:a=1", "--http-restricted-api=health,metadata:b=2"]
    result = subprocess.run(
        [sys.executable, "-m", "headrace.cli", "serve", str(tmp_path), *flags],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 1
    assert "restricted api 'health' can not be specified in multiple config groups" in (
        result.stderr
    )
