"""Triton's generate extension: ``POST …/generate`` and ``…/generate_stream``, without aiohttp.

A generate request is one JSON object. Each key that names a model input becomes that input's
tensor; every other key becomes a request parameter (a bool, number or string); the reserved
key ``parameters`` holds more of the same, one level down. A string ``id`` at the top is also
the request id. A repeated key reads its first value each time; a repeated input is refused.
The answer is one JSON object per model response: each output by name (a scalar when it has
one element, else a flat list; BYTES as text), ``model_name``, ``model_version``, ``id`` when
the request had one, and any response parameters, keys sorted.

Rules as NVIDIA Triton 2.51 applies them (checked side by side by
``tests/integration/test_generate_vs_triton.py``):

- A value fills its input's shape (the model metadata's, batch dimension included): its
  element count is the length of the top-level list (1 for a scalar); every fixed dimension
  must divide it, the innermost variable dimension takes what is left and the others get 1.
  Nested lists are read in row-major order and must hold exactly that many values. Values
  keep their JSON kind: integers for integer inputs (wrapped to the width, as a C cast does),
  numbers for float inputs, booleans for BOOL, strings for BYTES; FP16 and BF16 are refused.
- ``/generate`` answers with exactly one response: a model that sends none or several (a
  decoupled one) gets an ``{"error": ...}`` body saying so instead.
- ``/generate_stream`` sends each response as a server-sent event ``data: {...}\\n\\n`` as the
  model sends it, an error response as ``data: {"error": ...}\\n\\n``, and ends after the final
  flag. The HTTP status goes out with the first event: 400 if that event is an error, else
  200, so an error later in the stream arrives under a 200.
- Errors found before the model runs (routing, parsing, validation) are plain JSON error
  bodies with the status table's code; an error response of the model is 400 whatever its
  code, as Triton 2.51 sends it.

Where Triton answers 500 for a malformed body (bad JSON, a value of the wrong JSON kind),
headrace answers 400, as its infer endpoint does for the same input. Triton's phrases are
kept at the start of messages, for clients that match on them.
"""

from __future__ import annotations

import json
import math
from collections.abc import AsyncGenerator, AsyncIterator, Iterable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np

from headrace.errors import HeadraceError, InvalidInput
from headrace.server.http.codec import datatype_of, json_data, json_dumps
from headrace.types import DataType, InferenceRequest, InferenceResponse, TensorSpec

if TYPE_CHECKING:
    from headrace.server.core import StreamedResponse
    from headrace.server.reports import ModelMetadata

__all__ = [
    "EXACTLY_ONE_RESPONSE",
    "GenerateChunk",
    "decode_generate_request",
    "encode_generate_response",
    "generate_chunks",
    "single_response",
    "sse_event",
]

EXACTLY_ONE_RESPONSE = (
    "generate expects model to produce exactly 1 response, use generate stream for model "
    "that generates various number of responses"
)
"""Triton's words for ``/generate`` on a model that sent no response or several."""

RESPONSE_ERROR_STATUS = 400
"""The status of an answer whose first response is an error (Triton 2.51: 400, any code)."""

_PARAMETERS = "parameters"
_ID = "id"
_SHOWN_CHARS = 60

# Triton's words for a JSON value of the wrong kind, by what the input holds.
_KIND_WORDS = {
    "b": "non-boolean as boolean",
    "u": "non-unsigned-integer as unsigned-integer",
    "i": "non-signed-integer as signed-integer",
    "f": "non-number as double",
    "O": "non-string as string",
}


class _Object(list[tuple[str, Any]]):
    """A JSON object as its (key, value) pairs, in order, repeated keys kept."""


@dataclass(frozen=True)
class GenerateChunk:
    """One JSON object of a generate answer: a response, or ``{"error": ...}``."""

    body: bytes
    error: bool


# --- requests ----------------------------------------------------------------------------


def decode_generate_request(
    model_name: str, model_version: str, body: bytes, metadata: ModelMetadata
) -> InferenceRequest:
    """The inference request a generate body asks for; InvalidInput names what is wrong."""
    document = _parse(body)
    decoder = _Decoder(metadata)
    request_id = ""
    for key, value in _as_read(document):
        if key == _PARAMETERS:
            decoder.take_parameters(value)
            continue
        if key == _ID and key not in decoder.specs:
            if not isinstance(value, str):
                raise InvalidInput(f"Unable to parse 'id': expected a string, got {_show(value)}")
            request_id = value
        decoder.take(key, value)
    return InferenceRequest(
        model_name=model_name,
        model_version=model_version,
        inputs=decoder.inputs,
        id=request_id,
        parameters=decoder.parameters,
    )


