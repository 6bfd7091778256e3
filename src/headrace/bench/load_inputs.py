"""Requests for the load generator, built once from a model's metadata and sent many times.

Like perf_analyzer, the generator sends the same random inputs in every request, so each
client process encodes one request body up front (HTTP: the binary tensor extension, outputs
asked for as binary; gRPC: a serialized ``ModelInferRequest``) and the timed loop only moves
bytes. Variable dimensions (``-1``) need ``--shape NAME:DIMS``; BYTES inputs get random
printable strings of ``string_length`` characters (perf_analyzer's ``--string-length``).
"""

from __future__ import annotations

import json
import string
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from headrace.errors import InvalidInput

__all__ = [
    "InputSpec",
    "ModelTarget",
    "grpc_request_bytes",
    "http_message",
    "http_request",
    "random_inputs",
]

_NUMPY_DTYPES = {
    "BOOL": np.bool_,
    "UINT8": np.uint8,
    "UINT16": np.uint16,
    "UINT32": np.uint32,
    "UINT64": np.uint64,
    "INT8": np.int8,
    "INT16": np.int16,
    "INT32": np.int32,
    "INT64": np.int64,
    "FP16": np.float16,
    "FP32": np.float32,
    "FP64": np.float64,
}
_PRINTABLE = np.frombuffer((string.ascii_letters + string.digits).encode(), dtype=np.uint8)


@dataclass(frozen=True)
class InputSpec:
    name: str
    datatype: str
    dims: tuple[int, ...]
    """Without the batch dimension; every entry >= 0."""


@dataclass(frozen=True)
class ModelTarget:
    """What the generator needs to know about the served model, picklable for workers."""

    model: str
    version: str
    max_batch_size: int
    inputs: tuple[InputSpec, ...]
    outputs: tuple[str, ...]
    shapes: Mapping[str, Sequence[int]] = field(default_factory=dict)
    decoupled: bool = False
    """``model_transaction_policy { decoupled: true }``: any number of responses per request,
    over a gRPC stream only."""

    @classmethod
    def from_metadata(
        cls,
        metadata: Mapping[str, Any],
        max_batch_size: int,
        version: str = "",
        shapes: Mapping[str, Sequence[int]] | None = None,
        decoupled: bool = False,
    ) -> ModelTarget:
        """From KServe v2 model metadata (JSON form); ``shapes`` fill variable dimensions."""
        given = dict(shapes or {})
        name = str(metadata["name"])
        known = {str(i["name"]) for i in metadata.get("inputs", [])}
        unknown = sorted(set(given) - known)
        if unknown:
            raise InvalidInput(
                f"--shape names {unknown}, model {name!r} has inputs {sorted(known)}"
            )
        inputs = []
        for entry in metadata.get("inputs", []):
            shape = [int(d) for d in entry.get("shape", [])]
            dims = shape[1:] if max_batch_size > 0 else shape
            if entry["name"] in given:
                dims = [int(d) for d in given[entry["name"]]]
            if any(d < 0 for d in dims):
                raise InvalidInput(
                    f"input {entry['name']!r} of model {name!r} has variable shape {dims}: "
                    f"give it with --shape {entry['name']}:DIMS"
                )
            if entry["datatype"] not in _NUMPY_DTYPES and entry["datatype"] != "BYTES":
                raise InvalidInput(
                    f"input {entry['name']!r} has datatype {entry['datatype']!r}, which the "
                    "load generator cannot fill"
                )
            inputs.append(InputSpec(str(entry["name"]), str(entry["datatype"]), tuple(dims)))
        outputs = tuple(str(o["name"]) for o in metadata.get("outputs", []))
        return cls(name, version, max_batch_size, tuple(inputs), outputs, given, decoupled)

    def request_shape(self, spec: InputSpec, batch_size: int) -> list[int]:
        if self.max_batch_size > 0:
            return [batch_size, *spec.dims]
        if batch_size != 1:
            raise InvalidInput(
                f"model {self.model!r} does not batch (max_batch_size 0): --batch-size must "
                f"be 1, got {batch_size}"
            )
        return list(spec.dims)


