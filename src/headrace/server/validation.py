"""Request validation: everything a request can get wrong is caught before it is queued.

Runs on the hot path for every request, so the model's expectations are compiled once per
loaded version into a :class:`Signature` and each check is a dict lookup or a tuple compare.
Messages are Triton 2.51's words for the same mistake (clients match on them; see
docs/errors.md), with headrace's detail after them where Triton's words leave it out: those
Triton gives with the request's id keep its ``[request id: ...]`` prefix (:func:`request_tag`).

Inputs that a sequence batcher fills (``sequence_batching`` control inputs and implicit state
inputs) are never asked of clients, even where the configuration also lists them as inputs,
and a client that sends one is told so.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, replace
from typing import Any

import numpy as np

from headrace.config import input_specs, output_specs
from headrace.errors import InvalidInput, request_tag
from headrace.types import (
    BytesFramingError,
    DataType,
    InferenceRequest,
    TensorSpec,
    deserialize_bytes_tensor,
)

__all__ = [
    "Signature",
    "array_from_bytes",
    "byte_size_error",
    "bytes_framing_error",
    "dims_text",
    "request_tag",
    "shape_error",
    "validate_request",
]


@dataclass(frozen=True)
class Signature:
    """What one model version accepts, precomputed for fast checks."""

    model: str
    inputs: Mapping[str, TensorSpec]
    outputs: tuple[str, ...]
    max_batch_size: int
    required: frozenset[str]
    dtypes: Mapping[str, np.dtype]
    server_filled: frozenset[str] = frozenset()
    """Inputs the sequence batcher fills; a client must not send them."""

    @classmethod
    def build(
        cls,
        model: str,
        inputs: Iterable[TensorSpec],
        outputs: Iterable[TensorSpec],
        max_batch_size: int,
    ) -> Signature:
        specs = {spec.name: spec for spec in inputs}
        return cls(
            model=model,
            inputs=specs,
            outputs=tuple(spec.name for spec in outputs),
            max_batch_size=max_batch_size,
            required=frozenset(name for name, spec in specs.items() if not spec.optional),
            dtypes={name: spec.datatype.numpy_dtype for name, spec in specs.items()},
        )

    @classmethod
    def for_config(cls, model: str, config: Any) -> Signature:
        """The signature of a ``ModelConfig``: its inputs, less those the server fills."""
        settings = config.sequence_batching
        filled = frozenset(
            [control.name for control in settings.control_input]
            + [state.input_name for state in settings.state]
        )
        inputs = [spec for spec in input_specs(config) if spec.name not in filled]
        signature = cls.build(model, inputs, output_specs(config), int(config.max_batch_size))
        return replace(signature, server_filled=filled)

    @property
    def batched(self) -> bool:
        return self.max_batch_size > 0


_BATCH_NOTE = (
    " NOTE: Setting a non-zero max_batch_size in the model config requires a batch dimension "
    "to be prepended to each input shape. If you want to specify the full shape including the "
    "batch dim in your input dims config, try setting max_batch_size to zero. See the model "
    "configuration docs for more info on max_batch_size."
)


def dims_text(shape: Iterable[int]) -> str:
    """A shape as Triton writes it in messages: ``[-1,16]``."""
    return "[" + ",".join(str(int(d)) for d in shape) + "]"


def _names_text(names: Iterable[str]) -> str:
    return "[" + ",".join(f"'{name}'" for name in names) + "]"


def shape_error(
    request_id: str, name: str, model: str, expected: Any, got: Any, batched: bool
) -> str:
    """Triton's words for an input whose shape does not fit the model's."""
    return (
        f"{request_tag(request_id)}unexpected shape for input '{name}' for model '{model}'. "
        f"Expected {dims_text(expected)}, got {dims_text(got)}.{_BATCH_NOTE if batched else ''}"
    )


def byte_size_error(request_id: str, name: str, model: str, expected: int, got: int) -> str:
    """Triton's words for raw tensor bytes whose size does not fit the shape and datatype."""
    return (
        f"{request_tag(request_id)}input byte size mismatch for input '{name}' for model "
        f"'{model}'. Expected {expected}, got {got}"
    )


def bytes_framing_error(error: BytesFramingError, request_id: str, name: str, model: str) -> str:
    """Triton's words for a BYTES buffer that does not frame (see :class:`BytesFramingError`)."""
    if error.expected is not None:
        return (
            f"{request_tag(request_id)}expected {error.expected} string elements for inference "
            f"input '{name}' for model '{model}', got {error.count}"
        )
    what = "string length indicator" if error.length is None else "string data"
    length = "4 bytes" if error.length is None else f"string of length {error.length}"
    return (
        f"incomplete {what} for inference input '{name}', expecting {length} but only "
        f"{error.available} bytes available"
    )


