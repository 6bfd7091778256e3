"""KServe v2 HTTP/REST tensor encoding, as Triton speaks it, with the binary tensor extension.

Pure functions from request bodies to :class:`headrace.types.InferenceRequest` and from
:class:`~headrace.types.InferenceResponse` to response bodies; no aiohttp here, so the
framing rules are testable byte for byte. Binary tensors are read with ``numpy.frombuffer``
straight out of the request body (zero-copy, hence read-only arrays); JSON tensors go
through numpy in one call. Tensors in shared memory (Triton's ``shared_memory_region``
parameters) are read through the core's registry, handed in as ``memory``, and outputs bound
for shared memory are written through their :class:`OutputTarget` and sent without data. JSON is parsed with orjson when it is installed (about 4x faster
than python-rapidjson on request headers, 10x on JSON tensors) and python-rapidjson
otherwise, which tritonclient always brings.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from headrace.errors import InvalidInput, brief
from headrace.server.memory import OutputTarget, SharedMemoryRef, SharedMemoryRegistry
from headrace.server.parameters import (
    RESERVED_PARAMETERS,
    check_passthrough_key,
    reserved_option,
)
from headrace.server.shapes import check_shape
from headrace.server.validation import array_from_bytes, dims_text
from headrace.types import (
    DataType,
    InferenceRequest,
    InferenceResponse,
    RequestedOutput,
    TensorSpec,
    wire_bytes,
)

_orjson: Any = None
try:
    import orjson

    _orjson = orjson
except ImportError:  # pragma: no cover - depends on the environment
    import rapidjson as _rapidjson

__all__ = [
    "DecodedRequest",
    "datatype_of",
    "decode_infer_request",
    "decode_parsed_request",
    "decode_raw_request",
    "encode_infer_response",
    "json_data",
    "json_dumps",
    "json_loads",
    "loads_header",
    "raw_shape",
]


def json_loads(data: bytes | memoryview | str) -> Any:
    """Parse JSON; raises ``ValueError`` on malformed text, and on text nested deeper than the
    parser goes (orjson: 1024 levels; python-rapidjson raises ``RecursionError`` there)."""
    if _orjson is not None:
        return _orjson.loads(data)
    if isinstance(data, memoryview):
        data = bytes(data)
    try:
        return _rapidjson.loads(data)
    except RecursionError as exc:
        raise ValueError(f"depth limit exceeded: {exc}") from None


def json_dumps(obj: Any) -> bytes:
    """Serialize to compact UTF-8 JSON bytes."""
    if _orjson is not None:
        return _orjson.dumps(obj)
    return _rapidjson.dumps(obj, ensure_ascii=False).encode("utf-8")


@dataclass(frozen=True)
class DecodedRequest:
    """An inference request plus how the client wants each output encoded."""

    request: InferenceRequest
    binary_default: bool = False
    binary_outputs: Mapping[str, bool] = field(default_factory=dict)

    def wants_binary(self, name: str) -> bool:
        return self.binary_outputs.get(name, self.binary_default)


def decode_infer_request(
    model_name: str,
    model_version: str,
    body: bytes,
    header_length: int | None,
    memory: SharedMemoryRegistry | None = None,
) -> DecodedRequest:
    """Decode an infer body: JSON header (all of it when ``header_length`` is None) + binary.

    Inputs in shared memory are read from ``memory``'s regions (refused without one).
    Raises :class:`InvalidInput` naming the input, the sizes and the model on any framing,
    JSON or tensor mismatch, the same cases Triton refuses.
    """
    view = memoryview(body)
    size = len(view)
    if header_length is None:
        header_length = size
    elif header_length < 0 or header_length > size:
        raise InvalidInput(
            f"inference header size should be in range (0, {size}), got: {header_length}"
        )
    header = _loads_object(view[:header_length], "request JSON")
    return decode_parsed_request(model_name, model_version, header, view, header_length, memory)


def decode_parsed_request(
    model_name: str,
    model_version: str,
    header: dict[str, Any],
    view: memoryview,
    header_length: int,
    memory: SharedMemoryRegistry | None = None,
) -> DecodedRequest:
    """:func:`decode_infer_request` after its JSON header has been parsed into ``header``."""
    size = len(view)
    request_id = header.get("id", "")
    if not isinstance(request_id, str):
        raise InvalidInput(f"Unable to parse 'id': expected a string, got {brief(request_id)}")
    if "inputs" not in header:
        raise InvalidInput(
            "Unable to parse 'inputs': attempt to access non-existing object member 'inputs'"
        )
    inputs_json = header["inputs"]
    if not isinstance(inputs_json, list):
        raise InvalidInput("Unable to parse 'inputs': expected a JSON array")
    offset = header_length
    inputs: dict[str, np.ndarray] = {}
    where = _Where(model_name, request_id)
    for item in inputs_json:
        name, array, used = _decode_input(item, view, offset, where, memory)
        if name in inputs:
            raise InvalidInput(f"input '{name}' appears more than once for model '{model_name}'")
        inputs[name] = array
        offset += used
    if offset != size:
        raise InvalidInput(
            f"unexpected additional input data for model '{model_name}': "
            f"{size - offset} bytes after the last binary input"
        )
    options, binary_default = _request_options(header.get("parameters"))
    outputs, binary_outputs = _requested_outputs(header.get("outputs"))
    request = InferenceRequest(
        model_name=model_name,
        model_version=model_version,
        inputs=inputs,
        id=request_id,
        outputs=outputs,
        **options,
    )
    return DecodedRequest(request, binary_default, binary_outputs)


def decode_raw_request(
    model_name: str, model_version: str, body: bytes, spec: TensorSpec, batched: bool
) -> DecodedRequest:
    """Decode a raw binary request: the whole body is the data of the model's single input.

    The shape is deduced as Triton deduces it (:func:`raw_shape`); batched models get batch
    size 1. All outputs come back binary.
    """
    shape = raw_shape(model_name, len(body), spec, batched)
    array: np.ndarray
    if spec.datatype is DataType.BYTES:
        array = np.empty(1, dtype=np.object_)
        array[0] = bytes(body)
        array = array.reshape(shape)
    else:
        array = np.frombuffer(body, dtype=spec.datatype.numpy_dtype).reshape(shape)
    request = InferenceRequest(
        model_name=model_name, model_version=model_version, inputs={spec.name: array}
    )
    return DecodedRequest(request, binary_default=True)


def raw_shape(model_name: str, size: int, spec: TensorSpec, batched: bool) -> tuple[int, ...]:
    """The shape of a raw binary input of ``size`` bytes, by Triton's rule: the model's dims
    (after a batch dimension of 1 when it batches), their one variable-size dimension, if any,
    filled from the size; a BYTES input must have exactly one element (dims ``[1]``), the
    whole body. Raises :class:`InvalidInput` with Triton's words otherwise."""
    dims = list(spec.dims)
    variable = [i for i, d in enumerate(dims) if d < 0]
    if len(variable) > 1:
        raise InvalidInput(
            f"The shape of the raw input '{spec.name}' can not be deduced because there are "
            f"more than one variable-sized dimension (model '{model_name}' has dims {dims})"
        )
    fixed = math.prod(d for d in dims if d >= 0)
    prefix = [1] if batched else []
    if spec.datatype is DataType.BYTES:
        if variable or fixed != 1:
            raise InvalidInput(
                f"For BYTE datatype raw input '{spec.name}', the model must have input shape "
                f"[1] (model '{model_name}' has dims {dims})"
            )
        return tuple(prefix + dims)
    itemsize = spec.datatype.numpy_dtype.itemsize
    if variable:
        row = fixed * itemsize
        dims[variable[0]] = size // row if row else 0
    expected = math.prod(dims) * itemsize
    if expected != size:
        raise InvalidInput(
            f"input byte size mismatch for input '{spec.name}' for model '{model_name}'. "
            f"Expected {expected}, got {size} (a raw binary request of {spec.datatype.value} "
            f"dims {list(spec.dims)})"
        )
    return tuple(prefix + dims)


