"""The protocol-free inference server: model lifecycle, routing, readiness and statistics.

The HTTP and gRPC frontends are thin: they parse the wire format into
:mod:`headrace.types`, call one method here, and map :mod:`headrace.errors` to statuses.
Everything async here runs on the one asyncio loop that also runs the frontends; model
execution happens on instance threads.

INTERFACE CONTRACT (implemented by the server-core work; frontends code against it):
"""

from __future__ import annotations

from dataclasses import dataclass, field

from headrace.config import ModelConfig
from headrace.types import InferenceRequest, InferenceResponse, TensorSpec

__all__ = [
    "BatchStatistics",
    "Duration",
    "InferenceServer",
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


class InferenceServer:
    """Owns the repository's models; one per process."""

    async def infer(self, request: InferenceRequest) -> InferenceResponse:
        """Validate, schedule and execute one request. Raises headrace.errors on failure."""
        raise NotImplementedError

    def live(self) -> bool:
        raise NotImplementedError

    def ready(self) -> bool:
        raise NotImplementedError

    def model_ready(self, name: str, version: str = "") -> bool:
        raise NotImplementedError

    def server_metadata(self) -> ServerMetadata:
        raise NotImplementedError

    def model_metadata(self, name: str, version: str = "") -> ModelMetadata:
        raise NotImplementedError

    def model_config(self, name: str, version: str = "") -> ModelConfig:
        raise NotImplementedError

    def statistics(self, name: str = "", version: str = "") -> list[ModelStatistics]:
        raise NotImplementedError

    def repository_index(self, ready_only: bool = False) -> list[RepositoryIndexEntry]:
        raise NotImplementedError

    async def load_model(
        self, name: str, config: str | None = None, files: dict[str, bytes] | None = None
    ) -> None:
        """Load or reload; a failed reload keeps the old version serving."""
        raise NotImplementedError

    async def unload_model(self, name: str, unload_dependents: bool = False) -> None:
        raise NotImplementedError