def array_from_bytes(
    data: bytes | memoryview,
    datatype: DataType,
    shape: tuple[int, ...],
    name: str,
    model: str = "",
    request_id: str = "",
) -> np.ndarray:
    """Input ``name``'s bytes (a gRPC raw content, an HTTP binary input) as an array (numeric
    data: a read-only view of ``data``); :class:`InvalidInput` in Triton's words when its size
    or BYTES framing does not fit ``shape``."""
    if datatype is DataType.BYTES:
        try:
            return deserialize_bytes_tensor(data, shape)
        except BytesFramingError as exc:
            raise InvalidInput(bytes_framing_error(exc, request_id, name, model)) from exc
    dtype = datatype.numpy_dtype
    expected = math.prod(shape) * dtype.itemsize
    if len(data) != expected:
        raise InvalidInput(byte_size_error(request_id, name, model, expected, len(data)))
    return np.frombuffer(data, dtype=dtype).reshape(shape)


def validate_request(request: InferenceRequest, signature: Signature) -> None:
    """Raise :class:`InvalidInput` naming the first problem of ``request``; return if valid."""
    inputs = request.inputs
    _check_names(request, signature)
    batch_name = ""
    batch_size = -1
    for name, array in inputs.items():
        spec = signature.inputs[name]
        _check_dtype(request.id, name, array, spec, signature)
        shape = array.shape
        if not spec.accepts(shape, signature.batched):
            raise InvalidInput(
                shape_error(
                    request.id,
                    name,
                    signature.model,
                    spec.shape(signature.batched),
                    shape,
                    signature.batched,
                )
            )
        if signature.batched:
            size = shape[0]
            if batch_size < 0:
                batch_name, batch_size = name, size
            elif size != batch_size:
                raise InvalidInput(
                    f"inputs of model '{signature.model}' have differing batch sizes: "
                    f"'{batch_name}' has {batch_size}, '{name}' has {size}"
                )
    if signature.batched and batch_size >= 0:
        _check_batch_size(request.id, batch_name, batch_size, signature)
    if request.outputs is not None:
        _check_outputs(request, signature)


def _check_names(request: InferenceRequest, signature: Signature) -> None:
    inputs = request.inputs
    model = signature.model
    for name in inputs:
        if name in signature.server_filled:
            raise InvalidInput(
                f"input '{name}' of model '{model}' is a sequence control or state "
                "input, which the server fills; do not send it"
            )
    count, expected, required = len(inputs), len(signature.inputs), len(signature.required)
    if count > expected or count < required:
        missing = [
            name for name in signature.inputs if name in signature.required and name not in inputs
        ]
        unexpected = [name for name in inputs if name not in signature.inputs]
        if expected == required:
            counts = f"expected {expected} inputs but got {count} inputs for model '{model}'. "
        else:
            counts = (
                f"expected number of inputs between {required} and {expected} but got {count} "
                f"inputs for model '{model}'. "
            )
        got = f"Got input(s) {_names_text(inputs)}, but "
        if unexpected:
            why = (
                f"unexpected input(s) {_names_text(unexpected)}; the model's inputs are "
                f"{_names_text(signature.inputs)}"
            )
        else:
            why = (
                f"missing required input(s) {_names_text(missing)}. "
                "Please provide all required input(s)."
            )
        raise InvalidInput(f"{request_tag(request.id)}{counts}{got}{why}")
    for name in inputs:
        if name not in signature.inputs:
            raise InvalidInput(
                f"unexpected inference input '{name}' for model '{model}'; "
                f"the model's inputs are {_names_text(signature.inputs)}"
            )
    if not signature.required.issubset(inputs.keys()):
        missing = [
            name for name in signature.inputs if name in signature.required and name not in inputs
        ]
        raise InvalidInput(
            f"{request_tag(request.id)}missing required input(s) {_names_text(missing)} for "
            f"model '{model}'; got {_names_text(inputs)}"
        )


def _check_dtype(
    request_id: str, name: str, array: np.ndarray, spec: TensorSpec, signature: Signature
) -> None:
    if not isinstance(array, np.ndarray):
        raise InvalidInput(
            f"input '{name}' of model '{signature.model}' is a {type(array).__name__}, "
            "not a numpy array"
        )
    if array.dtype == signature.dtypes[name]:
        return
    try:
        got = DataType.from_numpy(array.dtype).value
    except ValueError:
        got = str(array.dtype)
    raise InvalidInput(
        f"{request_tag(request_id)}inference input '{name}' data-type is '{got}', but model "
        f"'{signature.model}' expects '{spec.datatype.value}'"
    )


def _check_batch_size(request_id: str, name: str, size: int, signature: Signature) -> None:
    if size == 0:
        raise InvalidInput(
            f"input '{name}' has batch size 0, model '{signature.model}' needs at least 1"
        )
    if size > signature.max_batch_size:
        raise InvalidInput(
            f"{request_tag(request_id)}inference request batch-size must be <= "
            f"{signature.max_batch_size} for '{signature.model}'; input '{name}' has {size}"
        )


def _check_outputs(request: InferenceRequest, signature: Signature) -> None:
    for output in request.outputs or ():
        if output.name not in signature.outputs:
            raise InvalidInput(
                f"unexpected inference output '{output.name}' for model '{signature.model}'; "
                f"the model's outputs are {_names_text(signature.outputs)}"
            )
