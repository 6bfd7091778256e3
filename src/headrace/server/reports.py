"""What the server core reports: metadata, statistics and repository index entries.

Frozen dataclasses with Triton's field meanings; the frontends turn them into JSON or protobuf.
:mod:`headrace.server.core` re-exports them.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from headrace.types import TensorSpec

__all__ = [
    "BatchStatistics",
    "Duration",
    "ModelMetadata",
    "ModelStatistics",
    "RepositoryIndexEntry",
    "ServerMetadata",
]


@dataclass(frozen=True)
class ServerMetadata:
    name: str
    version: str
    extensions: tuple[str, ...]


@dataclass(frozen=True)
class ModelMetadata:
    name: str
    versions: tuple[str, ...]
    platform: str
    inputs: tuple[TensorSpec, ...]
    outputs: tuple[TensorSpec, ...]
    batched: bool
    """When True, the protocol shapes of inputs/outputs get a leading -1."""


@dataclass(frozen=True)
class Duration:
    count: int = 0
    ns: int = 0


@dataclass(frozen=True)
class BatchStatistics:
    batch_size: int
    compute_input: Duration
    compute_infer: Duration
    compute_output: Duration


@dataclass(frozen=True)
class ModelStatistics:
    """One model version's statistics, with Triton's field meanings."""

    name: str
    version: str
    last_inference_ms: int = 0
    inference_count: int = 0
    execution_count: int = 0
    success: Duration = Duration()
    fail: Duration = Duration()
    queue: Duration = Duration()
    compute_input: Duration = Duration()
    compute_infer: Duration = Duration()
    compute_output: Duration = Duration()
    cache_hit: Duration = Duration()
    cache_miss: Duration = Duration()
    batch_stats: tuple[BatchStatistics, ...] = field(default_factory=tuple)


@dataclass(frozen=True)
class RepositoryIndexEntry:
    name: str
    version: str
    state: str
    """Triton's states: READY, UNAVAILABLE, LOADING, UNLOADING."""
    reason: str = ""
