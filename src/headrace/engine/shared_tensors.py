"""Tensors between the server and a model's worker process, through shared memory.

Both kinds of buffer are anonymous files (``memfd``) that both processes map; the server hands
them to the worker over its pipe as file descriptors, so no name is left in ``/dev/shm`` when
either process dies.

- The **input arena** (server → worker): the server writes one batch's input tensors at a time
  (a worker runs one batch at a time) and the worker reads them in place. A batch that does
  not fit gets a new, larger arena.
- The **output ring** (worker → server): the worker writes every tensor it sends (a batch's
  results, and the responses a decoupled model sends from its own threads) into a ring, then
  sends the message that describes them. The server copies each message's tensors out as it
  reads the message and advances the ring's read mark (the first 8 bytes of the ring), which
  frees the space. Messages are read in the order they were written, so one mark suffices.

Only descriptions (:class:`TensorRef`: offset, dtype, shape) travel through the pipe. Arrays of
Python objects (BYTES tensors) have no fixed layout and travel pickled, in the message itself.
"""

from __future__ import annotations

import mmap
import os
import tempfile
import threading
import time
from collections.abc import Mapping
from typing import NamedTuple

import numpy as np

from headrace.errors import Unavailable

__all__ = [
    "ALIGNMENT",
    "OutputRing",
    "Packed",
    "SharedBuffer",
    "TensorRef",
    "pack",
    "packed_size",
    "unpack",
]

ALIGNMENT = 64
_HEADER = ALIGNMENT  # the ring's read mark lives in its first cache line


class TensorRef(NamedTuple):
    """Where one tensor lies in a shared buffer (a tuple: it is pickled on every message)."""

    offset: int
    dtype: str
    shape: tuple[int, ...]


Packed = dict[str, "TensorRef | np.ndarray"]
"""Tensors as they travel: a reference into shared memory, or (object arrays) the array."""


class SharedBuffer:
    """An anonymous shared file mapped into this process (made here, or received as ``fd``)."""

    def __init__(self, size: int, fd: int | None = None) -> None:
        self.size = size
        self.fd = _anonymous_file(size) if fd is None else fd
        self._map = mmap.mmap(self.fd, size)
        self.bytes = np.frombuffer(self._map, dtype=np.uint8)

    def view(self, ref: TensorRef) -> np.ndarray:
        return np.ndarray(ref.shape, dtype=ref.dtype, buffer=self._map, offset=ref.offset)

    def close(self) -> None:
        """Unmap and close; arrays still viewing the buffer keep the mapping alive."""
        self.bytes = np.empty(0, dtype=np.uint8)
        try:
            self._map.close()
        except BufferError:
            pass  # views are still alive; the mapping goes with the last of them
        try:
            os.close(self.fd)
        except OSError:
            pass


def _anonymous_file(size: int) -> int:
    if hasattr(os, "memfd_create"):
        fd = os.memfd_create("headrace-tensors", os.MFD_CLOEXEC)
    else:  # pragma: no cover - platforms without memfd: an unlinked temporary file
        # An unlinked file in shared memory, not a named temporary path: nothing to guess.
        directory = "/dev/shm" if os.path.isdir("/dev/shm") else None  # noqa: S108
        with tempfile.TemporaryFile(dir=directory) as handle:
            fd = os.dup(handle.fileno())
    os.ftruncate(fd, size)
    return fd


def _aligned(size: int) -> int:
    return (size + ALIGNMENT - 1) // ALIGNMENT * ALIGNMENT


def _inline(array: np.ndarray) -> bool:
    return array.dtype.hasobject


def packed_size(arrays: Mapping[str, np.ndarray]) -> int:
    """Bytes of shared memory ``arrays`` take when packed (object arrays take none)."""
    return sum(_aligned(a.nbytes) for a in arrays.values() if not _inline(a))


def pack(arrays: Mapping[str, np.ndarray], buffer: SharedBuffer, offset: int) -> Packed:
    """Copy ``arrays`` into ``buffer`` from ``offset`` on; object arrays stay as they are."""
    packed: Packed = {}
    for name, array in arrays.items():
        if _inline(array):
            packed[name] = array
            continue
        ref = TensorRef(offset, array.dtype.str, tuple(array.shape))
        if array.nbytes:
            np.copyto(buffer.view(ref), array, casting="no")
        packed[name] = ref
        offset += _aligned(array.nbytes)
    return packed


def unpack(
    packed: Mapping[str, TensorRef | np.ndarray], buffer: SharedBuffer | None, *, copy: bool
) -> dict[str, np.ndarray]:
    """The arrays of ``packed``: views into ``buffer``, or copies of them when ``copy``."""
    arrays: dict[str, np.ndarray] = {}
    for name, value in packed.items():
        if isinstance(value, TensorRef):
            assert buffer is not None
            view = buffer.view(value)
            arrays[name] = view.copy() if copy else view
        else:
            arrays[name] = value
    return arrays


class OutputRing:
    """The worker → server ring: the worker allocates, the server frees by its read mark.

    Allocations and the sends that describe them must happen under :attr:`lock`, so that
    messages reach the server in the order of their space in the ring.
    """

    def __init__(self, buffer: SharedBuffer, *, wait_s: float = 30.0) -> None:
        if buffer.size <= 2 * _HEADER:
            raise ValueError(f"an output ring needs more than {2 * _HEADER} bytes")
        self.buffer = buffer
        self.capacity = buffer.size - _HEADER
        self.lock = threading.Lock()
        self._mark = np.ndarray((1,), dtype=np.uint64, buffer=buffer.bytes, offset=0)
        self._written = 0
        self._wait_s = wait_s

    # -- the worker's side ------------------------------------------------------------------

    def fits(self, size: int) -> bool:
        """Whether a message of ``size`` bytes goes through the ring (at most half of it)."""
        return size <= self.capacity // 2

    def allocate(self, size: int) -> tuple[int, int]:
        """Reserve ``size`` bytes (aligned): their offset, and the mark that frees them.

        Waits while the server has not read far enough; the caller holds :attr:`lock`.
        """
        size = _aligned(size)
        position = self._written % self.capacity
        skip = self.capacity - position if position + size > self.capacity else 0
        end = self._written + skip + size
        deadline = time.monotonic() + self._wait_s
        pause = 20e-6
        while end - int(self._mark[0]) > self.capacity:
            if time.monotonic() > deadline:
                raise Unavailable(
                    f"the server has not read its worker's responses for {self._wait_s:.0f} s"
                )
            time.sleep(pause)
            pause = min(pause * 2, 1e-3)
        start = self._written + skip
        self._written = end
        return _HEADER + start % self.capacity, end

    # -- the server's side ------------------------------------------------------------------

    def release(self, mark: int) -> None:
        """Free everything up to ``mark`` (the server has copied it out)."""
        self._mark[0] = mark
