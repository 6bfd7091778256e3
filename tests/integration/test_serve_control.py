"""Model control over the network: ``headrace serve --model-control-mode explicit``.

A second real server process starts with only ``simple`` loaded; unmodified tritonclient
(HTTP and gRPC) reads the repository index, loads and unloads ``mlp``, and checks that an
unloaded or unknown model is refused while the server keeps serving the others.
"""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from types import ModuleType
from typing import Any

import numpy as np
import pytest
import tritonclient.grpc as grpcclient
import tritonclient.http as httpclient
from google.protobuf import json_format
from serve_process import ServeProcess, examples_repository, onnx_reference, start_server
from tritonclient.utils import InferenceServerException

STATUS = {  # the status tritonclient reports for an error, by protocol
    "http": {"not_found": "404", "internal": "500", "unavailable": "503"},
    "grpc": {
        "not_found": "StatusCode.NOT_FOUND",
        "internal": "StatusCode.INTERNAL",
        "unavailable": "StatusCode.UNAVAILABLE",
    },
}


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory, http_server: str) -> Iterator[ServeProcess]:
    workdir = tmp_path_factory.mktemp("serve-control")
    repository = workdir / "repo"
    shutil.copytree(examples_repository(tmp_path_factory), repository)
    process = start_server(
        repository,
        workdir,
        [
            "--model-control-mode",
            "explicit",
            "--load-model",
            "simple",
            "--http-server",
            http_server,
        ],
    )
    yield process
    code = process.stop()
    assert code == 0, f"headrace serve exited with {code} after SIGTERM\n{process.log_tail()}"


@pytest.fixture(scope="module")
def clients(server: ServeProcess) -> Iterator[dict[str, Any]]:
    made = {
        "http": httpclient.InferenceServerClient(server.http_url),
        "grpc": grpcclient.InferenceServerClient(server.grpc_url),
    }
    yield made
    for client in made.values():
        client.close()


@pytest.fixture(params=["http", "grpc"])
def flavour(request: pytest.FixtureRequest, clients: dict[str, Any]) -> tuple[str, Any]:
    return request.param, clients[request.param]


def module_of(protocol: str) -> ModuleType:
    return httpclient if protocol == "http" else grpcclient


def index(client: Any) -> dict[str, dict[str, str]]:
    """The repository index by model name; gRPC's protobuf reply is read as HTTP's JSON."""
    reply = client.get_model_repository_index()
    if not isinstance(reply, list):
        reply = json_format.MessageToDict(reply, preserving_proto_field_name=True).get("models", [])
    return {entry["name"]: entry for entry in reply}


def mlp_request(protocol: str, seed: int) -> tuple[np.ndarray, list[Any]]:
    mod = module_of(protocol)
    x = np.random.default_rng(seed).standard_normal((2, 64)).astype(np.float32)
    tensor = mod.InferInput("INPUT0", list(x.shape), "FP32")
    tensor.set_data_from_numpy(x)
    return x, [tensor]


def assert_simple_serves(protocol: str, client: Any) -> None:
    """The server still answers correctly on the model that stayed loaded."""
    mod = module_of(protocol)
    a = np.arange(32, dtype=np.int32).reshape(2, 16)
    b = np.full((2, 16), 7, dtype=np.int32)
    inputs = [mod.InferInput(n, [2, 16], "INT32") for n in ("INPUT0", "INPUT1")]
    inputs[0].set_data_from_numpy(a)
    inputs[1].set_data_from_numpy(b)
    result = client.infer("simple", inputs)
    np.testing.assert_array_equal(result.as_numpy("OUTPUT0"), a + b)
    np.testing.assert_array_equal(result.as_numpy("OUTPUT1"), a - b)


def test_repository_index_lists_every_model(flavour: tuple[str, Any], server: ServeProcess) -> None:
    _, client = flavour
    entries = index(client)
    on_disk = {path.name for path in server.repository.iterdir() if path.is_dir()}
    assert set(entries) == on_disk
    assert entries["simple"].get("state") == "READY"
    assert entries["simple"].get("version") == "1"
    for name in on_disk - {"simple"}:
        assert entries[name].get("state", "") in ("", "UNAVAILABLE"), entries[name]
        assert not client.is_model_ready(name)


def test_load_infer_unload(flavour: tuple[str, Any], server: ServeProcess) -> None:
    protocol, client = flavour
    reference = onnx_reference(server.repository / "mlp" / "1" / "model.onnx")
    x, inputs = mlp_request(protocol, seed=1)
    assert not client.is_model_ready("mlp")

    client.load_model("mlp")
    try:
        assert client.is_model_ready("mlp")
        assert index(client)["mlp"].get("state") == "READY"
        got = client.infer("mlp", inputs).as_numpy("OUTPUT0")
        np.testing.assert_allclose(got, reference(x), rtol=1e-5, atol=1e-6)
    finally:
        client.unload_model("mlp")

    assert not client.is_model_ready("mlp")
    entry = index(client)["mlp"]
    assert entry.get("state") == "UNAVAILABLE"
    assert entry.get("reason") == "unloaded"
    with pytest.raises(InferenceServerException) as caught:
        client.infer("mlp", inputs)
    # Triton 2.51's answer for an unloaded model, word for word before headrace's detail.
    assert caught.value.status() == STATUS[protocol]["not_found"]
    assert caught.value.message().startswith(
        "Request for unknown model: 'mlp' has no available versions"
    )
    with pytest.raises(InferenceServerException) as caught:
        client.infer("mlp", inputs, model_version="1")
    assert caught.value.status() == STATUS[protocol]["unavailable"]
    assert caught.value.message().startswith(
        "Request for unknown model: 'mlp' version 1 is not at ready state"
    )
    assert_simple_serves(protocol, client)


def test_server_stays_ready_after_unload(flavour: tuple[str, Any]) -> None:
    _, client = flavour
    client.load_model("python_add")
    client.unload_model("python_add")
    assert not client.is_model_ready("python_add")
    assert client.is_server_ready()


def test_reload_of_a_loaded_model_keeps_serving(flavour: tuple[str, Any]) -> None:
    protocol, client = flavour
    client.load_model("simple")
    assert client.is_model_ready("simple")
    assert_simple_serves(protocol, client)


def test_load_of_unknown_model_is_refused(flavour: tuple[str, Any]) -> None:
    protocol, client = flavour
    with pytest.raises(InferenceServerException) as caught:
        client.load_model("no_such_model")
    assert caught.value.status() == STATUS[protocol]["internal"]  # Triton's status and words
    assert caught.value.message().startswith(
        "failed to load 'no_such_model', failed to poll from model repository"
    )
    assert not client.is_model_ready("no_such_model")
    assert_simple_serves(protocol, client)


def test_server_stays_ready_after_failed_load(flavour: tuple[str, Any]) -> None:
    protocol, client = flavour
    with pytest.raises(InferenceServerException):
        client.load_model(f"missing_{protocol}")
    assert client.is_server_ready()


def test_failed_load_of_unknown_model_leaves_index_unchanged(
    flavour: tuple[str, Any], server: ServeProcess
) -> None:
    _, client = flavour
    with pytest.raises(InferenceServerException):
        client.load_model("phantom_model")
    on_disk = {path.name for path in server.repository.iterdir() if path.is_dir()}
    assert set(index(client)) == on_disk
