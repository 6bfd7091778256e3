"""``reshape`` in a model configuration and ONNX string tensors, end to end.

A real ``headrace serve`` process serves, to unmodified tritonclient over HTTP and gRPC:

- ``strings``: an ONNX graph on ``tensor(string)`` (Identity and StringConcat); BYTES go in and
  come back as the same bytes, as Triton's onnxruntime backend returns them;
- ``rank4``: an ONNX graph that takes and returns rank 4 ([batch, 1, 2, 3]) served with
  ``dims: [2, 3]`` in and ``dims: [6]`` out, each with a ``reshape``;
- ``reshape_seen`` (tests/data/python_models): a python-backend model that reports the shapes
  it is handed, in the server's threads and in a worker process. NVIDIA Triton 2.51 gave
  ``model.py`` X as [2, 2, 3] and S (``dims: [1]``, ``reshape { shape: [] }``) as [2] for a
  batch of 2, and returned Y (reshape [3, 2]) to the client as [2, 6]; the side-by-side test
  below checks that again where ``../shared/tools/tritonserver`` is installed.
"""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import tritonclient.grpc as grpcclient
import tritonclient.http as httpclient
from serve_process import ServeProcess, start_server
from triton_process import TRITON_MISSING, triton_server
from tritonclient.utils import InferenceServerException

from fixtures_models import write_rank4_scale_onnx, write_string_concat_onnx

MODELS = Path(__file__).resolve().parent.parent / "data" / "python_models"

STRINGS = """
name: "strings"
backend: "onnxruntime"
max_batch_size: 8
input [ { name: "IN" data_type: TYPE_STRING dims: [ 1 ] } ]
output [
  { name: "SAME" data_type: TYPE_STRING dims: [ 1 ] },
  { name: "TWICE" data_type: TYPE_STRING dims: [ 1 ] }
]
"""

RANK4 = """
name: "rank4"
backend: "onnxruntime"
max_batch_size: 4
input [ { name: "X" data_type: TYPE_FP32 dims: [ 2, 3 ] reshape { shape: [ 1, 2, 3 ] } } ]
output [ { name: "Y" data_type: TYPE_FP32 dims: [ 6 ] reshape { shape: [ 1, 2, 3 ] } } ]
"""

CLIENTS = pytest.mark.parametrize("client_module", [httpclient, grpcclient], ids=["http", "grpc"])


def _repository(root: Path) -> Path:
    repository = root / "repo"
    for name, config, write in (
        ("strings", STRINGS, write_string_concat_onnx),
        ("rank4", RANK4, write_rank4_scale_onnx),
    ):
        (repository / name / "1").mkdir(parents=True)
        (repository / name / "config.pbtxt").write_text(config, encoding="utf-8")
        write(repository / name / "1" / "model.onnx")
    shutil.copytree(MODELS / "reshape_seen", repository / "reshape_seen")
    process = repository / "reshape_seen_process"
    shutil.copytree(MODELS / "reshape_seen", process)
    config = (process / "config.pbtxt").read_text(encoding="utf-8")
    config = config.replace('name: "reshape_seen"', 'name: "reshape_seen_process"')
    config += 'parameters { key: "HEADRACE_PYTHON_RUNTIME" value { string_value: "process" } }\n'
    (process / "config.pbtxt").write_text(config, encoding="utf-8")
    return repository


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServeProcess]:
    workdir = tmp_path_factory.mktemp("reshape")
    process = start_server(_repository(workdir), workdir)
    yield process
    assert process.stop() == 0, process.log_tail()


def _client(module: Any, server: ServeProcess) -> Any:
    url = server.http_url if module is httpclient else server.grpc_url
    return module.InferenceServerClient(url)


def _input(module: Any, name: str, array: np.ndarray, datatype: str) -> Any:
    tensor = module.InferInput(name, list(array.shape), datatype)
    tensor.set_data_from_numpy(array)
    return tensor


