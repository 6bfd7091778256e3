"""Read, validate, auto-complete and write Triton model configurations (``config.pbtxt``).

The real ``ModelConfig`` protobuf (``tritonclient.grpc.model_config_pb2``) is the data model;
errors are :class:`~headrace.errors.InvalidConfig` and name the file, the field and the value.
One concern per module, the public names re-exported here so callers import one module:

| module         | holds                                                                  |
| -------------- | ---------------------------------------------------------------------- |
| ``text``       | the ``config.pbtxt`` text form: parse, read, format, write              |
| ``tensors``    | building a configuration from Python; its tensors as ``TensorSpec``    |
| ``defaults``   | Triton's own defaults: platform/backend, instance groups, batching     |
| ``validate``   | Triton's rules, checked before a model loads                           |
| ``json_form``  | the JSON form Triton's ``v2/models/{m}/config`` returns                |
| ``platforms``  | the one table of backends: platforms, model files, implementations     |
"""

from __future__ import annotations

from tritonclient.grpc import model_config_pb2  # noqa: F401  (kept as an attribute: hc.model_config_pb2)

from headrace.config.defaults import fill_defaults, platform_backend
from headrace.config.json_form import config_from_json, config_to_json
from headrace.config.tensors import (
    ModelConfig,
    add_tensor,
    batched,
    config_datatype,
    datatype_from_config,
    input_specs,
    model_dims,
    new_config,
    output_specs,
    sequence_filled_inputs,
    state_specs,
)
from headrace.config.text import format_config, parse_config, read_config, write_config
from headrace.config.validate import validate_config
from headrace.devices import available_gpus

__all__ = [
    "ModelConfig",
    "add_tensor",
    "available_gpus",
    "batched",
    "config_datatype",
    "config_from_json",
    "config_to_json",
    "datatype_from_config",
    "fill_defaults",
    "format_config",
    "input_specs",
    "model_dims",
    "new_config",
    "output_specs",
    "parse_config",
    "platform_backend",
    "read_config",
    "sequence_filled_inputs",
    "state_specs",
    "validate_config",
    "write_config",
]
