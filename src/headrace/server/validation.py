"""Request validation: everything a request can get wrong is caught before it is queued.

Runs on the hot path for every request, so the model's expectations are compiled once per
loaded version into a :class:`Signature` and each check is a dict lookup or a tuple compare.
Messages name the offending value and what the model expects, e.g.
``input 'x' has shape [3, 5], model 'mlp' expects [-1, 64]``.

Inputs that a sequence batcher fills (``sequence_batching`` control inputs and implicit state
inputs) are never asked of clients, even where the configuration also lists them as inputs,
and a client that sends one is told so.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, replace
from typing import Any

import numpy as np

from headrace.config import input_specs, output_specs
from headrace.errors import InvalidInput
from headrace.types import DataType, InferenceRequest, TensorSpec

__all__ = ["Signature", "validate_request"]


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


def validate_request(request: InferenceRequest, signature: Signature) -> None:
    """Raise :class:`InvalidInput` naming the first problem of ``request``; return if valid."""
    inputs = request.inputs
    _check_names(inputs, signature)
    batch_name = ""
    batch_size = -1
    for name, array in inputs.items():
        spec = signature.inputs[name]
        _check_dtype(name, array, spec, signature)
        shape = array.shape
        if not spec.accepts(shape, signature.batched):
            raise InvalidInput(
                f"input '{name}' has shape {list(shape)}, model '{signature.model}' "
                f"expects {list(spec.shape(signature.batched))}"
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
        _check_batch_size(batch_name, batch_size, signature)
    if request.outputs is not None:
        _check_outputs(request, signature)


def _check_names(inputs: Mapping[str, np.ndarray], signature: Signature) -> None:
    for name in inputs:
        if name in signature.server_filled:
            raise InvalidInput(
                f"input '{name}' of model '{signature.model}' is a sequence control or state "
                "input, which the server fills; do not send it"
            )
        if name not in signature.inputs:
            raise InvalidInput(
                f"unexpected input '{name}' for model '{signature.model}'; "
                f"it expects {sorted(signature.inputs)}"
            )
    if not signature.required.issubset(inputs.keys()):
        missing = sorted(signature.required.difference(inputs.keys()))
        raise InvalidInput(
            f"model '{signature.model}' is missing required input(s) {missing}; "
            f"got {sorted(inputs)}"
        )


def _check_dtype(name: str, array: np.ndarray, spec: TensorSpec, signature: Signature) -> None:
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
        f"input '{name}' has datatype {got}, model '{signature.model}' "
        f"expects {spec.datatype.value}"
    )


def _check_batch_size(name: str, size: int, signature: Signature) -> None:
    if size == 0:
        raise InvalidInput(
            f"input '{name}' has batch size 0, model '{signature.model}' needs at least 1"
        )
    if size > signature.max_batch_size:
        raise InvalidInput(
            f"input '{name}' has batch size {size}, model '{signature.model}' accepts at most "
            f"{signature.max_batch_size}"
        )


def _check_outputs(request: InferenceRequest, signature: Signature) -> None:
    for output in request.outputs or ():
        if output.name not in signature.outputs:
            raise InvalidInput(
                f"unknown output '{output.name}' requested from model '{signature.model}'; "
                f"it has {list(signature.outputs)}"
            )