def encode_infer_response(
    response: InferenceResponse,
    decoded: DecodedRequest,
    shared: Mapping[str, OutputTarget] | None = None,
) -> tuple[bytes, int | None]:
    """Encode a response; returns the body and the JSON header length (None if all JSON).

    Outputs in ``shared`` are written to their shared memory and listed with their datatype
    and shape only, as Triton lists them.
    """
    outputs: list[dict[str, Any]] = []
    chunks: list[Any] = []
    for name, value in response.outputs.items():
        target = shared.get(name) if shared else None
        if target is not None:
            written, shape = target.write(name, value)
            outputs.append({"name": name, "datatype": written.value, "shape": list(shape)})
            continue
        array = np.asarray(value)
        datatype = datatype_of(array, name)
        entry: dict[str, Any] = {
            "name": name,
            "datatype": datatype.value,
            "shape": list(array.shape),
        }
        if decoded.wants_binary(name):
            raw = wire_bytes(array, datatype)
            entry["parameters"] = {"binary_data_size": len(raw)}
            chunks.append(raw)
        else:
            entry["data"] = json_data(array, datatype, name)
        outputs.append(entry)
    message: dict[str, Any] = {}
    if response.id:
        message["id"] = response.id
    message["model_name"] = response.model_name
    message["model_version"] = response.model_version
    if response.parameters:
        message["parameters"] = dict(response.parameters)
    message["outputs"] = outputs
    header = json_dumps(message)
    if not chunks:
        return header, None
    return b"".join([header, *chunks]), len(header)


