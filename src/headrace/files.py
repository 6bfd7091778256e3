"""Files that are either whole or absent: write to a temporary name beside, fsync, rename.

Temporary names are ``.NAME.tmp-PID``, so a process that finds them after a crash (the offline
runner's resume) knows they are leftovers.
"""

from __future__ import annotations

import os
from collections.abc import Callable

__all__ = ["TEMP_MARK", "atomic_write", "atomic_write_bytes"]

TEMP_MARK = ".tmp-"


def atomic_write(path: str, write: Callable[[str], None]) -> None:
    """Call ``write(tmp)`` on a temporary name beside ``path``, fsync it, then rename."""
    directory = os.path.dirname(os.path.abspath(path))
    os.makedirs(directory, exist_ok=True)
    tmp = os.path.join(directory, f".{os.path.basename(path)}{TEMP_MARK}{os.getpid()}")
    try:
        write(tmp)
        with open(tmp, "rb+") as handle:
            os.fsync(handle.fileno())
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.remove(tmp)
        raise


def atomic_write_bytes(path: str, data: bytes) -> None:
    """Replace ``path`` with ``data`` atomically."""

    def write(tmp: str) -> None:
        with open(tmp, "wb") as handle:
            handle.write(data)

    atomic_write(path, write)
