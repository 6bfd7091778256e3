"""The bad requests of ``error_table.py``: one repository, each case over HTTP and gRPC.

A case is a request a client can get wrong (an unknown model, a wrong dtype, a body over the
limit, a load the control mode forbids...), written as the raw HTTP request and the raw gRPC
message, so both servers see exactly the same bytes. :func:`ask` sends one case to one server
and returns the answer as ``(status, text)``: the HTTP status and the body's ``error`` field,
or the gRPC status code's name and its details. The repository holds python-backend models
only, so NVIDIA Triton 2.51 (python backend only here) serves the same directory.

Cases run against a server in one of two modes (``Case.mode``): ``explicit`` (``--model-
control-mode explicit`` with ``simple`` and ``strings`` loaded) or ``none`` (the default mode, where load
and unload are refused).
"""

from __future__ import annotations

import base64
import http.client
import json
import struct
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

__all__ = [
    "BODY_LIMIT",
    "CASES",
    "LOADED",
    "Case",
    "Endpoint",
    "ask",
    "write_repository",
]

BODY_LIMIT = 64 * 1024 * 1024
"""headrace's default ``--max-body-bytes``; Triton 2.51 has no flag for its limit."""

LOADED = ("simple", "strings")
"""The models the explicit-mode servers load at start; ``unloaded`` stays in the repository."""

_ADD_SUB = """\
import numpy as np
import triton_python_backend_utils as pb_utils


class TritonPythonModel:
    def execute(self, requests):
        responses = []
        for request in requests:
            a = pb_utils.get_input_tensor_by_name(request, "INPUT0").as_numpy()
            b = pb_utils.get_input_tensor_by_name(request, "INPUT1").as_numpy()
            out = [pb_utils.Tensor("OUTPUT0", a + b), pb_utils.Tensor("OUTPUT1", a - b)]
            responses.append(pb_utils.InferenceResponse(output_tensors=out))
        return responses
"""

_IDENTITY = """\
import triton_python_backend_utils as pb_utils


class TritonPythonModel:
    def execute(self, requests):
        responses = []
        for request in requests:
            data = pb_utils.get_input_tensor_by_name(request, "INPUT0").as_numpy()
            out = pb_utils.Tensor("OUTPUT0", data)
            responses.append(pb_utils.InferenceResponse(output_tensors=[out]))
        return responses
"""

_BROKEN = """\
class TritonPythonModel:
    def initialize(self, args):
        raise RuntimeError("this model fails to initialize on purpose")

    def execute(self, requests):
        return []
"""

_SIMPLE_CONFIG = """\
name: "{name}"
backend: "python"
max_batch_size: 8
input {{ name: "INPUT0" data_type: TYPE_INT32 dims: [ 16 ] }}
input {{ name: "INPUT1" data_type: TYPE_INT32 dims: [ 16 ] }}
output {{ name: "OUTPUT0" data_type: TYPE_INT32 dims: [ 16 ] }}
output {{ name: "OUTPUT1" data_type: TYPE_INT32 dims: [ 16 ] }}
"""

_STRINGS_CONFIG = """\
name: "strings"
backend: "python"
max_batch_size: 8
input { name: "INPUT0" data_type: TYPE_STRING dims: [ -1 ] }
output { name: "OUTPUT0" data_type: TYPE_STRING dims: [ -1 ] }
"""


def write_repository(path: Path) -> Path:
    """Write the python-backend repository every case runs against; return ``path``."""
    for name, config, code in (
        ("simple", _SIMPLE_CONFIG.format(name="simple"), _ADD_SUB),
        ("unloaded", _SIMPLE_CONFIG.format(name="unloaded"), _ADD_SUB),
        ("broken", _SIMPLE_CONFIG.format(name="broken"), _BROKEN),
        ("strings", _STRINGS_CONFIG, _IDENTITY),
    ):
        (path / name / "1").mkdir(parents=True, exist_ok=True)
        (path / name / "config.pbtxt").write_text(config, encoding="utf-8")
        (path / name / "1" / "model.py").write_text(code, encoding="utf-8")
    return path