@CLIENTS
def test_onnx_strings_round_trip_as_bytes(server: ServeProcess, client_module: Any) -> None:
    client = _client(client_module, server)
    words = np.array([[b"427"], ["é✓".encode()], [b""]], dtype=np.object_)
    result = client.infer("strings", [_input(client_module, "IN", words, "BYTES")])
    assert result.as_numpy("SAME").tolist() == words.tolist()
    assert result.as_numpy("TWICE").tolist() == [[b"427427"], ["é✓é✓".encode()], [b""]]
    output = result.get_output("TWICE")
    datatype = output.datatype if client_module is grpcclient else output["datatype"]
    assert datatype == "BYTES"


@CLIENTS
def test_onnx_string_that_is_not_utf8_is_refused(server: ServeProcess, client_module: Any) -> None:
    client = _client(client_module, server)
    bad = np.array([[b"\xff"]], dtype=np.object_)
    with pytest.raises(InferenceServerException, match=r"input 'IN'.*not UTF-8") as caught:
        client.infer("strings", [_input(client_module, "IN", bad, "BYTES")])
    assert caught.value.status() in ("400", "StatusCode.INVALID_ARGUMENT")


@CLIENTS
def test_onnx_model_behind_a_reshape(server: ServeProcess, client_module: Any) -> None:
    client = _client(client_module, server)
    x = np.arange(18, dtype=np.float32).reshape(3, 2, 3)
    result = client.infer("rank4", [_input(client_module, "X", x, "FP32")])
    np.testing.assert_array_equal(result.as_numpy("Y"), 2 * x.reshape(3, 6))
    as_json = {"as_json": True} if client_module is grpcclient else {}
    metadata = client.get_model_metadata("rank4", **as_json)
    assert [int(d) for d in metadata["inputs"][0]["shape"]] == [-1, 2, 3]
    assert [int(d) for d in metadata["outputs"][0]["shape"]] == [-1, 6]


@CLIENTS
def test_a_request_in_the_reshape_shape_is_refused(
    server: ServeProcess, client_module: Any
) -> None:
    client = _client(client_module, server)
    x = np.zeros((1, 1, 2, 3), dtype=np.float32)  # the model's shape, not the protocol's
    with pytest.raises(
        InferenceServerException,
        match=r"input 'X' for model 'rank4'. Expected \[-1,2,3\], got \[1,1,2,3\]",
    ):
        client.infer("rank4", [_input(client_module, "X", x, "FP32")])


def _seen_request(module: Any) -> list[Any]:
    x = np.arange(12, dtype=np.float32).reshape(2, 6)
    s = np.array([[1], [2]], dtype=np.int32)
    return [_input(module, "X", x, "FP32"), _input(module, "S", s, "INT32")]


def _check_seen(result: Any) -> None:
    # X reached model.py as [2, 2, 3], S as [2] (the -1 separates them); Y came back as [2, 6].
    assert result.as_numpy("SEEN").tolist() == [[2, 2, 3, -1, 2]] * 2
    np.testing.assert_array_equal(
        result.as_numpy("Y"), 2 * np.arange(12, dtype=np.float32).reshape(2, 6)
    )


@CLIENTS
@pytest.mark.parametrize("model", ["reshape_seen", "reshape_seen_process"])
def test_python_model_sees_the_reshape_as_under_triton(
    server: ServeProcess, client_module: Any, model: str
) -> None:
    client = _client(client_module, server)
    _check_seen(client.infer(model, _seen_request(client_module)))


@pytest.mark.skipif(TRITON_MISSING, reason="../shared/tools/tritonserver is not installed")
def test_triton_gives_the_python_model_the_same_shapes(tmp_path: Path) -> None:
    repository = tmp_path / "repo"
    shutil.copytree(MODELS / "reshape_seen", repository / "reshape_seen")
    with triton_server(repository, tmp_path) as triton:
        client = httpclient.InferenceServerClient(triton.http_url)
        _check_seen(client.infer("reshape_seen", _seen_request(httpclient)))
