"""Triton's rules for an ensemble checked against the models its steps run.

:func:`headrace.config.validate_config` checks one configuration alone (steps name models,
every output is computable, no tensor is left dangling). The rules here need the completed
configurations of the composing models too, as Triton checks them when it loads an
ensemble after its steps:

- the ensemble's ``max_batch_size`` is at most each batching step model's;
- every ``input_map`` key is an input of the step's model and every required input of that
  model is mapped; every ``output_map`` key is an output of the model;
- all the uses of one ensemble tensor agree: the same data type, and dims equal where
  neither is ``-1`` (compared with the batch dimension too, so a non-batching model's
  ``[-1, 4]`` meets a batching model's ``[4]``).

Each failure is an :class:`InvalidConfig` naming the step, its model and the tensor.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import NoReturn, TypeAlias

from tritonclient.grpc import model_config_pb2 as pb

from headrace.errors import InvalidConfig

__all__ = ["check_ensemble_steps", "dims_agree"]

ModelConfig: TypeAlias = pb.ModelConfig


def dims_agree(left: Sequence[int], right: Sequence[int]) -> bool:
    """Same rank and equal dims wherever neither side is ``-1``."""
    return len(left) == len(right) and all(
        a == b or a == -1 or b == -1 for a, b in zip(left, right)
    )


@dataclass(frozen=True)
class _Use:
    """One use of an ensemble tensor: who declares it, as what type and dims."""

    origin: str
    data_type: int
    dims: tuple[int, ...]
    batched: bool

    @property
    def shape(self) -> tuple[int, ...]:
        return (-1, *self.dims) if self.batched else self.dims

    def agrees(self, other: _Use) -> bool:
        return self.data_type == other.data_type and (
            dims_agree(self.dims, other.dims) or dims_agree(self.shape, other.shape)
        )

    def describe(self) -> str:
        return f"{pb.DataType.Name(self.data_type)} {list(self.shape)} ({self.origin})"


def check_ensemble_steps(
    config: ModelConfig, composing: Sequence[ModelConfig], source: str = ""
) -> None:
    """Check ``config`` against ``composing[i]``, the completed config of step ``i``'s model."""
    steps = config.ensemble_scheduling.step
    if len(composing) != len(steps):
        raise ValueError(f"{len(steps)} steps but {len(composing)} composing configurations")

    def fail(field: str, message: str) -> NoReturn:
        raise InvalidConfig(message, source=source, field=field)

    batched = config.max_batch_size > 0
    uses: dict[str, _Use] = {}

    def use(tensor: str, new: _Use, field: str) -> None:
        first = uses.setdefault(tensor, new)
        if not first.agrees(new):
            fail(
                field,
                f"ensemble tensor {tensor!r}: {new.describe()} does not match {first.describe()}",
            )

    ensemble = f"ensemble '{config.name}'"
    for kind, tensors in (("input", config.input), ("output", config.output)):
        for index, tensor in enumerate(tensors):
            dims = tensor.reshape.shape if tensor.HasField("reshape") else tensor.dims
            use(
                tensor.name,
                _Use(f"{kind} of {ensemble}", tensor.data_type, tuple(dims), batched),
                f"{kind}[{index}]",
            )
    for index, (step, model) in enumerate(zip(steps, composing)):
        path = f"ensemble_scheduling.step[{index}]"
        label = f"step {index} (model '{step.model_name}')"
        model_batched = model.max_batch_size > 0
        if model_batched and model.max_batch_size < config.max_batch_size:
            fail(
                "max_batch_size",
                f"{ensemble} allows batches of {config.max_batch_size} but {label} allows "
                f"only {model.max_batch_size}",
            )
        inputs = {tensor.name: tensor for tensor in model.input}
        for key in step.input_map:
            if key not in inputs:
                fail(f"{path}.input_map", f"{label} has no input {key!r} (inputs: {list(inputs)})")
        for name, tensor in inputs.items():
            if name not in step.input_map:
                if tensor.optional:
                    continue
                fail(f"{path}.input_map", f"input {name!r} of {label} is not mapped")
            origin = f"input {name!r} of {label}"
            use(
                step.input_map[name],
                _Use(origin, tensor.data_type, tuple(tensor.dims), model_batched),
                f"{path}.input_map[{name}]",
            )
        outputs = {tensor.name: tensor for tensor in model.output}
        for key, target in step.output_map.items():
            if key not in outputs:
                fail(
                    f"{path}.output_map",
                    f"{label} has no output {key!r} (outputs: {list(outputs)})",
                )
            tensor = outputs[key]
            use(
                target,
                _Use(
                    f"output {key!r} of {label}",
                    tensor.data_type,
                    tuple(tensor.dims),
                    model_batched,
                ),
                f"{path}.output_map[{key}]",
            )