# --- requests --------------------------------------------------------------------------------

HttpRequest = tuple[str, str, bytes, dict[str, str]]
"""method, path, body, headers."""


@dataclass(frozen=True)
class Case:
    """One bad request, as HTTP and as gRPC (either may be None where a protocol has no such
    request). ``owner`` names the developer area that owns a difference, if not this table."""

    name: str
    what: str
    http: HttpRequest | None
    grpc: Callable[[Any], tuple[str, Any]] | None
    mode: str = "explicit"
    owner: str = ""


def _tensor(name: str, shape: list[int], datatype: str, data: list[Any]) -> dict[str, Any]:
    return {"name": name, "shape": shape, "datatype": datatype, "data": data}


def _simple_inputs(**changes: dict[str, Any]) -> list[dict[str, Any]]:
    inputs = {
        "INPUT0": _tensor("INPUT0", [1, 16], "INT32", list(range(16))),
        "INPUT1": _tensor("INPUT1", [1, 16], "INT32", [1] * 16),
    }
    for name, change in changes.items():
        inputs[name] = {**inputs.get(name, _tensor(name, [1, 16], "INT32", [0] * 16)), **change}
    return [value for value in inputs.values() if value.get("name")]


def _infer_json(
    model: str = "simple", inputs: list[dict[str, Any]] | None = None, **extra: Any
) -> HttpRequest:
    body = {"inputs": _simple_inputs() if inputs is None else inputs, **extra}
    return ("POST", f"/v2/models/{model}/infer", json.dumps(body).encode(), _JSON)


_JSON = {"Content-Type": "application/json"}


def _infer_binary(header: dict[str, Any], payload: bytes, model: str = "simple") -> HttpRequest:
    """A request of the binary tensor extension: JSON header, then the raw tensors."""
    head = json.dumps(header).encode()
    headers = {"Inference-Header-Content-Length": str(len(head))}
    return ("POST", f"/v2/models/{model}/infer", head + payload, headers)


def _bytes_element(value: bytes) -> bytes:
    return struct.pack("<I", len(value)) + value


def _grpc_infer(
    model: str = "simple",
    version: str = "",
    shapes: dict[str, list[int]] | None = None,
    dtypes: dict[str, str] | None = None,
    raw: dict[str, bytes] | None = None,
    outputs: tuple[str, ...] = (),
    names: tuple[str, ...] = ("INPUT0", "INPUT1"),
) -> Callable[[Any], tuple[str, Any]]:
    """A ``ModelInfer`` call with raw contents; ``shapes``, ``dtypes`` and ``raw`` override
    the default [1, 16] INT32 tensors of ``simple`` per input name."""

    def build(pb: Any) -> tuple[str, Any]:
        request = pb.ModelInferRequest(model_name=model, model_version=version)
        for name in names:
            tensor = request.inputs.add()
            tensor.name = name
            tensor.datatype = (dtypes or {}).get(name, "INT32")
            tensor.shape.extend((shapes or {}).get(name, [1, 16]))
            default = np.arange(16, dtype=np.int32).tobytes()
            request.raw_input_contents.append((raw or {}).get(name, default))
        for name in outputs:
            request.outputs.add().name = name
        return "ModelInfer", request

    return build


def _grpc(rpc: str, message: str, **fields: Any) -> Callable[[Any], tuple[str, Any]]:
    def build(pb: Any) -> tuple[str, Any]:
        return rpc, getattr(pb, message)(**fields)

    return build


def _grpc_typed_contents(pb: Any) -> tuple[str, Any]:
    """INPUT0 with 15 typed int_contents for a [1, 16] shape."""
    request = pb.ModelInferRequest(model_name="simple")
    for name, count in (("INPUT0", 15), ("INPUT1", 16)):
        tensor = request.inputs.add()
        tensor.name, tensor.datatype = name, "INT32"
        tensor.shape.extend([1, 16])
        tensor.contents.int_contents.extend(range(count))
    return "ModelInfer", request


