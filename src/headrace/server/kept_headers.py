"""What the doors keep of request headers they have decoded, to replay them.

Clients repeat their request headers (model, inputs' names, types and shapes, parameters)
and change only the tensors' bytes; the gRPC and HTTP doors each keep what a header decoded
to and replay it (``server/grpc/decoder.py``, ``server/http/decoder.py``). This module holds
what the two share: the bounded table of kept headers and what is kept of each input.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Generic, TypeVar

import numpy as np

from headrace.types import DataType

__all__ = ["KeptHeaders", "KeptInput"]

K = TypeVar("K")
V = TypeVar("V")


@dataclass(frozen=True, slots=True)
class KeptInput:
    """One input of a kept header, its data in the request's bytes.

    ``dtype`` is None for BYTES; ``size`` is the bytes of its data, None where the header does
    not say (a gRPC BYTES input: its raw content's length is its own)."""

    name: str
    datatype: DataType
    shape: tuple[int, ...]
    dtype: np.dtype | None
    size: int | None


class KeptHeaders(Generic[K, V]):
    """At most ``capacity`` decoded headers by key, the oldest dropped first (0 keeps none)."""

    def __init__(self, capacity: int = 256) -> None:
        if capacity < 0:
            raise ValueError(f"capacity must not be negative, got {capacity}")
        self.capacity = capacity
        self._kept: dict[K, V] = {}

    def get(self, key: K) -> V | None:
        return self._kept.get(key)

    def keep(self, key: K, value: V) -> None:
        if not self.capacity:
            return
        if key not in self._kept and len(self._kept) >= self.capacity:
            del self._kept[next(iter(self._kept))]
        self._kept[key] = value

    def __len__(self) -> int:
        return len(self._kept)
