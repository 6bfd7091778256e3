"""Growable per-slot buffers and the collation of requests straight into them.

A slot keeps one byte buffer per tensor name and hands out typed views of its first bytes for
each batch. Buffers grow (to at least twice their size) when a larger batch arrives and are
otherwise reused, so steady-state batches allocate nothing. Storing raw bytes lets one buffer
serve any fixed-size dtype (bf16 included) and gives numpy and torch views of the same memory.

BYTES (object) tensors have no fixed-size layout: they are concatenated with numpy and never
enter a slot buffer.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Any

import numpy as np

from headrace.errors import InvalidInput

__all__ = ["ByteBuffer", "collate", "request_sizes"]

Allocator = Callable[[int], Any]
"""Returns a 1-D uint8 buffer of ``nbytes``: a numpy array or a torch tensor."""


class ByteBuffer:
    """One growable byte buffer; ``view`` returns a typed view of its first bytes.

    With a torch allocator the buffer is a uint8 tensor (pinned host or device memory) and
    ``tensor_view`` gives the torch view; ``view`` (numpy) works for host tensors only.
    """

    def __init__(self, allocate: Allocator) -> None:
        self._allocate = allocate
        self.raw: Any = None
        self.capacity = 0
        self.grow_count = 0

    def reserve(self, nbytes: int) -> None:
        """Make room for ``nbytes``; reallocates only when the buffer is too small."""
        if nbytes <= self.capacity:
            return
        capacity = max(nbytes, 2 * self.capacity, 64)
        self.raw = self._allocate(capacity)
        self.capacity = capacity
        self.grow_count += 1

    def view(self, dtype: np.dtype, shape: tuple[int, ...]) -> np.ndarray:
        """A numpy view of ``shape`` and ``dtype`` over the first bytes (host buffers only)."""
        nbytes = int(np.prod(shape, dtype=np.int64)) * dtype.itemsize
        self.reserve(nbytes)
        raw = self.raw if isinstance(self.raw, np.ndarray) else self.raw.numpy()
        return raw[:nbytes].view(dtype).reshape(shape)

    def tensor_view(self, torch_dtype: Any, shape: tuple[int, ...], itemsize: int) -> Any:
        """A torch view of ``shape`` and ``torch_dtype`` over the first bytes."""
        nbytes = int(np.prod(shape, dtype=np.int64)) * itemsize
        self.reserve(nbytes)
        return self.raw[:nbytes].view(torch_dtype).view(shape)


def numpy_allocator(nbytes: int) -> np.ndarray:
    return np.empty(nbytes, dtype=np.uint8)


def request_sizes(requests: Sequence[Mapping[str, Any]], batched: bool) -> list[int]:
    """Each request's batch size (1 per request when the model does not batch)."""
    if not batched:
        return [1] * len(requests)
    return [_first_dim(request) for request in requests]


def collate(
    requests: Sequence[Mapping[str, np.ndarray]],
    batched: bool,
    buffer_for: Callable[[str], ByteBuffer] | None,
) -> dict[str, np.ndarray]:
    """Write the requests, concatenated along the batch dimension, into slot buffers.

    ``buffer_for(name)`` returns the slot's buffer for an input; with ``None`` (or for BYTES
    inputs) the merge allocates with numpy instead. Returns numpy views of the merged batch.
    """
    if not requests:
        raise InvalidInput("a batch needs at least one request")
    if not batched and len(requests) > 1:
        raise InvalidInput(
            f"a model without a batch dimension executes one request at a time, got {len(requests)}"
        )
    names = list(requests[0])
    merged: dict[str, np.ndarray] = {}
    for name in names:
        parts = [_input(request, name, index) for index, request in enumerate(requests)]
        merged[name] = _merge(name, parts, batched, buffer_for)
    for index, request in enumerate(requests[1:], start=1):
        if set(request) != set(names):
            raise InvalidInput(
                f"request {index} has inputs {sorted(request)}, request 0 has {sorted(names)}"
            )
    return merged


def _merge(
    name: str,
    parts: list[np.ndarray],
    batched: bool,
    buffer_for: Callable[[str], ByteBuffer] | None,
) -> np.ndarray:
    first = parts[0]
    for index, part in enumerate(parts[1:], start=1):
        if part.dtype != first.dtype or part.shape[1:] != first.shape[1:]:
            raise InvalidInput(
                f"input '{name}' of request {index} has dtype {part.dtype} and shape "
                f"{list(part.shape)}, request 0 has {first.dtype} and {list(first.shape)}"
            )
    if first.dtype == np.object_ or buffer_for is None:
        return np.concatenate(parts) if len(parts) > 1 else first
    shape = (sum(part.shape[0] for part in parts), *first.shape[1:]) if batched else first.shape
    out = buffer_for(name).view(first.dtype, shape)
    if not batched:
        np.copyto(out, first)
        return out
    start = 0
    for part in parts:
        stop = start + part.shape[0]
        np.copyto(out[start:stop], part)
        start = stop
    return out


def _input(request: Mapping[str, Any], name: str, index: int) -> np.ndarray:
    try:
        value = request[name]
    except KeyError:
        raise InvalidInput(f"request {index} lacks input '{name}'") from None
    if not isinstance(value, np.ndarray):
        raise InvalidInput(
            f"input '{name}' of request {index} is a {type(value).__name__}, expected a numpy array"
        )
    return value


def _first_dim(request: Mapping[str, Any]) -> int:
    for name, value in request.items():
        if value.ndim == 0:
            raise InvalidInput(
                f"input '{name}' is a scalar; a batched model needs a batch dimension"
            )
        return int(value.shape[0])
    return 0
