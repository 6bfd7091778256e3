"""KServe v2 gRPC tensor encoding, as Triton speaks it: protobuf messages <-> headrace.types.

Pure functions, no grpc here, so the rules are testable without a server. Inputs come either
all in ``raw_input_contents`` (one entry per input, in order; numeric data read with
``numpy.frombuffer``, zero-copy and hence read-only; BYTES as 4-byte little-endian length +
data per element) or each in its typed ``contents`` field. Requests arrive serialized and
:func:`split_infer_request` keeps the raw contents as views of the received bytes, so a
numeric input is never copied after gRPC hands it over. Outputs always go back in
``raw_output_contents``, as Triton sends them, and responses leave here already serialized
(see :func:`encode_infer_response`). Inputs in shared memory (Triton's
``shared_memory_region`` parameters) have no raw content and are read through the core's
registry; outputs bound for shared memory are written there and answered with an empty raw
content, as Triton answers them.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
from google.protobuf.message import DecodeError
from tritonclient.grpc import service_pb2

from headrace.errors import InternalError, InvalidInput
from headrace.server.memory import OutputTarget, SharedMemoryRef, SharedMemoryRegistry
from headrace.server.parameters import (
    RESERVED_PARAMETERS,
    check_passthrough_key,
    reserved_option,
)
from headrace.server.shapes import check_shape
from headrace.server.validation import (
    array_from_bytes,
    byte_size_error,
    dims_text,
    request_tag,
)
from headrace.types import (
    DataType,
    InferenceRequest,
    InferenceResponse,
    RequestedOutput,
    wire_bytes,
)

__all__ = [
    "ID_FIELD",
    "decode_infer_request",
    "encode_infer_response",
    "encode_stream_response",
    "message_fields",
    "parameter_value",
    "scan_infer_request",
    "split_infer_request",
    "without_request_id",
]

# Client hints the server honours elsewhere (the stream's final-response flag).
_CLIENT_HINTS = frozenset({"triton_enable_empty_final_response"})

# The typed ``InferTensorContents`` field that carries each datatype (FP16/BF16 have none).
_CONTENTS_FIELD: dict[DataType, str] = {
    DataType.BOOL: "bool_contents",
    DataType.INT8: "int_contents",
    DataType.INT16: "int_contents",
    DataType.INT32: "int_contents",
    DataType.INT64: "int64_contents",
    DataType.UINT8: "uint_contents",
    DataType.UINT16: "uint_contents",
    DataType.UINT32: "uint_contents",
    DataType.UINT64: "uint64_contents",
    DataType.FP32: "fp32_contents",
    DataType.FP64: "fp64_contents",
    DataType.BYTES: "bytes_contents",
}
_DATATYPES: dict[str, DataType] = {member.value: member for member in DataType}


def parameter_value(param: Any) -> bool | int | float | str | bytes | None:
    """The Python value of an ``InferParameter`` / ``ModelRepositoryParameter`` (None if unset)."""
    which = param.WhichOneof("parameter_choice")
    return None if which is None else getattr(param, which)


def split_infer_request(
    data: bytes | memoryview,
) -> tuple[service_pb2.ModelInferRequest, list[memoryview]]:
    """Parse a serialized ``ModelInferRequest``, leaving ``raw_input_contents`` in ``data``.

    The raw contents come back as views of ``data`` (protobuf would copy each twice: once to
    parse, once more on every access); everything else is parsed by protobuf. Raises
    :class:`InvalidInput` when the framing is malformed.
    """
    header, raws = scan_infer_request(data)
    try:
        message = service_pb2.ModelInferRequest.FromString(header)
    except DecodeError as exc:
        raise InvalidInput(f"malformed ModelInferRequest: {exc}") from exc
    return message, raws


def scan_infer_request(data: bytes | memoryview) -> tuple[bytes, list[memoryview]]:
    """Split a serialized ``ModelInferRequest`` into its other fields' bytes (the header, for
    protobuf to parse) and views of its ``raw_input_contents``, without copying those.

    Raises :class:`InvalidInput` when the framing is malformed.
    """
    view = memoryview(data).cast("B")
    end = len(view)
    raws: list[memoryview] = []
    header: list[memoryview] = []
    segment = pos = 0
    try:
        while pos < end:
            start = pos
            key = view[pos]  # one-byte keys and lengths are the common case: read them inline
            if key < 0x80:
                pos += 1
            else:
                key, pos = _read_varint(view, pos)
            wire = key & 7
            if wire == 2:
                length = view[pos]
                if length < 0x80:
                    pos += 1
                else:
                    length, pos = _read_varint(view, pos)
                if key >> 3 == _RAW_INPUT_FIELD:
                    header.append(view[segment:start])
                    raws.append(view[pos : pos + length])
                    segment = pos + length
                pos += length
            elif wire == 0:
                _, pos = _read_varint(view, pos)
            elif wire in _FIXED_SIZES:
                pos += _FIXED_SIZES[wire]
            else:
                raise ValueError(f"unsupported wire type {wire} at offset {start}")
            if pos > end:
                raise ValueError(f"field at offset {start} runs past the end ({end} bytes)")
    except (ValueError, IndexError) as exc:
        raise InvalidInput(f"malformed ModelInferRequest: {exc}") from exc
    if not raws:
        return (data if isinstance(data, bytes) else bytes(view)), raws
    header.append(view[segment:end])
    return b"".join(header), raws


_RAW_INPUT_FIELD = 7  # ModelInferRequest.raw_input_contents
ID_FIELD = 3  # ModelInferRequest.id
_FIXED_SIZES = {1: 8, 5: 4}


def without_request_id(header: bytes) -> tuple[bytes, str | None]:
    """A request header (see :func:`scan_infer_request`) without its ``id`` field, and the
    id; ``(header, None)`` when the id is not among the leading length-delimited fields
    (model_name, model_version, id: the order protobuf writes them in)."""
    pos, end = 0, len(header)
    try:
        while pos < end:
            start = pos
            key, pos = _read_varint(header, pos)
            field = key >> 3
            if key & 7 != 2 or field > ID_FIELD:
                return header, None
            length, pos = _read_varint(header, pos)
            if field == ID_FIELD:
                text = header[pos : pos + length].decode()
                return header[:start] + header[pos + length :], text
            pos += length
    except (ValueError, IndexError, UnicodeDecodeError):
        pass  # the full decoding says what is wrong
    return header, None


def message_fields(data: bytes) -> set[int]:
    """The field numbers at the top level of a well-formed serialized message."""
    found, pos, end = set(), 0, len(data)
    while pos < end:
        key, pos = _read_varint(data, pos)
        found.add(key >> 3)
        wire = key & 7
        if wire == 2:
            length, pos = _read_varint(data, pos)
            pos += length
        elif wire == 0:
            _, pos = _read_varint(data, pos)
        else:
            pos += _FIXED_SIZES.get(wire, end)
    return found


def _read_varint(view: bytes | memoryview, pos: int) -> tuple[int, int]:
    value = shift = 0
    while True:
        byte = view[pos]
        pos += 1
        value |= (byte & 0x7F) << shift
        if byte < 0x80:
            return value, pos
        shift += 7
        if shift > 63:
            raise ValueError(f"varint longer than 10 bytes before offset {pos}")


def decode_infer_request(
    message: service_pb2.ModelInferRequest,
    raw_contents: Sequence[bytes | memoryview] | None = None,
    memory: SharedMemoryRegistry | None = None,
) -> InferenceRequest:
    """Turn a ``ModelInferRequest`` into an :class:`InferenceRequest`.

    ``raw_contents`` replaces ``message.raw_input_contents`` (see :func:`split_infer_request`);
    inputs in shared memory are read from ``memory``'s regions (refused without one) and have
    no raw content. Raises :class:`InvalidInput` naming the input when the framing is wrong:
    a raw contents count that differs from the count of inputs not in shared memory, a byte
    size that does not fit shape and datatype, a typed contents field that does not match
    the datatype.
    """
    model = message.model_name
    raw = message.raw_input_contents if raw_contents is None else raw_contents
    tensors = message.inputs
    shared = {t.name for t in tensors if "shared_memory_region" in t.parameters}
    for tensor in tensors if raw else ():
        if tensor.name not in shared and tensor.HasField("contents"):
            raise InvalidInput(  # Triton's words (its example clients match them), checked first
                f"contents field must not be specified when using raw_input_contents for "
                f"'{tensor.name}' for model '{model}'"
            )
    if raw and len(raw) != len(tensors) - len(shared):
        where = " outside shared memory" if shared else ""
        raise InvalidInput(
            f"request for model '{model}' has {len(tensors) - len(shared)} inputs{where} but "
            f"{len(raw)} raw_input_contents; send one raw content per input"
        )
    inputs: dict[str, np.ndarray] = {}
    index = 0
    for tensor in tensors:
        name = tensor.name
        if name in inputs:
            raise InvalidInput(f"input '{name}' appears more than once for model '{model}'")
        datatype = _datatype(tensor.datatype, name, message.id)
        shape = _shape(tensor.shape, name, model, message.id)
        check_shape(name, shape, datatype)
        if name in shared:
            inputs[name] = _from_shared(tensor, datatype, shape, model, memory)
        elif raw:
            inputs[name] = array_from_bytes(raw[index], datatype, shape, name, model, message.id)
            index += 1
        else:
            inputs[name] = _from_contents(tensor.contents, datatype, shape, name, model, message.id)
    options = _request_options(message.parameters, model)
    return InferenceRequest(
        model_name=model,
        model_version=message.model_version,
        inputs=inputs,
        id=message.id,
        outputs=_requested_outputs(message.outputs),
        **options,
    )


def encode_infer_response(
    response: InferenceResponse,
    parameters: Mapping[str, bool | int | float | str] | None = None,
    shared: Mapping[str, OutputTarget] | None = None,
) -> bytes:
    """Serialize a ``ModelInferResponse``; every output's data goes in ``raw_output_contents``,
    except those in ``shared``, written to their shared memory (their raw content is empty).

    Returns the wire bytes rather than a message: the small header is serialized by protobuf
    and each output's data is appended as a length-delimited field straight from the array's
    memory, one copy in all (protobuf would copy each tensor twice, several times slower).
    """
    return b"".join(_response_chunks(response, parameters, shared))


def encode_stream_response(
    response: InferenceResponse,
    parameters: Mapping[str, bool | int | float | str] | None = None,
    shared: Mapping[str, OutputTarget] | None = None,
) -> bytes:
    """Serialize a ``ModelStreamInferResponse`` wrapping the response, as above."""
    chunks = _response_chunks(response, parameters, shared)
    size = sum(len(chunk) for chunk in chunks)
    return b"".join([_STREAM_INFER_RESPONSE_TAG, _varint(size), *chunks])


# Wire tags (field number << 3 | length-delimited): ModelInferResponse.raw_output_contents = 6,
# ModelStreamInferResponse.infer_response = 2.
_RAW_OUTPUT_TAG = bytes([6 << 3 | 2])
_STREAM_INFER_RESPONSE_TAG = bytes([2 << 3 | 2])


def _response_chunks(
    response: InferenceResponse,
    parameters: Mapping[str, bool | int | float | str] | None,
    shared: Mapping[str, OutputTarget] | None,
) -> list[bytes | memoryview]:
    raws: list[bytes | memoryview] = []
    outputs: list[tuple[str, str, tuple[int, ...]]] = []
    for name, value in response.outputs.items():
        target = shared.get(name) if shared else None
        if target is not None:
            written, shape = target.write(name, value)
            outputs.append((name, written.value, tuple(shape)))
            raws.append(b"")
            continue
        array = np.asarray(value)
        datatype = _datatype_of(array, name)
        outputs.append((name, datatype.value, array.shape))
        raws.append(wire_bytes(array, datatype))
    chunks = _header_chunks(response, parameters, outputs)
    for raw in raws:
        chunks.append(_RAW_OUTPUT_TAG + _varint(len(raw)))
        chunks.append(raw)
    return chunks


def _header_chunks(
    response: InferenceResponse,
    parameters: Mapping[str, bool | int | float | str] | None,
    outputs: list[tuple[str, str, tuple[int, ...]]],
) -> list[bytes | memoryview]:
    """The serialized ``ModelInferResponse`` fields before the raw outputs.

    The same bytes protobuf writes (fields in number order), put together from pieces
    serialized once and remembered: model and version (fields 1, 2), the parameters (4: a
    stream's ``triton_final_response`` on every response), the output descriptions (5); the
    id (3) is the one field written each time.
    """
    model = (response.model_name, response.model_version)
    prefix = _MODEL_FIELDS.get(model)
    if prefix is None:
        message = service_pb2.ModelInferResponse(model_name=model[0], model_version=model[1])
        prefix = _remember(_MODEL_FIELDS, model, message.SerializeToString())
    described = tuple(outputs)
    tail = _OUTPUT_FIELDS.get(described)
    if tail is None:
        message = service_pb2.ModelInferResponse()
        for name, datatype, shape in outputs:
            message.outputs.add(name=name, datatype=datatype, shape=shape)
        tail = _remember(_OUTPUT_FIELDS, described, message.SerializeToString())
    if response.parameters or parameters:
        tail = _parameter_fields({**response.parameters, **(parameters or {})}) + tail
    if not response.id:
        return [prefix, tail]
    id_bytes = response.id.encode()
    return [prefix, _ID_TAG + _varint(len(id_bytes)), id_bytes, tail]


def _parameter_fields(parameters: Mapping[str, bool | int | float | str]) -> bytes:
    """The ``parameters`` map of a ``ModelInferResponse``, serialized (remembered by keys,
    types and values: True, 1 and 1.0 are different parameters)."""
    key = tuple((name, type(value), value) for name, value in parameters.items())
    try:
        serialized = _PARAMETER_FIELDS.get(key)
        keep = True
    except TypeError:  # a value that cannot be a key: refused or written below, not kept
        serialized, keep = None, False
    if serialized is None:
        message = service_pb2.ModelInferResponse()
        for name, value in parameters.items():
            _set_parameter(message.parameters[name], name, value)
        serialized = message.SerializeToString()
        if keep:
            _remember(_PARAMETER_FIELDS, key, serialized)
    return serialized


_ID_TAG = bytes([3 << 3 | 2])  # ModelInferResponse.id
_MODEL_FIELDS: dict[tuple[str, str], bytes] = {}
_OUTPUT_FIELDS: dict[tuple[tuple[str, str, tuple[int, ...]], ...], bytes] = {}
_PARAMETER_FIELDS: dict[tuple[tuple[str, type, Any], ...], bytes] = {}
_REMEMBERED = 1024
"""Serialized header pieces kept per table; the oldest go first beyond this many."""


def _remember(table: dict[Any, bytes], key: Any, value: bytes) -> bytes:
    if len(table) >= _REMEMBERED:
        del table[next(iter(table))]
    table[key] = value
    return value


def _varint(value: int) -> bytes:
    out = bytearray()
    while value >= 0x80:
        out.append((value & 0x7F) | 0x80)
        value >>= 7
    out.append(value)
    return bytes(out)


def _datatype(name: str, tensor: str, request_id: str) -> DataType:
    found = _DATATYPES.get(name)
    if found is None:
        raise InvalidInput(
            f"{request_tag(request_id)}inference input '{tensor}' data-type is '<invalid>': "
            f"{name!r} is not a datatype of the KServe v2 protocol"
        )
    return found


def _shape(dims: Any, name: str, model: str, request_id: str) -> tuple[int, ...]:
    shape = tuple(dims)
    if any(d < 0 for d in shape):
        raise InvalidInput(
            f"{request_tag(request_id)}unexpected shape for input '{name}' for model "
            f"'{model}'. Got {dims_text(shape)}: dimensions must not be negative"
        )
    return shape


def _from_shared(
    tensor: Any,
    datatype: DataType,
    shape: tuple[int, ...],
    model: str,
    memory: SharedMemoryRegistry | None,
) -> np.ndarray:
    name = tensor.name
    if tensor.HasField("contents"):
        raise InvalidInput(
            f"input '{name}' of model '{model}' sets both 'contents' and "
            "'shared_memory_region'; use one or the other"
        )
    params = {key: parameter_value(p) for key, p in tensor.parameters.items()}
    ref = SharedMemoryRef.from_parameters(params)
    if memory is None or ref is None:
        raise InvalidInput(f"input '{name}': shared memory inputs are not supported here")
    return memory.read_input(name, datatype, shape, ref, model)


def _from_contents(
    contents: service_pb2.InferTensorContents,
    datatype: DataType,
    shape: tuple[int, ...],
    name: str,
    model: str,
    request_id: str,
) -> np.ndarray:
    field = _CONTENTS_FIELD.get(datatype)
    if field is None:
        raise InvalidInput(
            f"input '{name}': {datatype.value} data cannot be sent in 'contents'; "
            "use raw_input_contents"
        )
    used = [f.name for f, _ in contents.ListFields()]
    if any(other != field for other in used):
        raise InvalidInput(
            f"input '{name}' of datatype {datatype.value} expects '{field}', got {used}"
        )
    values = getattr(contents, field)
    count = math.prod(shape)
    if len(values) != count:
        if datatype is DataType.BYTES:
            raise InvalidInput(
                f"{request_tag(request_id)}expected {count} string elements for inference "
                f"input '{name}' for model '{model}', got {len(values)}"
            )
        itemsize = datatype.numpy_dtype.itemsize
        raise InvalidInput(
            byte_size_error(request_id, name, model, count * itemsize, len(values) * itemsize)
            + f" ({len(values)} values in '{field}' for shape {dims_text(shape)})"
        )
    if datatype is DataType.BYTES:
        array = np.empty(count, dtype=np.object_)
        array[:] = list(values)
        return array.reshape(shape)
    dtype = datatype.numpy_dtype
    wide = np.array(values, dtype=_WIDE[dtype.kind]) if count else np.empty(0, dtype)
    if wide.dtype != dtype:
        info = np.iinfo(dtype) if dtype.kind in "iu" else None
        if info is not None and count and (wide.min() < info.min or wide.max() > info.max):
            raise InvalidInput(
                f"input '{name}': values in '{field}' do not fit {datatype.value} "
                f"(range [{info.min}, {info.max}])"
            )
        wide = wide.astype(dtype)
    return wide.reshape(shape)


_WIDE = {"b": np.bool_, "i": np.int64, "u": np.uint64, "f": np.float64}


def _request_options(parameters: Any, model: str) -> dict[str, Any]:
    """Map Triton's request parameters to InferenceRequest fields and pass-through ones."""
    options: dict[str, Any] = {}
    passthrough: dict[str, Any] = {}
    for key, param in parameters.items():
        value = parameter_value(param)
        if key in RESERVED_PARAMETERS:
            reserved_option(options, key, value)
        elif key in _CLIENT_HINTS:
            continue
        elif value is not None:
            check_passthrough_key(key)
            passthrough[key] = value
    options.pop("binary_data_output", None)  # gRPC outputs are always binary
    if passthrough:
        options["parameters"] = passthrough
    return options


def _requested_outputs(outputs: Any) -> tuple[RequestedOutput, ...] | None:
    if not outputs:
        return None
    requested: list[RequestedOutput] = []
    for output in outputs:
        params = {key: parameter_value(p) for key, p in output.parameters.items()}
        if "classification" in params:
            raise InvalidInput(
                f"output '{output.name}': the classification extension is not supported by "
                "this server; request the raw output tensor instead"
            )
        SharedMemoryRef.from_parameters(params)  # refuses ill-typed values before the run
        if any(seen.name == output.name for seen in requested):
            continue  # asked twice: Triton 2.51 answers it once, as the first asked for it
        requested.append(RequestedOutput(output.name, params))
    return tuple(requested)


def _set_parameter(param: Any, key: str, value: Any) -> None:
    if isinstance(value, bool):
        param.bool_param = value
    elif isinstance(value, int):
        param.int64_param = value
    elif isinstance(value, float):
        param.double_param = value
    elif isinstance(value, str):
        param.string_param = value
    else:
        raise InternalError(f"response parameter '{key}' has unsupported value {value!r}")


def _datatype_of(array: np.ndarray, name: str) -> DataType:
    try:
        return DataType.from_numpy(array.dtype)
    except ValueError as exc:
        raise InternalError(f"output '{name}': {exc}") from exc
