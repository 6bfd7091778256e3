"""TLS through unmodified ``tritonclient``: gRPC (``--grpc-use-ssl``, mutual TLS) and HTTPS on
both HTTP servers, with certificates the test makes; plain clients cannot talk to them."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
import tritonclient.grpc as grpcclient
import tritonclient.http as httpclient
from door_thread import serving
from server_fakes import scale_config, scale_factory
from tls_certs import Certificates, make_certificates
from tritonclient.utils import InferenceServerException

from headrace.errors import InvalidConfig
from headrace.server.app import FrontendOptions
from headrace.server.core import InferenceServer
from headrace.server.security import SecurityOptions
from headrace.server.tls import GrpcTls, HttpTls


@pytest.fixture(scope="module")
def certs(tmp_path_factory: pytest.TempPathFactory) -> Certificates:
    return make_certificates(tmp_path_factory.mktemp("certs"))


async def _scale(core: InferenceServer) -> None:
    await core.register_model("scale", scale_factory(), scale_config())


def _infer(client: object, module: object) -> np.ndarray:
    x = np.arange(4, dtype=np.float32).reshape(1, 4)
    tensor = module.InferInput("x", [1, 4], "FP32")  # type: ignore[attr-defined]
    tensor.set_data_from_numpy(x)
    return client.infer("scale", [tensor]).as_numpy("y")  # type: ignore[attr-defined]


def _grpc_options(tls: GrpcTls) -> FrontendOptions:
    return FrontendOptions(
        http_port=None, grpc_port=0, metrics_port=None, security=SecurityOptions(grpc_tls=tls)
    )


@pytest.fixture(scope="module")
def grpc_tls(certs: Certificates) -> Iterator[str]:
    tls = GrpcTls(
        use_ssl=True, server_cert=str(certs.server_cert), server_key=str(certs.server_key)
    )
    with serving(_grpc_options(tls), _scale) as app:
        yield f"127.0.0.1:{app.ports['grpc']}"


def test_grpc_over_tls_serves_a_client_that_trusts_the_ca(
    grpc_tls: str, certs: Certificates
) -> None:
    client = grpcclient.InferenceServerClient(grpc_tls, ssl=True, root_certificates=str(certs.ca))
    try:
        assert client.is_server_live()
        np.testing.assert_allclose(_infer(client, grpcclient), [[0, 2, 4, 6]])
    finally:
        client.close()


def test_grpc_over_tls_refuses_plain_and_untrusting_clients(grpc_tls: str) -> None:
    for client in (
        grpcclient.InferenceServerClient(grpc_tls),
        grpcclient.InferenceServerClient(grpc_tls, ssl=True),  # the system's CAs only
    ):
        try:
            with pytest.raises(InferenceServerException, match="UNAVAILABLE"):
                client.is_server_live(client_timeout=10)
        finally:
            client.close()


def test_grpc_mutual_tls_needs_a_client_certificate(certs: Certificates) -> None:
    tls = GrpcTls(
        mutual=True,
        server_cert=str(certs.server_cert),
        server_key=str(certs.server_key),
        root_cert=str(certs.ca),
    )
    with serving(_grpc_options(tls), _scale) as app:
        url = f"127.0.0.1:{app.ports['grpc']}"
        with_cert = grpcclient.InferenceServerClient(
            url,
            ssl=True,
            root_certificates=str(certs.ca),
            private_key=str(certs.client_key),
            certificate_chain=str(certs.client_cert),
        )
        without = grpcclient.InferenceServerClient(url, ssl=True, root_certificates=str(certs.ca))
        try:
            np.testing.assert_allclose(_infer(with_cert, grpcclient), [[0, 2, 4, 6]])
            with pytest.raises(InferenceServerException, match="UNAVAILABLE"):
                without.is_server_live(client_timeout=10)
        finally:
            with_cert.close()
            without.close()


def test_https_serves_tritonclient_with_the_ca(certs: Certificates, http_server: str) -> None:
    tls = HttpTls(cert=str(certs.server_cert), key=str(certs.server_key))
    options = FrontendOptions(
        http_port=0,
        grpc_port=None,
        metrics_port=None,
        http_server=http_server,
        security=SecurityOptions(http_tls=tls),
    )
    with serving(options, _scale) as app:
        url = f"127.0.0.1:{app.ports['http']}"
        client = httpclient.InferenceServerClient(
            url, ssl=True, ssl_options={"ca_certs": str(certs.ca)}, network_timeout=10
        )
        try:
            assert client.is_server_live()
            np.testing.assert_allclose(_infer(client, httpclient), [[0, 2, 4, 6]])
        finally:
            client.close()
        plain = httpclient.InferenceServerClient(url, network_timeout=10)
        try:
            with pytest.raises(Exception):  # noqa: B017 - a reset or a bad status line
                plain.is_server_live()
        finally:
            plain.close()


def test_missing_or_half_tls_settings_are_refused_with_their_flags(tmp_path: Path) -> None:
    with pytest.raises(InvalidConfig, match="--http-ssl-cert and --http-ssl-key go together"):
        HttpTls(cert="a.pem")
    with pytest.raises(InvalidConfig, match="--grpc-use-ssl-mutual needs --grpc-root-cert"):
        GrpcTls(mutual=True, server_cert="a", server_key="b")
    missing = str(tmp_path / "missing.pem")
    with pytest.raises(InvalidConfig, match=r"--http-ssl-cert .*missing\.pem: cannot read it"):
        HttpTls(cert=missing, key=missing).check()
    with pytest.raises(InvalidConfig, match=r"--grpc-server-key .*missing\.pem: cannot read it"):
        GrpcTls(use_ssl=True, server_cert=missing, server_key=missing).credentials()


def test_headrace_serve_takes_tritons_tls_flags(tmp_path: Path, certs: Certificates) -> None:
    """The flags as a Triton command line writes them reach both doors of a real process."""
    import json
    import os
    import signal
    import subprocess
    import sys

    ports_file = tmp_path / "ports.json"
    command = [
        sys.executable, "-m", "headrace.cli", "serve", str(tmp_path / "repo"),
        "--http-port=0", "--grpc-port=0", "--no-metrics", f"--ports-file={ports_file}",
        "--grpc-use-ssl=true", f"--grpc-server-cert={certs.server_cert}",
        f"--grpc-server-key={certs.server_key}",
        f"--http-ssl-cert={certs.server_cert}", f"--http-ssl-key={certs.server_key}",
    ]  # fmt: skip
    (tmp_path / "repo").mkdir()
    env = {**os.environ, "COLUMNS": "200"}
    process = subprocess.Popen(command, stderr=subprocess.PIPE, text=True, env=env)
    try:
        assert process.stderr is not None
        for line in process.stderr:  # blocks until the server reports it is serving
            if "headrace: serving on" in line:
                break
        ports = json.loads(ports_file.read_text())
        grpc = grpcclient.InferenceServerClient(
            f"127.0.0.1:{ports['grpc']}", ssl=True, root_certificates=str(certs.ca)
        )
        http = httpclient.InferenceServerClient(
            f"127.0.0.1:{ports['http']}", ssl=True, ssl_options={"ca_certs": str(certs.ca)}
        )
        try:
            assert grpc.is_server_ready()
            assert http.is_server_ready()
        finally:
            grpc.close()
            http.close()
        process.send_signal(signal.SIGTERM)
        assert process.wait(timeout=60) == 0
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
