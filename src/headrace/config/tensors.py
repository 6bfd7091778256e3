"""Building a ``ModelConfig`` from Python and reading its tensors as :class:`TensorSpec`.

Tensor ``dims`` exclude the batch dimension, as in ``config.pbtxt``; data types convert
between headrace's :class:`~headrace.types.DataType` and the ``inference.DataType`` enum
(``BYTES`` is ``TYPE_STRING``).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Literal, TypeAlias

from tritonclient.grpc import model_config_pb2

from headrace.errors import InvalidConfig
from headrace.types import DataType, TensorSpec

__all__ = [
    "add_tensor",
    "batched",
    "config_datatype",
    "datatype_from_config",
    "input_specs",
    "model_dims",
    "new_config",
    "output_specs",
    "sequence_filled_inputs",
    "state_specs",
]

ModelConfig: TypeAlias = model_config_pb2.ModelConfig


def config_datatype(dt: DataType) -> int:
    """The ``inference.DataType`` enum value for ``dt`` (BYTES is ``TYPE_STRING``)."""
    return int(model_config_pb2.DataType.Value(dt.config_name))


def datatype_from_config(value: int) -> DataType:
    """The :class:`DataType` of a config enum value; TYPE_INVALID and unknowns are refused."""
    if value == model_config_pb2.TYPE_INVALID or value not in model_config_pb2.DataType.values():
        raise InvalidConfig(f"data type {value} is not a valid tensor data type")
    return DataType.from_name(model_config_pb2.DataType.Name(value))


def batched(config: ModelConfig) -> bool:
    """Whether the model takes a leading batch dimension (``max_batch_size > 0``)."""
    return config.max_batch_size > 0


def new_config(
    name: str, *, platform: str = "", backend: str = "", max_batch_size: int = 0
) -> ModelConfig:
    """A fresh configuration with the fields every model has."""
    return ModelConfig(name=name, platform=platform, backend=backend, max_batch_size=max_batch_size)


def add_tensor(
    config: ModelConfig,
    kind: Literal["input", "output"],
    name: str,
    datatype: DataType | str,
    dims: Sequence[int],
    *,
    optional: bool = False,
) -> model_config_pb2.ModelInput | model_config_pb2.ModelOutput:
    """Append an input or output; ``dims`` exclude the batch dimension. Returns the entry."""
    if kind not in ("input", "output"):
        raise InvalidConfig(f"tensor kind must be 'input' or 'output', got {kind!r}")
    if optional and kind == "output":
        raise InvalidConfig(f"output {name!r} cannot be optional; only inputs can")
    try:
        dt = datatype if isinstance(datatype, DataType) else DataType.from_name(datatype)
    except ValueError as exc:
        raise InvalidConfig(f"{kind} {name!r}: unknown data type {datatype!r}") from exc
    entry = config.input.add() if kind == "input" else config.output.add()
    entry.name = name
    entry.data_type = config_datatype(dt)  # type: ignore[assignment]
    entry.dims.extend(int(dim) for dim in dims)
    if optional:
        entry.optional = True  # type: ignore[union-attr]
    return entry


def model_dims(tensor: model_config_pb2.ModelInput | model_config_pb2.ModelOutput) -> list[int]:
    """A tensor's dims as the model sees them: its ``reshape`` when it has one, else ``dims``."""
    return list(tensor.reshape.shape if tensor.HasField("reshape") else tensor.dims)


def input_specs(config: ModelConfig) -> list[TensorSpec]:
    """The inputs as :class:`TensorSpec` (dims without the batch dimension)."""
    return [_spec(config, "input", index, entry) for index, entry in enumerate(config.input)]


def output_specs(config: ModelConfig) -> list[TensorSpec]:
    """The outputs as :class:`TensorSpec` (dims without the batch dimension)."""
    return [_spec(config, "output", index, entry) for index, entry in enumerate(config.output)]


def _spec(config: ModelConfig, kind: str, index: int, entry) -> TensorSpec:  # type: ignore[no-untyped-def]
    try:
        datatype = datatype_from_config(entry.data_type)
    except InvalidConfig as exc:
        raise InvalidConfig(
            f"{kind} {entry.name!r}: {exc.message}",
            source=config.name,
            field=f"{kind}[{index}].data_type",
        ) from exc
    optional = bool(getattr(entry, "optional", False))
    return TensorSpec(entry.name, datatype, tuple(int(d) for d in entry.dims), optional)


def state_specs(config: ModelConfig) -> tuple[list[TensorSpec], list[TensorSpec]]:
    """Implicit state (``sequence_batching.state``) as the tensors a backend sees: the state
    inputs it is fed and the state outputs it must return, beside the configured ones."""
    inputs: list[TensorSpec] = []
    outputs: list[TensorSpec] = []
    for state in config.sequence_batching.state:
        datatype = datatype_from_config(state.data_type)
        dims = tuple(int(d) for d in state.dims)
        inputs.append(TensorSpec(state.input_name, datatype, dims))
        outputs.append(TensorSpec(state.output_name, datatype, dims))
    return inputs, outputs


def sequence_filled_inputs(config: ModelConfig) -> frozenset[str]:
    """Inputs the sequence batcher fills (control inputs and state inputs), not clients."""
    settings = config.sequence_batching
    return frozenset(
        [control.name for control in settings.control_input]
        + [state.input_name for state in settings.state]
    )
