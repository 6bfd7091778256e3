"""The JSON form of a ``ModelConfig``, as Triton renders it.

Triton's ``GET v2/models/{m}/config`` (and the ``model_config`` a python model receives) is
protobuf's JSON mapping with the original proto field names and every field without presence
printed (empty lists, empty maps, zeros, enum names). Protobuf writes 64-bit integers as
strings; Triton turns a fixed list of them back into numbers (``dims``, reshape ``shape``,
specific ``versions``, the batching delays, timeouts and priority levels, sequence state
``dims``, ensemble ``model_version``, warm-up ``dims``) and leaves the others as strings
(map keys, CUDA graph shapes, secondary device ids, initial-state dims). This module does the
same, so clients see the numbers they would see from Triton.
"""

from __future__ import annotations

from typing import Any, TypeAlias

from google.protobuf import json_format
from google.protobuf.descriptor import Descriptor
from tritonclient.grpc import model_config_pb2

from headrace.errors import InvalidConfig

__all__ = ["config_from_json", "config_to_json"]

ModelConfig: TypeAlias = model_config_pb2.ModelConfig


def config_to_json(config: ModelConfig) -> dict[str, Any]:
    """The JSON dict Triton's ``v2/models/{m}/config`` endpoint returns for ``config``."""
    if config.ByteSize() == 0:
        return {}  # Triton answers an empty body for an all-default configuration
    data: dict[str, Any] = json_format.MessageToDict(
        config,
        preserving_proto_field_name=True,
        always_print_fields_with_no_presence=True,
    )
    for io in (*data.get("input", ()), *data.get("output", ())):
        _int_list(io, "dims")
        _int_list(io.get("reshape"), "shape")
    _int_list(_at(data, "version_policy", "specific"), "versions")
    _fix_dynamic_batching(data.get("dynamic_batching"))
    _fix_sequence_batching(data.get("sequence_batching"))
    for step in _at(data, "ensemble_scheduling").get("step", ()):
        _int(step, "model_version")
    for warmup in data.get("model_warmup", ()):
        for warmup_input in warmup.get("inputs", {}).values():
            _int_list(warmup_input, "dims")
    return _in_declaration_order(data, config.DESCRIPTOR)


def config_from_json(data: dict[str, Any], source: str = "<json>") -> ModelConfig:
    """Parse Triton's JSON form (numbers or strings for 64-bit fields) into a ModelConfig."""
    if not isinstance(data, dict):
        raise InvalidConfig(
            f"a model configuration must be a JSON object, got {type(data).__name__}",
            source=source,
        )
    config = ModelConfig()
    try:
        json_format.ParseDict(data, config, ignore_unknown_fields=False)
    except json_format.ParseError as exc:
        # protobuf appends the list of available fields on later lines; keep the first.
        message = str(exc).splitlines()[0] if str(exc) else repr(exc)
        raise InvalidConfig(message, source=source) from exc
    return config


def _fix_dynamic_batching(batching: dict[str, Any] | None) -> None:
    if batching is None:
        return
    for name in ("max_queue_delay_microseconds", "priority_levels", "default_priority_level"):
        _int(batching, name)
    _int(batching.get("default_queue_policy"), "default_timeout_microseconds")
    for policy in batching.get("priority_queue_policy", {}).values():
        _int(policy, "default_timeout_microseconds")


def _fix_sequence_batching(sequence: dict[str, Any] | None) -> None:
    if sequence is None:
        return
    _int(sequence, "max_sequence_idle_microseconds")
    _int(sequence.get("oldest"), "max_queue_delay_microseconds")
    _int(sequence.get("direct"), "max_queue_delay_microseconds")
    for state in sequence.get("state", ()):
        _int_list(state, "dims")


def _in_declaration_order(data: dict[str, Any], message: Descriptor) -> dict[str, Any]:
    """Keys in .proto declaration order, as Triton's C++ printer writes them."""
    ordered: dict[str, Any] = {}
    for field in message.fields:
        if field.name not in data:
            continue
        value = data[field.name]
        inner = field.message_type
        if inner is not None and inner.GetOptions().map_entry:
            inner = inner.fields_by_name["value"].message_type
            if inner is not None:
                value = {key: _in_declaration_order(item, inner) for key, item in value.items()}
        elif inner is not None:
            if isinstance(value, list):
                value = [_in_declaration_order(item, inner) for item in value]
            else:
                value = _in_declaration_order(value, inner)
        ordered[field.name] = value
    return ordered


def _at(data: dict[str, Any], *keys: str) -> dict[str, Any]:
    """The nested object at ``keys``, or an empty dict when any level is missing."""
    for key in keys:
        data = data.get(key) or {}
    return data


def _int(obj: dict[str, Any] | None, key: str) -> None:
    if obj is not None and key in obj:
        obj[key] = int(obj[key])


def _int_list(obj: dict[str, Any] | None, key: str) -> None:
    if obj is not None and key in obj:
        obj[key] = [int(value) for value in obj[key]]
