"""Read, validate, auto-complete and write Triton model configurations (``config.pbtxt``).

The real ``ModelConfig`` protobuf (``tritonclient.grpc.model_config_pb2``) is the data model;
text goes through ``google.protobuf.text_format``. Errors are :class:`InvalidConfig` and name
the file, the field and the value. Validation lives in :mod:`headrace.config_validate`,
Triton's defaults in :mod:`headrace.config_defaults` and the JSON form in
:mod:`headrace.config_json`; they are re-exported here so callers import one module.
"""

from __future__ import annotations

import os
import re
from collections.abc import Sequence
from typing import Literal, TypeAlias

from google.protobuf import text_format
from tritonclient.grpc import model_config_pb2

from headrace.config_defaults import available_gpus, fill_defaults, platform_backend
from headrace.config_json import config_from_json, config_to_json
from headrace.config_validate import validate_config
from headrace.errors import InvalidConfig
from headrace.files import atomic_write_bytes
from headrace.types import DataType, TensorSpec

ModelConfig: TypeAlias = model_config_pb2.ModelConfig

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
    "new_config",
    "output_specs",
    "parse_config",
    "platform_backend",
    "read_config",
    "validate_config",
    "write_config",
]

# protobuf's ParseError text is "LINE:COL : 'source line': detail"; these turn the common
# details into messages that name the field the way a config author wrote it.
_POSITION = re.compile(r"^\d+:\d+ : (?:'(?P<line>.*?)': )?(?P<detail>.*)$", re.DOTALL)
_REWRITES = (
    (
        re.compile(r'Message type "([\w.]+)" has no field named "(\w+)"'),
        r"unknown field '\2' in \1",
    ),
    (
        re.compile(r'Enum type "([\w.]+)" has no value named (\w+)'),
        r"unknown value '\2' for enum \1",
    ),
    (
        re.compile(r'Field "(\w+)" is specified along with field "(\w+)", another member of oneof'),
        r"'\1' and '\2' cannot both be set: they are alternatives (oneof)",
    ),
    (
        re.compile(r'Message type "([\w.]+)" should not have multiple "(\w+)" fields'),
        r"field '\2' is given more than once in \1",
    ),
)


def parse_config(text: str, source: str = "<string>") -> ModelConfig:
    """Parse config.pbtxt text; a syntax error names ``source``, the line and the field."""
    config = ModelConfig()
    try:
        text_format.Parse(text, config)
    except text_format.ParseError as exc:
        raise _syntax_error(exc, source) from exc
    return config


def _syntax_error(exc: text_format.ParseError, source: str) -> InvalidConfig:
    parsed = _POSITION.match(str(exc))
    detail = (parsed.group("detail") if parsed else str(exc)).rstrip(".")
    for pattern, replacement in _REWRITES:
        match = pattern.search(detail)
        if match:
            detail = match.expand(replacement)
            break
    if parsed and parsed.group("line"):
        detail = f"{detail} (in {parsed.group('line').strip()!r})"
    line, column = exc.GetLine(), exc.GetColumn()
    where = f"line {line}, column {column}" if line is not None else ""
    return InvalidConfig(detail, source=source, field=where)


def read_config(path: str) -> ModelConfig:
    """Read a config.pbtxt from a local path or an fsspec URL."""
    import fsspec

    try:
        with fsspec.open(path, "rb") as handle:
            data = handle.read()
    except FileNotFoundError as exc:
        raise InvalidConfig("configuration file not found", source=path) from exc
    except OSError as exc:
        raise InvalidConfig(f"cannot read configuration: {exc}", source=path) from exc
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise InvalidConfig(f"not UTF-8 text: {exc}", source=path) from exc
    return parse_config(text, source=path)


def format_config(config: ModelConfig) -> str:
    """The config.pbtxt text of ``config`` (round-trips through ``parse_config``)."""
    return str(text_format.MessageToString(config))


def write_config(config: ModelConfig, path: str) -> None:
    """Write config.pbtxt atomically to a local path or an fsspec URL.

    Local files are written to a temporary file in the same directory and renamed over the
    target, so a reader never sees half a configuration. Remote stores get the whole file in
    one put, which object stores make visible atomically.
    """
    from fsspec.core import url_to_fs
    from fsspec.implementations.local import LocalFileSystem

    data = format_config(config).encode("utf-8")
    fs, target = url_to_fs(path)
    parent = os.path.dirname(target)
    try:
        if isinstance(fs, LocalFileSystem):
            atomic_write_bytes(target, data)
        else:
            if parent:
                fs.makedirs(parent, exist_ok=True)
            fs.pipe_file(target, data)
    except OSError as exc:
        raise InvalidConfig(f"cannot write configuration: {exc}", source=path) from exc


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
