"""Triton's response cache: responses of earlier requests, kept in memory and replayed.

One :class:`ResponseCache` serves the whole server (every model that enables
``response_cache`` shares it, as Triton's ``local`` cache is shared). It maps a request key
(:func:`request_key`) to the outputs that request produced, evicts the least recently used
entries to stay within its byte budget, and never stores an entry larger than the whole
budget. It is thread-safe: lookups run on the event loop, inserts on whichever thread
answers the request.

An entry's size is what it holds: the bytes of its tensors (BYTES elements as on the wire,
each with its 4-byte length) plus :data:`ENTRY_OVERHEAD` per entry and
:data:`TENSOR_OVERHEAD` per tensor for the names, shapes and bookkeeping.

The key covers the model name and version, every input's name, data type, shape and bytes,
the outputs asked for and the request's pass-through parameters, hashed with SHA-256 (with
the SHA extensions of current CPUs the fastest of hashlib's digests: 90 µs for 128 KiB on
the benchmark machine, BLAKE2b 195 µs).
Triton's own key (a 64-bit hash) covers only the name, version and each input's name and
bytes; headrace also keys on data type, shape, requested outputs and parameters, so a
request whose answer could differ never replays another's response.
"""

from __future__ import annotations

import hashlib
import struct
import threading
import time
from collections import OrderedDict
from collections.abc import Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any

import numpy as np

from headrace.errors import InvalidConfig
from headrace.types import DataType, WorkItem, serialize_bytes_tensor, wire_bytes

__all__ = [
    "ENTRY_OVERHEAD",
    "TENSOR_OVERHEAD",
    "CacheReport",
    "CachedResponse",
    "ResponseCache",
    "request_key",
]

ENTRY_OVERHEAD = 128
"""Bytes counted per entry on top of its tensors (key, LRU link, parameters)."""
TENSOR_OVERHEAD = 64
"""Bytes counted per stored tensor on top of its data (name, data type, shape)."""

_LENGTH = struct.Struct("<Q")


@dataclass(frozen=True)
class CachedResponse:
    """One stored response: read-only host copies of the outputs, and the response parameters."""

    outputs: Mapping[str, np.ndarray]
    parameters: Mapping[str, Any] = field(default_factory=dict)
    nbytes: int = 0


@dataclass(frozen=True)
class CacheReport:
    """The cache-wide counters Triton exports as ``nv_cache_*`` gauges."""

    capacity_bytes: int
    used_bytes: int = 0
    entries: int = 0
    hits: int = 0
    misses: int = 0
    evictions: int = 0
    lookup_ns: int = 0
    insertion_ns: int = 0

    @property
    def lookups(self) -> int:
        return self.hits + self.misses

    @property
    def utilization(self) -> float:
        """Used bytes over capacity, in [0, 1]."""
        return self.used_bytes / self.capacity_bytes if self.capacity_bytes else 0.0


class ResponseCache:
    """A byte-bounded LRU map from request keys to :class:`CachedResponse` (thread-safe)."""

    def __init__(self, capacity_bytes: int) -> None:
        if capacity_bytes <= 0:
            raise InvalidConfig(f"response cache size must be positive, got {capacity_bytes}")
        self.capacity_bytes = capacity_bytes
        self._lock = threading.Lock()
        self._entries: OrderedDict[bytes, CachedResponse] = OrderedDict()
        self._used = 0
        self._hits = 0
        self._misses = 0
        self._evictions = 0
        self._lookup_ns = 0
        self._insertion_ns = 0

    def __len__(self) -> int:
        return len(self._entries)

    def lookup(self, key: bytes) -> CachedResponse | None:
        """The response stored under ``key`` (now the most recently used), or None."""
        start = time.monotonic_ns()
        with self._lock:
            found = self._entries.get(key)
            if found is None:
                self._misses += 1
            else:
                self._entries.move_to_end(key)
                self._hits += 1
            self._lookup_ns += time.monotonic_ns() - start
        return found

    def insert(
        self,
        key: bytes,
        outputs: Mapping[str, Any],
        parameters: Mapping[str, Any] | None = None,
    ) -> bool:
        """Store copies of ``outputs`` under ``key``, evicting least recently used entries.

        Returns False, storing nothing, when an output is not a host array (a device tensor)
        or the entry alone is larger than the cache. A key already present keeps its entry.
        """
        start = time.monotonic_ns()
        entry = _entry(outputs, parameters)
        stored = entry is not None and entry.nbytes <= self.capacity_bytes
        with self._lock:
            if stored and entry is not None and key not in self._entries:
                while self._used + entry.nbytes > self.capacity_bytes:
                    _, evicted = self._entries.popitem(last=False)
                    self._used -= evicted.nbytes
                    self._evictions += 1
                self._entries[key] = entry
                self._used += entry.nbytes
            elif stored:
                self._entries.move_to_end(key)
            self._insertion_ns += time.monotonic_ns() - start
        return stored

    def clear(self) -> None:
        """Drop every entry (a model loaded, reloaded or unloaded: ensembles over it would
        replay answers of its old version); the counters keep counting."""
        with self._lock:
            self._entries.clear()
            self._used = 0

    def report(self) -> CacheReport:
        """A consistent copy of the counters."""
        with self._lock:
            return CacheReport(
                capacity_bytes=self.capacity_bytes,
                used_bytes=self._used,
                entries=len(self._entries),
                hits=self._hits,
                misses=self._misses,
                evictions=self._evictions,
                lookup_ns=self._lookup_ns,
                insertion_ns=self._insertion_ns,
            )


def request_key(model: str, version: int, item: WorkItem, generation: int = 0) -> bytes | None:
    """The cache key of ``item`` for one model version; None when an input is not a host
    array (a device tensor), which makes the request uncacheable, as in Triton.

    ``generation`` tells loads of the same version apart: a reloaded version (new files under
    the same number) never replays what the one before it answered."""
    digest = hashlib.sha256()
    _text(digest, model)
    _text(digest, f"{version}#{generation}")
    requested = item.requested_outputs
    _text(digest, "*" if requested is None else "\0".join(sorted(requested)))
    _text(digest, repr(sorted((str(k), repr(v)) for k, v in item.parameters.items())))
    for name in sorted(item.inputs):
        value = item.inputs[name]
        if not isinstance(value, np.ndarray):
            return None
        datatype = DataType.from_numpy(value.dtype)
        _text(digest, name)
        _text(digest, datatype.value)
        digest.update(_LENGTH.pack(value.ndim))
        digest.update(struct.pack(f"<{value.ndim}q", *value.shape))
        data = wire_bytes(value, datatype)
        digest.update(_LENGTH.pack(len(data)))
        digest.update(data)
    return digest.digest()


def _text(digest: Any, text: str) -> None:
    data = text.encode("utf-8")
    digest.update(_LENGTH.pack(len(data)))
    digest.update(data)


def _entry(
    outputs: Mapping[str, Any], parameters: Mapping[str, Any] | None
) -> CachedResponse | None:
    copies: dict[str, np.ndarray] = {}
    nbytes = ENTRY_OVERHEAD
    for name, value in outputs.items():
        if not isinstance(value, np.ndarray):
            return None  # a torch tensor, possibly on a device: Triton caches host outputs only
        copy = value.copy()
        copy.flags.writeable = False
        copies[name] = copy
        data = len(serialize_bytes_tensor(copy)) if copy.dtype == object else copy.nbytes
        nbytes += TENSOR_OVERHEAD + len(name) + data
    return CachedResponse(
        outputs=MappingProxyType(copies),
        parameters=MappingProxyType(dict(parameters or {})),
        nbytes=nbytes,
    )
