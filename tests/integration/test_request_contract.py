"""What a python-backend model learns about each request, and decoupled responses, end to end.

A real ``headrace serve`` process serves two Triton python-backend models from
tests/data/python_models, driven by unmodified tritonclient:

- ``request_meta`` answers with ``request_id()``, ``correlation_id()``, ``flags()`` and
  ``parameters()`` of its request, over HTTP, gRPC and ``ModelStreamInfer``;
- ``repeat_decoupled`` (``decoupled: true``) sends three responses and then the final flag.

The expected answers are what NVIDIA Triton 2.51 gave for the same models and requests
(``../shared/tools/tritonserver``): every decoupled response carries
``triton_final_response: false``, the bare final flag arrives as an empty response with
``triton_final_response: true`` only when the client asked for it, plain stream responses
carry ``triton_final_response: true``, and unary inference on a decoupled model is refused
(gRPC UNIMPLEMENTED, HTTP 501) with Triton's words.
"""

from __future__ import annotations

import json
import queue
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import tritonclient.grpc as grpcclient
import tritonclient.http as httpclient
from serve_process import ServeProcess, start_server
from tritonclient.utils import InferenceServerException

MODELS = Path(__file__).resolve().parent.parent / "data" / "python_models"
PARAMETERS = {"temperature": 0.5, "flag": True, "name": "abc", "count": 3}
WAIT_S = 10.0


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServeProcess]:
    workdir = tmp_path_factory.mktemp("contract")
    repository = workdir / "repo"
    for name in ("request_meta", "repeat_decoupled"):
        shutil.copytree(MODELS / name, repository / name)
    process = start_server(repository, workdir)
    yield process
    assert process.stop() == 0, process.log_tail()


def x_input(module: Any) -> list[Any]:
    x = module.InferInput("X", [1], "INT64")
    x.set_data_from_numpy(np.array([7], np.int64))
    return [x]


def repeat_input(n: int) -> list[Any]:
    x = grpcclient.InferInput("IN", [1], "INT32")
    x.set_data_from_numpy(np.array([n], np.int32))
    return [x]


def meta(result: Any) -> dict[str, Any]:
    return json.loads(result.as_numpy("META")[0])  # type: ignore[no-any-return]


def stream(
    server: ServeProcess, model: str, inputs: list[Any], count: int, **options: Any
) -> list[dict[str, Any]]:
    """Send one request on a stream and collect ``count`` responses (bounded wait each)."""
    received: queue.Queue[dict[str, Any]] = queue.Queue()

    def callback(result: Any, error: Any) -> None:
        if error is not None:
            received.put({"error": str(error)})
            return
        response = result.get_response()
        entry = {
            "id": response.id,
            "final": response.parameters["triton_final_response"].bool_param
            if "triton_final_response" in response.parameters
            else None,
            "outputs": [output.name for output in response.outputs],
        }
        if "OUT" in entry["outputs"]:
            entry["OUT"] = result.as_numpy("OUT").tolist()
        if "META" in entry["outputs"]:
            entry["META"] = meta(result)
        received.put(entry)

    client = grpcclient.InferenceServerClient(server.grpc_url)
    client.start_stream(callback=callback)
    try:
        client.async_stream_infer(model, inputs, **options)
        got = [received.get(timeout=WAIT_S) for _ in range(count)]
        with pytest.raises(queue.Empty):  # nothing more than Triton sends
            received.get(timeout=0.3)
    finally:
        client.stop_stream()
        client.close()
    return got


def test_request_metadata_over_http(server: ServeProcess) -> None:
    client = httpclient.InferenceServerClient(server.http_url)
    result = client.infer(
        "request_meta",
        x_input(httpclient),
        request_id="h-1",
        sequence_id=42,
        sequence_start=True,
        parameters=PARAMETERS,
    )
    assert meta(result) == {
        "request_id": "h-1",
        "correlation_id": 42,
        "flags": 1,
        "start": True,
        "end": False,
        "parameters": PARAMETERS,
    }


def test_request_metadata_over_grpc_with_a_string_correlation_id(server: ServeProcess) -> None:
    client = grpcclient.InferenceServerClient(server.grpc_url)
    result = client.infer(
        "request_meta",
        x_input(grpcclient),
        request_id="g-1",
        sequence_id="corr-str",
        sequence_end=True,
        parameters=PARAMETERS,
    )
    assert meta(result) == {
        "request_id": "g-1",
        "correlation_id": "corr-str",
        "flags": 2,
        "start": False,
        "end": True,
        "parameters": PARAMETERS,
    }


def test_request_metadata_over_model_stream_infer(server: ServeProcess) -> None:
    (response,) = stream(
        server,
        "request_meta",
        x_input(grpcclient),
        1,
        request_id="s-1",
        sequence_id=9,
        sequence_start=True,
        sequence_end=True,
        parameters=PARAMETERS,
    )
    assert response == {
        "id": "s-1",
        "final": True,
        "outputs": ["META"],
        "META": {
            "request_id": "s-1",
            "correlation_id": 9,
            "flags": 3,
            "start": True,
            "end": True,
            "parameters": PARAMETERS,
        },
    }


@pytest.mark.parametrize("in_thread", [False, True])
def test_decoupled_model_streams_three_responses_then_final(
    server: ServeProcess, in_thread: bool
) -> None:
    options = {"parameters": {"in_thread": True}} if in_thread else {}
    responses = stream(
        server,
        "repeat_decoupled",
        repeat_input(5),
        4,
        request_id="r2",
        enable_empty_final_response=True,
        **options,
    )
    assert responses == [
        {"id": "r2", "final": False, "outputs": ["OUT"], "OUT": [5]},
        {"id": "r2", "final": False, "outputs": ["OUT"], "OUT": [6]},
        {"id": "r2", "final": False, "outputs": ["OUT"], "OUT": [7]},
        {"id": "r2", "final": True, "outputs": []},
    ]


def test_decoupled_final_flag_alone_is_not_sent_unless_asked_for(server: ServeProcess) -> None:
    responses = stream(server, "repeat_decoupled", repeat_input(5), 3, request_id="r1")
    assert [(r["OUT"], r["final"]) for r in responses] == [([5], False), ([6], False), ([7], False)]


def test_decoupled_error_response_reaches_the_stream(server: ServeProcess) -> None:
    (response,) = stream(server, "repeat_decoupled", repeat_input(-1), 1, request_id="r3")
    assert response == {"error": "negative input -1"}


def test_unary_inference_on_a_decoupled_model_is_refused_as_triton_does(
    server: ServeProcess,
) -> None:
    with pytest.raises(InferenceServerException) as grpc_error:
        grpcclient.InferenceServerClient(server.grpc_url).infer("repeat_decoupled", repeat_input(1))
    assert grpc_error.value.status() == "StatusCode.UNIMPLEMENTED"
    assert grpc_error.value.message() == (
        "ModelInfer RPC doesn't support models with decoupled transaction policy"
    )
    x = httpclient.InferInput("IN", [1], "INT32")
    x.set_data_from_numpy(np.array([1], np.int32))
    with pytest.raises(InferenceServerException) as http_error:
        httpclient.InferenceServerClient(server.http_url).infer("repeat_decoupled", [x])
    assert http_error.value.status() == "501"
    assert http_error.value.message() == (
        "HTTP end point doesn't support models with decoupled transaction policy"
    )