def random_inputs(
    target: ModelTarget, batch_size: int, seed: int = 0, string_length: int = 128
) -> dict[str, np.ndarray]:
    """One request's inputs: standard normal floats, small integers, random strings."""
    rng = np.random.default_rng(seed)
    values: dict[str, np.ndarray] = {}
    for spec in target.inputs:
        shape = target.request_shape(spec, batch_size)
        if spec.datatype == "BYTES":
            count = int(np.prod(shape))
            chars = rng.choice(_PRINTABLE, size=(count, string_length))
            flat = np.array([row.tobytes() for row in chars], dtype=np.object_)
            values[spec.name] = flat.reshape(shape)
        elif spec.datatype == "BOOL":
            values[spec.name] = rng.integers(0, 2, size=shape).astype(np.bool_)
        elif spec.datatype.startswith("FP"):
            values[spec.name] = rng.standard_normal(shape).astype(_NUMPY_DTYPES[spec.datatype])
        else:
            values[spec.name] = rng.integers(0, 100, size=shape).astype(
                _NUMPY_DTYPES[spec.datatype]
            )
    return values


def _raw(array: np.ndarray) -> bytes:
    """The tensor's wire bytes: little-endian values, or length-prefixed BYTES elements."""
    if array.dtype == np.object_:
        parts = []
        for item in array.reshape(-1):
            data = item if isinstance(item, bytes) else str(item).encode()
            parts += [len(data).to_bytes(4, "little"), data]
        return b"".join(parts)
    return np.ascontiguousarray(array).astype(array.dtype.newbyteorder("<")).tobytes()


def http_request(
    target: ModelTarget, values: Mapping[str, np.ndarray]
) -> tuple[str, dict[str, str], bytes]:
    """Path, headers and body of one binary-extension infer request."""
    raws = {spec.name: _raw(values[spec.name]) for spec in target.inputs}
    header = {
        "inputs": [
            {
                "name": spec.name,
                "shape": list(values[spec.name].shape),
                "datatype": spec.datatype,
                "parameters": {"binary_data_size": len(raws[spec.name])},
            }
            for spec in target.inputs
        ],
        "outputs": [{"name": name, "parameters": {"binary_data": True}} for name in target.outputs],
    }
    head = json.dumps(header, separators=(",", ":")).encode()
    version = f"/versions/{target.version}" if target.version else ""
    path = f"/v2/models/{target.model}{version}/infer"
    headers = {
        "Content-Type": "application/octet-stream",
        "Inference-Header-Content-Length": str(len(head)),
    }
    return path, headers, head + b"".join(raws.values())


def http_message(address: str, target: ModelTarget, values: Mapping[str, np.ndarray]) -> bytes:
    """The whole HTTP/1.1 request (request line, headers, body) for ``host:port``, sent as is."""
    path, headers, body = http_request(target, values)
    head = "".join(f"{k}: {v}\r\n" for k, v in headers.items())
    return (
        f"POST {path} HTTP/1.1\r\nHost: {address}\r\n{head}Content-Length: {len(body)}\r\n\r\n"
    ).encode() + body


def grpc_request_bytes(
    target: ModelTarget,
    values: Mapping[str, np.ndarray],
    request_id: str = "",
    empty_final: bool = False,
) -> bytes:
    """A serialized ``ModelInferRequest`` (raw input contents) for these inputs;
    ``empty_final`` asks a decoupled model's server for the empty final response
    (``triton_enable_empty_final_response``), which tells the client the request is done."""
    from tritonclient.grpc import service_pb2

    request = service_pb2.ModelInferRequest(
        model_name=target.model, model_version=target.version, id=request_id
    )
    if empty_final:
        request.parameters["triton_enable_empty_final_response"].bool_param = True
    for spec in target.inputs:
        tensor = request.inputs.add()
        tensor.name = spec.name
        tensor.datatype = spec.datatype
        tensor.shape.extend(values[spec.name].shape)
        request.raw_input_contents.append(_raw(values[spec.name]))
    return bytes(request.SerializeToString())
