"""Read, validate, auto-complete and write Triton model configurations (``config.pbtxt``).

The real ``ModelConfig`` protobuf (``tritonclient.grpc.model_config_pb2``) is the data model;
text goes through ``google.protobuf.text_format``. Errors are :class:`InvalidConfig` and name
the file, the field and the value.
"""

from __future__ import annotations

from typing import Any

from tritonclient.grpc import model_config_pb2

from headrace.types import TensorSpec

ModelConfig = model_config_pb2.ModelConfig

__all__ = [
    "ModelConfig",
    "config_from_json",
    "config_to_json",
    "format_config",
    "input_specs",
    "output_specs",
    "parse_config",
    "read_config",
    "validate_config",
    "write_config",
]


def parse_config(text: str, source: str = "<string>") -> ModelConfig:
    """Parse config.pbtxt text; a syntax error names ``source``, the line and the field."""
    raise NotImplementedError


def read_config(path: str) -> ModelConfig:
    """Read a config.pbtxt from a local path or an fsspec URL."""
    raise NotImplementedError


def format_config(config: ModelConfig) -> str:
    """The config.pbtxt text of ``config`` (round-trips through ``parse_config``)."""
    raise NotImplementedError


def write_config(config: ModelConfig, path: str) -> None:
    """Write config.pbtxt atomically to a local path or an fsspec URL."""
    raise NotImplementedError


def validate_config(config: ModelConfig, source: str = "") -> None:
    """Check a (completed) config; raise InvalidConfig naming source, field and value."""
    raise NotImplementedError


def config_to_json(config: ModelConfig) -> dict[str, Any]:
    """The JSON form Triton's ``v2/models/{m}/config`` endpoint returns."""
    raise NotImplementedError


def config_from_json(data: dict[str, Any]) -> ModelConfig:
    raise NotImplementedError


def input_specs(config: ModelConfig) -> list[TensorSpec]:
    raise NotImplementedError


def output_specs(config: ModelConfig) -> list[TensorSpec]:
    raise NotImplementedError