class _Decoder:
    """Sorts a generate request's keys into input tensors and parameters."""

    def __init__(self, metadata: ModelMetadata) -> None:
        self.metadata = metadata
        self.specs = {spec.name: spec for spec in metadata.inputs}
        self.inputs: dict[str, np.ndarray] = {}
        self.parameters: dict[str, bool | int | float | str] = {}

    def take(self, key: str, value: Any) -> None:
        spec = self.specs.get(key)
        if spec is None:
            self.parameters[key] = _parameter(key, value)
        elif key in self.inputs:
            raise InvalidInput(f"input '{key}' already exists in request")
        else:
            self.inputs[key] = _tensor(value, spec, self.metadata)

    def take_parameters(self, value: Any) -> None:
        """The reserved ``parameters`` object: its keys go where top-level keys would."""
        if _PARAMETERS in self.specs:
            raise InvalidInput(
                f"Keyword '{_PARAMETERS}' for nested schema also given as input tensor name"
            )
        if not isinstance(value, _Object):
            raise InvalidInput(
                f"Expected JSON object for keyword: '{_PARAMETERS}', got {_show(value)}"
            )
        try:
            for key, item in _as_read(value):
                self.take(key, item)
        except InvalidInput as exc:
            raise InvalidInput(f"Converting keyword: '{_PARAMETERS}': {exc.message}") from None


def _parse(body: bytes) -> _Object:
    try:
        document = json.loads(body, object_pairs_hook=_Object, parse_constant=_no_constant)
    except (ValueError, RecursionError) as exc:
        raise InvalidInput(f"failed to parse the request JSON: {exc}") from None
    if not isinstance(document, _Object):
        raise InvalidInput(f"the request JSON must be an object, got {_show(document)}")
    return document


def _as_read(pairs: _Object) -> list[tuple[str, Any]]:
    """The pairs as Triton reads them: it looks each key up by name, so every occurrence of a
    repeated key reads the first value (a repeated input is then refused, a repeated
    ``parameters`` object read twice)."""
    first: dict[str, Any] = {}
    for key, value in pairs:
        first.setdefault(key, value)
    return [(key, first[key]) for key, _ in pairs]


def _no_constant(name: str) -> Any:
    raise ValueError(f"{name} is not JSON")


def _parameter(key: str, value: Any) -> bool | int | float | str:
    if type(value) in (bool, int, float, str):
        return value  # type: ignore[no-any-return]
    raise InvalidInput(
        f"parameter '{key}' has invalid type. It should be either 'int', 'bool', or 'string'."
    )


def _tensor(value: Any, spec: TensorSpec, metadata: ModelMetadata) -> np.ndarray:
    name, model = spec.name, metadata.name
    count = len(value) if type(value) is list else 1
    shape = _fill_shape(count, spec.shape(metadata.batched))
    if shape is None:
        raise InvalidInput(
            f"The schema can not convert input '{name}' to tensor with proper shape: "
            f"{count} value(s) do not fill shape {list(spec.shape(metadata.batched))} "
            f"of model '{model}'"
        )
    leaves = _leaves(value)
    if len(leaves) != math.prod(shape):
        raise InvalidInput(
            f"Unable to parse 'data' of input '{name}': Shape does not match true shape of "
            f"'data' field: {len(leaves)} value(s) for shape {list(shape)}"
        )
    return _array(leaves, spec.datatype, name).reshape(shape)


def _fill_shape(count: int, dims: Iterable[int]) -> tuple[int, ...] | None:
    """``dims`` (-1 variable) filled to hold ``count`` elements, or None when they cannot."""
    shape = list(dims)
    if 0 in shape:
        return tuple(1 if d < 0 else d for d in shape) if count == 0 else None
    left = count
    for d in shape:
        if d > 0:
            if left % d:
                return None
            left //= d
    for i in reversed(range(len(shape))):
        if shape[i] < 0:
            shape[i], left = left, 1
    return tuple(shape) if left == 1 else None


def _leaves(value: Any) -> list[Any]:
    """The values of a scalar or (nested) list, in row-major order."""
    if type(value) is not list:
        return [value]
    if not any(type(item) is list for item in value):
        return value
    out: list[Any] = []
    stack = [iter(value)]
    while stack:
        for item in stack[-1]:
            if type(item) is list:
                stack.append(iter(item))
                break
            out.append(item)
        else:
            stack.pop()
    return out