def _grpc_raw_and_typed(pb: Any) -> tuple[str, Any]:
    rpc, request = _grpc_infer()(pb)
    request.inputs[0].contents.int_contents.extend(range(16))
    return rpc, request


def _grpc_load(model: str, config: str | None = None) -> Callable[[Any], tuple[str, Any]]:
    def build(pb: Any) -> tuple[str, Any]:
        request = pb.RepositoryModelLoadRequest(model_name=model)
        if config is not None:
            request.parameters["config"].string_param = config
        return "RepositoryModelLoad", request

    return build


def _load_http(model: str, config: str | None = None) -> HttpRequest:
    body = {"parameters": {"config": config}} if config is not None else {}
    return ("POST", f"/v2/repository/models/{model}/load", json.dumps(body).encode(), _JSON)


_BAD_CONFIG = json.dumps(
    {
        "name": "simple",
        "backend": "python",
        "max_batch_size": 8,
        "input": [{"name": "INPUT0", "data_type": "TYPE_NOPE", "dims": [16]}],
    }
)
_STRING_16 = b"".join(_bytes_element(str(i).encode()) for i in range(16))
_INT32_16 = np.arange(16, dtype=np.int32).tobytes()


CASES: tuple[Case, ...] = (
    Case(
        "unknown_model",
        "infer on a model the repository does not have",
        _infer_json("nosuch"),
        _grpc_infer("nosuch"),
    ),
    Case(
        "unknown_version",
        "infer on version 7 of a model that has only version 1",
        ("POST", "/v2/models/simple/versions/7/infer", _infer_json()[2], _JSON),
        _grpc_infer(version="7"),
    ),
    Case(
        "unloaded_model",
        "infer on a model in the repository that explicit mode did not load",
        _infer_json("unloaded"),
        _grpc_infer("unloaded"),
        owner="startup",
    ),
    Case(
        "metadata_unknown_model",
        "model metadata of an unknown model",
        ("GET", "/v2/models/nosuch", b"", {}),
        _grpc("ModelMetadata", "ModelMetadataRequest", name="nosuch"),
    ),
    Case(
        "metadata_unknown_version",
        "model metadata of an unknown version",
        ("GET", "/v2/models/simple/versions/7", b"", {}),
        _grpc("ModelMetadata", "ModelMetadataRequest", name="simple", version="7"),
    ),
    Case(
        "config_unknown_model",
        "model configuration of an unknown model",
        ("GET", "/v2/models/nosuch/config", b"", {}),
        _grpc("ModelConfig", "ModelConfigRequest", name="nosuch"),
    ),
    Case(
        "ready_unknown_model",
        "model readiness of an unknown model",
        ("GET", "/v2/models/nosuch/ready", b"", {}),
        _grpc("ModelReady", "ModelReadyRequest", name="nosuch"),
    ),
    Case(
        "stats_unknown_model",
        "statistics of an unknown model",
        ("GET", "/v2/models/nosuch/stats", b"", {}),
        _grpc("ModelStatistics", "ModelStatisticsRequest", name="nosuch"),
    ),
    Case(
        "stats_unknown_version",
        "statistics of version 7 of a model that has only version 1",
        ("GET", "/v2/models/simple/versions/7/stats", b"", {}),
        _grpc("ModelStatistics", "ModelStatisticsRequest", name="simple", version="7"),
    ),
    Case(
        "wrong_datatype",
        "INPUT0 sent as FP32, the model expects INT32",
        _infer_json(
            inputs=_simple_inputs(INPUT0={"datatype": "FP32", "data": [0.5] * 16}),
        ),
        _grpc_infer(dtypes={"INPUT0": "FP32"}),
    ),
    Case(
        "unknown_datatype",
        "INPUT0 with datatype 'FOO'",
        _infer_json(inputs=_simple_inputs(INPUT0={"datatype": "FOO"})),
        _grpc_infer(dtypes={"INPUT0": "FOO"}),
    ),
    Case(
        "wrong_shape",
        "INPUT0 of shape [1, 8] with 8 values, the model expects [-1, 16]",
        _infer_json(inputs=_simple_inputs(INPUT0={"shape": [1, 8], "data": [0] * 8})),
        _grpc_infer(shapes={"INPUT0": [1, 8]}, raw={"INPUT0": _INT32_16[:32]}),
    ),
    Case(
        "batch_too_large",
        "a batch of 9 for max_batch_size 8",
        _infer_json(
            inputs=_simple_inputs(
                INPUT0={"shape": [9, 16], "data": [0] * 144},
                INPUT1={"shape": [9, 16], "data": [0] * 144},
            )
        ),
        _grpc_infer(
            shapes={"INPUT0": [9, 16], "INPUT1": [9, 16]},
            raw={"INPUT0": _INT32_16 * 9, "INPUT1": _INT32_16 * 9},
        ),
    ),
    Case(
        "negative_dimension",
        "INPUT0 of shape [1, -16]",
        _infer_json(inputs=_simple_inputs(INPUT0={"shape": [1, -16]})),
        _grpc_infer(shapes={"INPUT0": [1, -16]}),
    ),
    Case(
        "missing_input",
        "INPUT1 is not sent",
        _infer_json(inputs=_simple_inputs(INPUT1={"name": ""})),
        _grpc_infer(names=("INPUT0",)),
    ),
    Case(
        "unknown_input",
        "an extra input INPUT9 the model does not have",
        _infer_json(inputs=_simple_inputs(INPUT9={})),
        _grpc_infer(names=("INPUT0", "INPUT1", "INPUT9")),
    ),
    Case(
        "unknown_input_in_place",
        "INPUT0 and INPUT9, the model has INPUT0 and INPUT1",
        _infer_json(inputs=_simple_inputs(INPUT1={"name": ""}, INPUT9={})),
        _grpc_infer(names=("INPUT0", "INPUT9")),
    ),
    Case(
        "unknown_output",
        "output OUTPUT9 requested, the model has OUTPUT0 and OUTPUT1",
        _infer_json(outputs=[{"name": "OUTPUT9"}]),
        _grpc_infer(outputs=("OUTPUT9",)),
    ),
    Case(
        "duplicate_output",
        "OUTPUT0 requested twice",
        _infer_json(outputs=[{"name": "OUTPUT0"}, {"name": "OUTPUT0"}]),
        _grpc_infer(outputs=("OUTPUT0", "OUTPUT0")),
        owner="strict",
    ),
    Case(
        "data_count_mismatch",
        "INPUT0 of shape [1, 16] with 15 values (JSON data / gRPC typed contents)",
        _infer_json(inputs=_simple_inputs(INPUT0={"data": list(range(15))})),
        _grpc_typed_contents,
    ),
    Case(
        "raw_size_mismatch",
        "INPUT0 of shape [1, 16] INT32 with 60 raw bytes instead of 64",
        _infer_binary(
            {
                "inputs": [
                    {
                        "name": "INPUT0",
                        "shape": [1, 16],
                        "datatype": "INT32",
                        "parameters": {"binary_data_size": 60},
                    },
                    _tensor("INPUT1", [1, 16], "INT32", [1] * 16),
                ]
            },
            _INT32_16[:60],
        ),
        _grpc_infer(raw={"INPUT0": _INT32_16[:60]}),
    ),
    Case(
        "raw_bytes_truncated",
        "a BYTES element whose length prefix runs past the raw contents",
        _infer_binary(
            {
                "inputs": [
                    {
                        "name": "INPUT0",
                        "shape": [1, 2],
                        "datatype": "BYTES",
                        "parameters": {"binary_data_size": 11},
                    }
                ]
            },
            _bytes_element(b"ab") + struct.pack("<I", 100) + b"c",
            model="strings",
        ),
        _grpc_infer(
            "strings",
            shapes={"INPUT0": [1, 2]},
            dtypes={"INPUT0": "BYTES"},
            raw={"INPUT0": _bytes_element(b"ab") + struct.pack("<I", 100) + b"c"},
            names=("INPUT0",),
        ),
    ),
    Case(
        "raw_bytes_count_mismatch",
        "BYTES of shape [1, 16] with 15 elements in the raw contents",
        _infer_binary(
            {
                "inputs": [
                    {
                        "name": "INPUT0",
                        "shape": [1, 16],
                        "datatype": "BYTES",
                        "parameters": {"binary_data_size": len(_STRING_16) - 6},
                    }
                ]
            },
            _STRING_16[:-6],
            model="strings",
        ),
        _grpc_infer(
            "strings",
            dtypes={"INPUT0": "BYTES"},
            raw={"INPUT0": _STRING_16[:-6]},
            names=("INPUT0",),
        ),
    ),
    Case(
        "raw_and_typed_contents",
        "gRPC INPUT0 with raw_input_contents and typed contents both",
        None,
        _grpc_raw_and_typed,
        owner="strict",
    ),
    Case(
        "binary_size_past_body",
        "binary_data_size larger than what follows the JSON header",
        _infer_binary(
            {
                "inputs": [
                    {
                        "name": "INPUT0",
                        "shape": [1, 16],
                        "datatype": "INT32",
                        "parameters": {"binary_data_size": 64},
                    },
                    _tensor("INPUT1", [1, 16], "INT32", [1] * 16),
                ]
            },
            _INT32_16[:32],
        ),
        None,
    ),
    Case(
        "header_length_past_body",
        "Inference-Header-Content-Length larger than the body",
        ("POST", "/v2/models/simple/infer", b"{}", {"Inference-Header-Content-Length": "100"}),
        None,
    ),
    Case(
        "header_length_not_a_number",
        "Inference-Header-Content-Length: abc",
        ("POST", "/v2/models/simple/infer", b"{}", {"Inference-Header-Content-Length": "abc"}),
        None,
    ),
    Case(
        "bad_json",
        "an infer body that is not JSON",
        ("POST", "/v2/models/simple/infer", b"{bad", _JSON),
        None,
    ),
    Case(
        "json_not_an_object",
        "an infer body that is a JSON list",
        ("POST", "/v2/models/simple/infer", b"[1, 2]", _JSON),
        None,
    ),
    Case(
        "json_no_inputs",
        "an infer body without 'inputs'",
        ("POST", "/v2/models/simple/infer", b'{"id": "1"}', _JSON),
        None,
    ),
    Case(
        "json_data_wrong_type",
        "INT32 data given as strings",
        _infer_json(inputs=_simple_inputs(INPUT0={"data": ["a"] * 16})),
        None,
    ),
    Case(
        "body_over_limit",
        f"an infer body of {BODY_LIMIT + 1024} bytes, the limit is {BODY_LIMIT}",
        ("POST", "/v2/models/simple/infer", b" " * (BODY_LIMIT + 1024), _JSON),
        None,
    ),
    Case(
        "bad_compression",
        "Content-Encoding: br",
        ("POST", "/v2/models/simple/infer", _infer_json()[2], {**_JSON, "Content-Encoding": "br"}),
        None,
    ),
    Case(
        "load_unknown_model",
        "load of a model the repository does not have",
        _load_http("nosuch"),
        _grpc_load("nosuch"),
    ),
    Case(
        "load_bad_config",
        "load of 'simple' with a config override naming an unknown data type",
        _load_http("simple", _BAD_CONFIG),
        _grpc_load("simple", _BAD_CONFIG),
    ),
    Case(
        "load_failing_model",
        "load of a model whose model.py raises in initialize",
        _load_http("broken"),
        _grpc_load("broken"),
    ),
    Case(
        "infer_failed_model",
        "infer on the model whose load failed",
        _infer_json("broken"),
        _grpc_infer("broken"),
    ),
    Case(
        "load_config_not_json",
        "load of 'simple' with a config override that is not JSON",
        _load_http("simple", "{not json"),
        _grpc_load("simple", "{not json"),
    ),
    Case(
        "load_file_without_config",
        "load with a file: parameter and no config",
        (
            "POST",
            "/v2/repository/models/simple/load",
            json.dumps(
                {"parameters": {"file:1/model.py": base64.b64encode(b"x").decode()}}
            ).encode(),
            _JSON,
        ),
        None,
        owner="security",
    ),
    Case(
        "unload_unknown_model",
        "unload of a model the repository does not have",
        ("POST", "/v2/repository/models/nosuch/unload", b"{}", _JSON),
        _grpc("RepositoryModelUnload", "RepositoryModelUnloadRequest", model_name="nosuch"),
    ),
    Case(
        "load_in_mode_none",
        "load while the control mode is none",
        _load_http("simple"),
        _grpc_load("simple"),
        mode="none",
    ),
    Case(
        "unload_in_mode_none",
        "unload while the control mode is none",
        ("POST", "/v2/repository/models/simple/unload", b"{}", _JSON),
        _grpc("RepositoryModelUnload", "RepositoryModelUnloadRequest", model_name="simple"),
        mode="none",
    ),
    Case(
        "shm_unknown_region_status",
        "status of a system shared memory region never registered",
        ("GET", "/v2/systemsharedmemory/region/nosuch/status", b"", {}),
        _grpc("SystemSharedMemoryStatus", "SystemSharedMemoryStatusRequest", name="nosuch"),
    ),
    Case(
        "shm_bad_key",
        "register a system shared memory region whose key does not exist",
        (
            "POST",
            "/v2/systemsharedmemory/region/r0/register",
            json.dumps({"key": "/no_such_key", "offset": 0, "byte_size": 64}).encode(),
            _JSON,
        ),
        _grpc(
            "SystemSharedMemoryRegister",
            "SystemSharedMemoryRegisterRequest",
            name="r0",
            key="/no_such_key",
            offset=0,
            byte_size=64,
        ),
    ),
    Case(
        "unknown_path",
        "GET of a path no endpoint has",
        ("GET", "/v2/nothing/here", b"", {}),
        None,
    ),
)


