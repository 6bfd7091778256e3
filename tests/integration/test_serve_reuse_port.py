"""``headrace serve --reuse-port``: two real server processes on the same HTTP and gRPC ports.

The kernel spreads connections among the processes; each serves with its own models and
statistics, so each one's metrics endpoint (on a port of its own) counts what it answered.
"""

from __future__ import annotations

import re
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
from serve_process import ServeProcess, examples_repository, start_server

pytestmark = pytest.mark.slow

REQUESTS = 40


@pytest.fixture(scope="module")
def two_servers(tmp_path_factory: pytest.TempPathFactory) -> Iterator[list[ServeProcess]]:
    repository = examples_repository(tmp_path_factory)
    workdir = tmp_path_factory.mktemp("reuse-port")
    (workdir / "first").mkdir()
    (workdir / "second").mkdir()
    args = ["--model-control-mode", "explicit", "--load-model", "simple", "--reuse-port"]
    first = start_server(repository, workdir / "first", args)
    try:
        ports = ["--http-port", str(first.ports["http"]), "--grpc-port", str(first.ports["grpc"])]
        second = start_server(repository, workdir / "second", [*args, *ports])
    except BaseException:
        first.stop()
        raise
    try:
        yield [first, second]
    finally:
        codes = [second.stop(), first.stop()]
        assert codes == [0, 0]


def _answered(server: ServeProcess) -> int:
    """Successful inferences of ``simple`` that this process counted."""
    with urllib.request.urlopen(server.metrics_url, timeout=10) as response:
        text = response.read().decode()
    found = re.search(r'nv_inference_request_success\{model="simple",version="1"\} (\d+)', text)
    return int(found.group(1)) if found else 0


@pytest.mark.parametrize("protocol", ["http", "grpc"])
def test_both_processes_answer_on_the_shared_ports(
    two_servers: list[ServeProcess], protocol: str
) -> None:
    first, second = two_servers
    assert first.ports[protocol] == second.ports[protocol]
    assert first.ports["metrics"] != second.ports["metrics"]
    before = [_answered(server) for server in two_servers]
    x = np.arange(16, dtype=np.int32).reshape(1, 16)
    for _ in range(REQUESTS):  # a new connection each time: the kernel picks a process
        if protocol == "http":
            import tritonclient.http as client_module
        else:
            import tritonclient.grpc as client_module  # type: ignore[no-redef]
        client = client_module.InferenceServerClient(
            first.http_url if protocol == "http" else first.grpc_url
        )
        inputs = [client_module.InferInput(name, [1, 16], "INT32") for name in ("INPUT0", "INPUT1")]
        for tensor in inputs:
            tensor.set_data_from_numpy(x)
        result = client.infer("simple", inputs)
        np.testing.assert_array_equal(result.as_numpy("OUTPUT0"), x + x)
        client.close()
    counted = [after - was for after, was in zip((_answered(s) for s in two_servers), before)]
    assert sum(counted) == REQUESTS
    assert all(count > 0 for count in counted), counted  # 2**-39 to fail by chance


def test_without_the_flag_a_taken_port_is_an_error(
    two_servers: list[ServeProcess], tmp_path: Path
) -> None:
    import subprocess
    import sys

    taken = two_servers[0].ports["http"]
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "headrace.cli",
            "serve",
            str(two_servers[0].repository),
            "--host",
            "127.0.0.1",
            "--http-port",
            str(taken),
            "--grpc-port",
            "0",
            "--no-metrics",
            "--model-control-mode",
            "explicit",
        ],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 1
    assert "headrace: error:" in result.stderr and "in use" in result.stderr.lower()
