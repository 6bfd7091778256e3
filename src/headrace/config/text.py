"""The text form of a ``ModelConfig`` (``config.pbtxt``): parse, read, format and write.

The real ``ModelConfig`` protobuf (``tritonclient.grpc.model_config_pb2``) is the data model;
text goes through ``google.protobuf.text_format``. A syntax error is an
:class:`~headrace.errors.InvalidConfig` naming the file, the line and the field the way a
config author wrote it. Local paths and fsspec URLs both work.
"""

from __future__ import annotations

import os
import re
from typing import TypeAlias

from google.protobuf import text_format
from tritonclient.grpc import model_config_pb2

from headrace.errors import InvalidConfig
from headrace.files import atomic_write_bytes

__all__ = ["format_config", "parse_config", "read_config", "write_config"]

ModelConfig: TypeAlias = model_config_pb2.ModelConfig

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
