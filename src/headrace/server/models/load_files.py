"""The ``file:<path>`` overrides of a load request, checked before any byte is written.

A load request may carry a model's files (Triton's model repository extension). They are
written only inside a fresh private directory for that model, so each path must be a plain
relative one: no absolute path, no ``..``, no empty or ``.`` segment, no backslash or control
character, not too long or too deep. Counts and sizes are bounded, and every error names the offending key in
a clear sentence (never an ``OSError: File name too long`` from deep inside ``open``). The
files are created with ``O_EXCL | O_NOFOLLOW`` in directories this module made, so nothing can
be written through a symbolic link either.
"""

from __future__ import annotations

import os
from collections.abc import Mapping

from headrace.errors import InvalidInput

__all__ = [
    "MAX_LOAD_BYTES",
    "MAX_LOAD_FILES",
    "MAX_PATH_CHARS",
    "MAX_PATH_DEPTH",
    "MAX_SEGMENT_CHARS",
    "check_files",
    "check_model_name",
    "write_files",
]

MAX_LOAD_FILES = 256
"""Files one load request may carry."""
MAX_LOAD_BYTES = 1 << 30
"""Bytes one load request's files may hold together (1 GiB)."""
MAX_PATH_CHARS = 1024
"""Characters of one file's path below the model directory."""
MAX_SEGMENT_CHARS = 255
"""Characters of one segment of that path (a Linux file name's limit)."""
MAX_PATH_DEPTH = 16
"""Segments of one file's path."""
_FORBIDDEN = ("\\", "\x00")


def check_model_name(name: str) -> None:
    """A model name usable as one directory name (a load with files writes one)."""
    if not name or name in (".", "..") or "/" in name or any(c in name for c in _FORBIDDEN):
        raise InvalidInput(
            f"model name {name!r} cannot name a model directory: it must be one path segment"
        )
    if len(name.encode("utf-8")) > MAX_SEGMENT_CHARS:
        raise InvalidInput(
            f"model name of {len(name)} characters is too long for a model directory "
            f"(at most {MAX_SEGMENT_CHARS} bytes)"
        )


def check_files(name: str, files: Mapping[str, bytes]) -> list[tuple[list[str], bytes]]:
    """Each file's path segments and bytes; raises :class:`InvalidInput` naming the key."""
    check_model_name(name)
    if len(files) > MAX_LOAD_FILES:
        raise InvalidInput(
            f"load request of model '{name}' carries {len(files)} files; at most "
            f"{MAX_LOAD_FILES} are accepted"
        )
    total = sum(len(data) for data in files.values())
    if total > MAX_LOAD_BYTES:
        raise InvalidInput(
            f"load request of model '{name}' carries {total} bytes of files; at most "
            f"{MAX_LOAD_BYTES} are accepted"
        )
    checked: list[tuple[list[str], bytes]] = []
    seen: set[tuple[str, ...]] = set()
    for key, data in files.items():
        parts = _segments(name, key)
        if tuple(parts) in seen:
            raise InvalidInput(f"load file '{_shown(key)}' of model '{name}' is given twice")
        seen.add(tuple(parts))
        checked.append((parts, data))
    _no_file_below_a_file(name, seen)
    return checked


def _shown(key: str) -> str:
    """The key as an error shows it: long ones cut, so the message stays readable."""
    return key if len(key) <= 80 else f"{key[:60]}…({len(key)} characters)"


def _segments(name: str, key: str) -> list[str]:
    relative = key.removeprefix("file:")
    where = f"load file '{_shown(key)}' of model '{name}'"
    if not relative:
        raise InvalidInput(
            f"{where} names no file: expected 'file:<path>' such as 'file:1/model.onnx'"
        )
    if len(relative) > MAX_PATH_CHARS:
        raise InvalidInput(f"{where}: the path is longer than {MAX_PATH_CHARS} characters")
    if any(c in relative for c in _FORBIDDEN) or any(ord(c) < 32 for c in relative):
        raise InvalidInput(f"{where}: the path holds a backslash or a control character")
    if relative.startswith("/"):
        raise InvalidInput(
            f"{where} is an absolute path; paths are relative to the model directory"
        )
    parts = relative.split("/")
    if len(parts) > MAX_PATH_DEPTH:
        raise InvalidInput(f"{where}: the path is deeper than {MAX_PATH_DEPTH} directories")
    for part in parts:
        if part in ("", ".", ".."):
            raise InvalidInput(
                f"{where} escapes or leaves the model directory: segment {part!r} is not allowed"
            )
        if len(part.encode("utf-8")) > MAX_SEGMENT_CHARS:
            raise InvalidInput(f"{where}: a path segment is longer than {MAX_SEGMENT_CHARS} bytes")
    return parts


def _no_file_below_a_file(name: str, paths: set[tuple[str, ...]]) -> None:
    for path in paths:
        for depth in range(1, len(path)):
            if path[:depth] in paths:
                raise InvalidInput(
                    f"load file 'file:{'/'.join(path)}' of model '{name}' lies below the file "
                    f"'file:{'/'.join(path[:depth])}'"
                )


def write_files(model_dir: str, files: list[tuple[list[str], bytes]]) -> None:
    """Write checked files under ``model_dir`` (a directory this process just made), never
    following a symbolic link and never replacing a file."""
    flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_NOFOLLOW", 0)
    for parts, data in files:
        directory = model_dir
        for part in parts[:-1]:
            directory = os.path.join(directory, part)
            if not os.path.lexists(directory):
                os.mkdir(directory, 0o700)
        fd = os.open(os.path.join(directory, parts[-1]), flags, 0o600)
        with os.fdopen(fd, "wb") as handle:
            handle.write(data)