def _array(leaves: list[Any], datatype: DataType, name: str) -> np.ndarray:
    """A flat array of ``datatype`` from JSON values of the matching kind."""
    if datatype in (DataType.FP16, DataType.BF16):
        raise InvalidInput(
            f"receiving {datatype.value} data via JSON is not supported. Please use the "
            f"binary data format for input {name}"
        )
    target = datatype.numpy_dtype
    kind = target.kind
    types = set(map(type, leaves))
    if kind == "O":
        _check_kinds(leaves, types, {str}, datatype, name)
        array = np.empty(len(leaves), dtype=np.object_)
        array[:] = [text.encode("utf-8") for text in leaves]
        return array
    if kind == "b":
        _check_kinds(leaves, types, {bool}, datatype, name)
        return np.array(leaves, dtype=target)
    wide: np.dtype
    if kind in "iu":
        _check_kinds(leaves, types, {int}, datatype, name)
        if kind == "u" and leaves and min(leaves) < 0:
            raise _wrong_kind(min(leaves), datatype, name)
        wide = np.dtype(np.uint64 if kind == "u" else np.int64)
    else:
        _check_kinds(leaves, types, {int, float}, datatype, name)
        wide = np.dtype(np.float64)
    try:
        array = np.array(leaves, dtype=wide)
    except OverflowError:
        raise InvalidInput(
            f"Unable to parse 'data' of input '{name}': a value is out of range for "
            f"{datatype.value}: {_show(max(leaves, key=abs))}"
        ) from None
    with np.errstate(over="ignore"):
        return array.astype(target)  # narrower integers wrap, as Triton's C casts do


def _check_kinds(
    leaves: list[Any], types: set[type], allowed: set[type], datatype: DataType, name: str
) -> None:
    if not types <= allowed:
        bad = next(value for value in leaves if type(value) not in allowed)
        raise _wrong_kind(bad, datatype, name)


def _wrong_kind(value: Any, datatype: DataType, name: str) -> InvalidInput:
    words = _KIND_WORDS[datatype.numpy_dtype.kind if datatype is not DataType.BYTES else "O"]
    return InvalidInput(
        f"Unable to parse 'data' of input '{name}': attempt to access JSON {words}; "
        f"{datatype.value} input got {_show(value)}"
    )


def _plain(value: Any) -> Any:
    if isinstance(value, _Object):
        return {key: _plain(item) for key, item in value}
    if isinstance(value, list):
        return [_plain(item) for item in value]
    return value


def _show(value: Any) -> str:
    """A value as JSON text, cut short for a message."""
    text = json.dumps(_plain(value), ensure_ascii=False)
    return text if len(text) <= _SHOWN_CHARS else text[: _SHOWN_CHARS - 3] + "..."


# --- responses ---------------------------------------------------------------------------


def encode_generate_response(response: InferenceResponse) -> bytes:
    """One response as a generate JSON object: outputs, names and parameters, keys sorted.

    When an output or parameter shares a name with another field, the first one (in the
    order id, model_name, model_version, parameters, outputs) wins, as in Triton.
    """
    fields: dict[str, Any] = {}
    if response.id:
        fields[_ID] = response.id
    fields["model_name"] = response.model_name
    fields["model_version"] = response.model_version
    for key, value in response.parameters.items():
        if type(value) not in (bool, int, float, str):
            raise InvalidInput(
                f"Response parameter '{key}' has a value of type {type(value).__name__}, "
                "which generate cannot send; use bool, int, float or str"
            )
        fields.setdefault(key, value)
    for name, value in response.outputs.items():
        array = np.asarray(value)
        data = json_data(array, datatype_of(array, name), name)
        fields.setdefault(name, data[0] if len(data) == 1 else data)
    return json_dumps({key: fields[key] for key in sorted(fields)})


def _error_body(message: str) -> bytes:
    return json_dumps({"error": message})


def _message(error: BaseException) -> str:
    return error.message if isinstance(error, HeadraceError) else str(error)


async def generate_chunks(
    responses: AsyncIterator[StreamedResponse],
) -> AsyncGenerator[GenerateChunk, None]:
    """One chunk per response or error response, in the order the model sent them.

    A final flag sent on its own adds none. Errors raised before the first response (routing,
    validation) propagate. Closing this generator closes ``responses``, which cancels the
    request when it has not finished.
    """
    try:
        async for sent in responses:
            if sent.error is not None:
                yield GenerateChunk(_error_body(_message(sent.error)), error=True)
            elif sent.response is not None:
                try:
                    body = encode_generate_response(sent.response)
                except HeadraceError as exc:
                    yield GenerateChunk(_error_body(exc.message), error=True)
                else:
                    yield GenerateChunk(body, error=False)
    finally:
        close = getattr(responses, "aclose", None)
        if close is not None:
            await close()


async def single_response(chunks: AsyncIterator[GenerateChunk]) -> tuple[int, bytes]:
    """``/generate``'s status and body: the one response, or an error when there are not one.

    The status is the first chunk's (400 for an error, else 200), as Triton sets it when the
    first response arrives; no chunk at all is 200.
    """
    first: GenerateChunk | None = None
    count = 0
    async for chunk in chunks:
        count += 1
        if first is None:
            first = chunk
    status = RESPONSE_ERROR_STATUS if first is not None and first.error else 200
    if first is None or count != 1:
        return status, _error_body(EXACTLY_ONE_RESPONSE)
    return status, first.body


def sse_event(chunk: GenerateChunk) -> bytes:
    """A chunk as one server-sent event (JSON text never holds a raw newline)."""
    return b"data: " + chunk.body + b"\n\n"
