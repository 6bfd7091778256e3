"""System (POSIX) shared memory regions: ``shm_open`` keys mapped into the server.

A client creates ``/dev/shm/KEY`` (``tritonclient.utils.shared_memory`` does), and registers
``byte_size`` bytes of it at ``offset``. The server maps that window once, at registration.
Inputs are read as read-only numpy views of the mapping (zero-copy); outputs are copied in.

The mapping is never closed by hand: numpy views of it keep it alive, so a region unregistered
while requests still use it stays mapped until the last of them lets go, and nothing in flight
reads unmapped memory. CPython unmaps it as soon as that last reference goes.
"""

from __future__ import annotations

import mmap
import os
from dataclasses import dataclass

import numpy as np

from headrace.errors import InternalError, InvalidInput

__all__ = ["SHM_DIRECTORY", "SystemRegion"]

SHM_DIRECTORY = "/dev/shm"  # noqa: S108 - where shm_open names live, not a temp file
"""Where Linux keeps POSIX shared memory objects; ``shm_open(KEY)`` opens ``/dev/shm/KEY``."""


@dataclass(frozen=True, eq=False)
class SystemRegion:
    """A registered window of a POSIX shared memory object, mapped read-write."""

    name: str
    key: str
    offset: int
    byte_size: int
    _map: mmap.mmap

    kind = "system"

    @classmethod
    def open(cls, name: str, key: str, offset: int, byte_size: int) -> SystemRegion:
        """Map ``byte_size`` bytes at ``offset`` of the object ``key``.

        Raises :class:`InvalidInput` when the key names no shared memory object (or names
        something that is not one) and when the window is empty or runs past its end.
        """
        path = _path_of(key)
        try:
            fd = os.open(path, os.O_RDWR)
        except OSError as exc:
            reason = exc.strerror or type(exc).__name__
            # INTERNAL (HTTP 500), as Triton answers a key it cannot open.
            raise InternalError(f"Unable to open shared memory region: '{key}' ({reason})") from exc
        try:
            size = os.fstat(fd).st_size
            if byte_size <= 0:
                raise InvalidInput(
                    f"failed to register shared memory region '{name}': byte_size must be "
                    f"positive, got {byte_size}"
                )
            if offset + byte_size > size:
                raise InvalidInput(
                    f"failed to register shared memory region '{name}': offset {offset} + "
                    f"byte_size {byte_size} runs past the end of '{key}' ({size} bytes)"
                )
            mapped = mmap.mmap(fd, offset + byte_size, access=mmap.ACCESS_WRITE)
        finally:
            os.close(fd)
        return cls(name, key, offset, byte_size, mapped)

    def read(self, offset: int, byte_size: int) -> np.ndarray:
        """A read-only uint8 view of ``byte_size`` bytes at ``offset`` of the window."""
        view = np.frombuffer(self._map, np.uint8, byte_size, self.offset + offset)
        view.flags.writeable = False
        return view

    def write(self, offset: int, data: np.ndarray) -> None:
        """Copy ``data`` (a flat uint8 array) to ``offset`` of the window."""
        target = np.frombuffer(self._map, np.uint8, data.size, self.offset + offset)
        np.copyto(target, data)  # copyto handles a source that overlaps the target


def _path_of(key: str) -> str:
    """``/dev/shm/NAME`` for ``key`` as ``shm_open`` reads it (leading slashes dropped)."""
    name = key.lstrip("/")
    if not name or "/" in name or name in (".", ".."):
        raise InvalidInput(
            f"Unable to open shared memory region: '{key}' (a key is one name, such as "
            "'/input0', with no '/' after its first character)"
        )
    return os.path.join(SHM_DIRECTORY, name)