# --- sending ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class Endpoint:
    """Where one server listens."""

    http_port: int
    grpc_port: int


def ask(case: Case, protocol: str, endpoint: Endpoint, timeout_s: float = 30.0) -> dict[str, Any]:
    """Send ``case`` over ``protocol`` (``http`` or ``grpc``) and return its status and text."""
    if protocol == "http":
        assert case.http is not None
        return _ask_http(case.http, endpoint.http_port, timeout_s)
    assert case.grpc is not None
    return _ask_grpc(case.grpc, endpoint.grpc_port, timeout_s)


def _ask_http(request: HttpRequest, port: int, timeout_s: float) -> dict[str, Any]:
    method, path, body, headers = request
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=timeout_s)
    try:
        connection.request(method, path, body=body or None, headers=headers)
        response = connection.getresponse()
        raw = response.read()
        status = response.status
    except (ConnectionError, http.client.HTTPException) as exc:
        return {"status": "connection error", "text": f"{type(exc).__name__}: {exc}"}
    finally:
        connection.close()
    text = raw.decode("utf-8", "replace")
    try:
        parsed = json.loads(raw)
    except ValueError:
        parsed = None
    if isinstance(parsed, dict) and isinstance(parsed.get("error"), str):
        text = parsed["error"]
    return {"status": status, "text": text}


def _ask_grpc(
    build: Callable[[Any], tuple[str, Any]], port: int, timeout_s: float
) -> dict[str, Any]:
    import grpc
    from tritonclient.grpc import service_pb2, service_pb2_grpc

    rpc, message = build(service_pb2)
    with grpc.insecure_channel(f"127.0.0.1:{port}") as channel:
        stub = service_pb2_grpc.GRPCInferenceServiceStub(channel)
        try:
            reply = getattr(stub, rpc)(message, timeout=timeout_s)
        except grpc.RpcError as exc:
            return {"status": exc.code().name, "text": exc.details() or ""}
    if rpc == "ModelReady":
        return {"status": "OK", "text": f"ready: {reply.ready}"}
    return {"status": "OK", "text": ""}