def loads_header(data: memoryview) -> dict[str, Any]:
    """A request's JSON header parsed, refused in Triton's words unless it is an object."""
    return _loads_object(data, "request JSON")


def _loads_object(data: memoryview, what: str) -> dict[str, Any]:
    """``data`` parsed as a JSON object; refused in Triton's words (its JSON buffer)."""
    try:
        parsed = json_loads(data)
    except (ValueError, TypeError) as exc:
        raise InvalidInput(f"failed to parse the {what} buffer: {exc}") from exc
    if not isinstance(parsed, dict):
        raise InvalidInput(
            f"failed to parse the {what} buffer: the {what} must be a JSON object, "
            f"got {type(parsed).__name__}"
        )
    return parsed


@dataclass(frozen=True, slots=True)
class _Where:
    """The model and request an input belongs to, for Triton's words in errors."""

    model: str
    request_id: str


def _decode_input(
    item: Any,
    view: memoryview,
    offset: int,
    where: _Where,
    memory: SharedMemoryRegistry | None,
) -> tuple[str, np.ndarray, int]:
    """One ``$request_input``; returns name, array and the binary bytes it consumed."""
    if not isinstance(item, dict):
        raise InvalidInput(f"each entry of 'inputs' must be a JSON object, got {brief(item)}")
    name = item.get("name")
    if not isinstance(name, str):
        raise InvalidInput(f"Unable to parse 'name' of an input: got {brief(name)}")
    try:
        datatype = DataType.from_name(str(item.get("datatype")))
    except ValueError:
        raise InvalidInput(
            f"invalid datatype for input {name}: {brief(item.get('datatype'))} is not a datatype "
            "of the KServe v2 protocol"
        ) from None
    shape = _shape_of(item.get("shape"), name)
    check_shape(name, shape, datatype)
    params = item.get("parameters") or {}
    if not isinstance(params, dict):
        raise InvalidInput(f"'parameters' of input '{name}' must be a JSON object")
    has_data = "data" in item
    has_binary = "binary_data_size" in params
    has_shm = "shared_memory_region" in params
    if has_data + has_binary + has_shm != 1:
        raise InvalidInput(
            f"input '{name}' must set exactly one of 'data', 'binary_data_size' in "
            "'parameters', 'shared_memory_region' in 'parameters'"
        )
    if has_shm:
        ref = SharedMemoryRef.from_parameters(params)
        if memory is None or ref is None:
            raise InvalidInput(f"input '{name}': shared memory inputs are not supported here")
        return name, memory.read_input(name, datatype, shape, ref, where.model), 0
    if has_data:
        return name, _from_json(item["data"], datatype, shape, name), 0
    size = params["binary_data_size"]
    if not isinstance(size, int) or isinstance(size, bool) or size < 0:
        raise InvalidInput(
            f"Unable to parse 'binary_data_size' of input '{name}': got {brief(size)}"
        )
    available = len(view) - offset
    if size > available:
        raise InvalidInput(
            f"unexpected size for input '{name}', expecting {size - available} additional "
            f"bytes for model '{where.model}'"
        )
    chunk = view[offset : offset + size]
    return name, array_from_bytes(chunk, datatype, shape, name, where.model, where.request_id), size


def _shape_of(value: Any, name: str) -> tuple[int, ...]:
    if not isinstance(value, list) or not all(
        isinstance(d, int) and not isinstance(d, bool) and d >= 0 for d in value
    ):
        raise InvalidInput(
            f"Unable to parse 'shape': input '{name}' needs a list of non-negative integers, "
            f"got {brief(value)}"
        )
    return tuple(value)


def _data_count_error(name: str, got: int, shape: tuple[int, ...]) -> str:
    return (
        "Unable to parse 'data': Shape does not match true shape of 'data' field; input "
        f"'{name}' has {got} values, shape {dims_text(shape)} needs {math.prod(shape)}"
    )


_JSON_KINDS = {"b": "b", "i": "iu", "u": "iu", "f": "iuf"}


def _from_json(data: Any, datatype: DataType, shape: tuple[int, ...], name: str) -> np.ndarray:
    count = math.prod(shape)
    if datatype in (DataType.FP16, DataType.BF16):
        raise InvalidInput(
            f"receiving {datatype.value} data via JSON is not supported. Please use the "
            f"binary data format for input {name}"
        )
    if not isinstance(data, list):
        data = [data]
    if datatype is DataType.BYTES:
        flat = _flatten_strings(data, name)
        if len(flat) != count:
            raise InvalidInput(_data_count_error(name, len(flat), shape))
        array = np.empty(count, dtype=np.object_)
        array[:] = flat
        return array.reshape(shape)
    try:
        parsed = np.array(data)
    except ValueError as exc:
        raise InvalidInput(f"Unable to parse 'data': input '{name}': {exc}") from exc
    target = datatype.numpy_dtype
    if parsed.size and parsed.dtype.kind not in _JSON_KINDS[target.kind]:
        raise InvalidInput(
            f"Unable to parse 'data': values of kind {parsed.dtype.name} in input '{name}' "
            f"do not fit {datatype.value}"
        )
    if parsed.size != count:
        raise InvalidInput(_data_count_error(name, parsed.size, shape))
    return parsed.astype(target, copy=False).reshape(shape)


