"""Small helpers the backends share for reading and completing a ``ModelConfig``.

They work on the protobuf directly so that backends do not depend on the rest of
``headrace.config`` while it grows.
"""

from __future__ import annotations

import os
from typing import Any

from tritonclient.grpc import model_config_pb2

from headrace.backends.base import BackendContext
from headrace.errors import InvalidConfig
from headrace.types import DataType, TensorSpec

__all__ = [
    "DEFAULT_MAX_BATCH_SIZE",
    "add_tensor",
    "enable_default_batcher",
    "int_parameter",
    "model_file",
    "parameter",
    "tensor_datatype",
    "tensor_specs",
]

#: The max_batch_size auto-completion gives a model that can batch, as Triton's
#: ``--backend-config=default-max-batch-size`` default does.
DEFAULT_MAX_BATCH_SIZE = 4


def tensor_datatype(tensor: Any) -> DataType | None:
    """The DataType of a ModelInput/ModelOutput, or None while it is TYPE_INVALID."""
    if tensor.data_type == model_config_pb2.TYPE_INVALID:
        return None
    return DataType.from_name(model_config_pb2.DataType.Name(tensor.data_type))


def tensor_specs(tensors: Any) -> list[TensorSpec]:
    """TensorSpecs of a repeated ModelInput/ModelOutput field; a missing data_type is an error."""
    specs = []
    for tensor in tensors:
        dtype = tensor_datatype(tensor)
        if dtype is None:
            raise InvalidConfig(f"tensor '{tensor.name}' has no data_type", field="data_type")
        specs.append(
            TensorSpec(tensor.name, dtype, tuple(tensor.dims), getattr(tensor, "optional", False))
        )
    return specs


def add_tensor(repeated: Any, name: str, dtype: DataType, dims: tuple[int, ...]) -> None:
    """Append an input or output to ``config.input`` / ``config.output``."""
    tensor = repeated.add()
    tensor.name = name
    tensor.data_type = model_config_pb2.DataType.Value(dtype.config_name)
    tensor.dims.extend(dims)


def enable_default_batcher(config: model_config_pb2.ModelConfig) -> None:
    """Turn on ``dynamic_batching {}`` when a batching model has no scheduler, as Triton does."""
    if config.max_batch_size > 0 and config.WhichOneof("scheduling_choice") is None:
        config.dynamic_batching.SetInParent()


def parameter(config: model_config_pb2.ModelConfig, key: str, default: str = "") -> str:
    """A ``parameters { key: … value: { string_value: … } }`` entry, or ``default``."""
    if key in config.parameters:
        return str(config.parameters[key].string_value)
    return default


def int_parameter(config: model_config_pb2.ModelConfig, key: str, default: int) -> int:
    """An integer parameter; a non-integer value is an InvalidConfig naming key and value."""
    text = parameter(config, key, "").strip()
    if not text:
        return default
    try:
        return int(text)
    except ValueError:
        raise InvalidConfig(
            f"parameter '{key}' must be an integer, got {text!r}", field="parameters"
        ) from None


def model_file(context: BackendContext, default_filename: str) -> str:
    """The model file of a version: ``default_model_filename`` or the backend's default name."""
    filename = context.config.default_model_filename or default_filename
    return os.path.join(context.version_dir, filename)