def _flatten_strings(data: list[Any], name: str) -> list[bytes]:
    out: list[bytes] = []
    stack = [iter(data)]
    while stack:
        for item in stack[-1]:
            if isinstance(item, list):
                stack.append(iter(item))
                break
            if not isinstance(item, str):
                raise InvalidInput(
                    f"Unable to parse 'data' of BYTES input '{name}': expected strings, "
                    f"got {brief(item)}"
                )
            out.append(item.encode("utf-8"))
        else:
            stack.pop()
    return out


def _request_options(params: Any) -> tuple[dict[str, Any], bool]:
    """Map Triton's request parameters to InferenceRequest fields and pass-through ones."""
    if params is None:
        return {}, False
    if not isinstance(params, dict):
        raise InvalidInput(f"request 'parameters' must be a JSON object, got {brief(params)}")
    options: dict[str, Any] = {}
    passthrough: dict[str, Any] = {}
    for key, value in params.items():
        if key in RESERVED_PARAMETERS:
            reserved_option(options, key, value)
            continue
        check_passthrough_key(key)
        if isinstance(value, bool | int | float | str):
            passthrough[key] = value
        else:
            raise InvalidInput(
                f"parameter '{key}' has invalid type. It should be either 'int', 'bool', "
                "or 'string'."
            )
    binary_default = options.pop("binary_data_output", False)
    if passthrough:
        options["parameters"] = passthrough
    return options, binary_default


def _requested_outputs(
    outputs_json: Any,
) -> tuple[tuple[RequestedOutput, ...] | None, dict[str, bool]]:
    if outputs_json is None:
        return None, {}
    if not isinstance(outputs_json, list):
        raise InvalidInput("Unable to parse 'outputs': expected a JSON array")
    requested: list[RequestedOutput] = []
    binary: dict[str, bool] = {}
    for item in outputs_json:
        if not isinstance(item, dict) or not isinstance(item.get("name"), str):
            raise InvalidInput(f"Unable to parse 'name' of a requested output: got {brief(item)}")
        name = item["name"]
        params = item.get("parameters") or {}
        if not isinstance(params, dict):
            raise InvalidInput(f"'parameters' of output '{name}' must be a JSON object")
        if params.get("classification"):
            raise InvalidInput(
                f"output '{name}': the classification extension is not supported by this "
                "server; request the raw output tensor instead"
            )
        if SharedMemoryRef.from_parameters(params) is not None and params.get("binary_data"):
            raise InvalidInput("Output can't set both 'shared_memory_region' and 'binary_data'")
        if "binary_data" in params and not isinstance(params["binary_data"], bool):
            raise InvalidInput(
                f"Unable to parse 'binary_data' of output '{name}': "
                f"got {brief(params['binary_data'])}"
            )
        if any(seen.name == name for seen in requested):
            continue  # asked twice: Triton 2.51 answers it once, as the first asked for it
        if "binary_data" in params:
            binary[name] = params["binary_data"]
        requested.append(RequestedOutput(name, params))
    return tuple(requested), binary


def datatype_of(array: np.ndarray, name: str) -> DataType:
    """The protocol type of output ``name``; InvalidInput when numpy's dtype has none."""
    try:
        return DataType.from_numpy(array.dtype)
    except ValueError as exc:
        raise InvalidInput(f"output '{name}': {exc}") from exc


def json_data(array: np.ndarray, datatype: DataType, name: str) -> list[Any]:
    """Output ``name`` as a flat JSON list (BYTES as UTF-8 text; FP16 and BF16 are refused)."""
    if datatype in (DataType.FP16, DataType.BF16):
        raise InvalidInput(
            f"sending {datatype.value} data via JSON is not supported. Please use the binary "
            f"data format for output '{name}'"
        )
    flat = array.reshape(-1)
    if datatype is not DataType.BYTES:
        return flat.tolist()
    out: list[str] = []
    for item in flat:
        if not isinstance(item, bytes | bytearray | memoryview):
            out.append(str(item))
            continue
        try:
            out.append(bytes(item).decode("utf-8"))
        except UnicodeDecodeError:
            raise InvalidInput(
                f"output '{name}' holds bytes that are not UTF-8; request it with "
                "'binary_data': true"
            ) from None
    return out
