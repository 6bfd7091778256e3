"""Loaded-model bookkeeping: which versions of which model serve, and in what state.

A :class:`ModelRecord` holds one model's serving versions as one immutable mapping that is
replaced whole, so a reload swaps every version in one assignment on the event loop and a
request resolves against either the old set or the new one, never a mix. Routing
(:meth:`ModelTable.resolve`) is a dict lookup on the hot path.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any

from headrace.config import ModelConfig, output_specs
from headrace.errors import ModelNotFound, ModelNotReady
from headrace.scheduling.base import Scheduler
from headrace.server.statistics import VersionStatistics
from headrace.server.validation import Signature
from headrace.types import TensorSpec

__all__ = ["LoadedVersion", "ModelRecord", "ModelState", "ModelTable"]

_log = logging.getLogger(__name__)


class ModelState:
    """Triton's model states as the repository index reports them."""

    READY = "READY"
    LOADING = "LOADING"
    UNLOADING = "UNLOADING"
    UNAVAILABLE = "UNAVAILABLE"


@dataclass
class LoadedVersion:
    """One serving model version: its config, validation signature, scheduler and pool.

    It is also the :class:`~headrace.scheduling.router.Route` other schedulers see.
    """

    name: str
    version: int
    config: ModelConfig
    signature: Signature
    scheduler: Scheduler
    pool: Any
    stats: VersionStatistics
    backend: str = ""
    label: str = field(init=False)
    """The version as the protocol spells it (``"1"``)."""
    decoupled: bool = field(init=False)
    """Whether the model answers a request with any number of responses."""

    def __post_init__(self) -> None:
        self.label = str(self.version)
        self.decoupled = bool(self.config.model_transaction_policy.decoupled)

    @property
    def inputs(self) -> list[TensorSpec]:
        return list(self.signature.inputs.values())

    @property
    def outputs(self) -> list[TensorSpec]:
        return output_specs(self.config)

    async def close(self) -> None:
        """Drain accepted requests, then stop the instances (joined on a worker thread).

        An ensemble has no instances of its own (``pool`` is None)."""
        try:
            await self.scheduler.drain()
        finally:
            if self.pool is not None:
                await asyncio.to_thread(self.pool.close)


def _empty() -> Mapping[Any, LoadedVersion]:
    return MappingProxyType({})


@dataclass
class ModelRecord:
    """One model known to the server, loaded or not."""

    name: str
    versions: Mapping[int, LoadedVersion] = field(default_factory=_empty)
    state: str = ModelState.UNAVAILABLE
    reason: str = ""
    lock: asyncio.Lock = field(default_factory=asyncio.Lock)
    highest: LoadedVersion | None = None
    by_label: Mapping[str, LoadedVersion] = field(default_factory=_empty)
    idle_versions: tuple[int, ...] = ()
    """While no version serves: the versions that last failed to load, or that served before
    the model was unloaded. The index lists each with the model's state and reason, as
    Triton does; empty when the failure came before any version was known (a bad config)."""
    idle_reasons: Mapping[int, str] = field(default_factory=dict)
    """Reasons of single idle versions where they differ from the model's: after one version
    failed to load, the versions that loaded (and were let go with it) say "unloaded", as
    Triton's index says of them."""

    def swap(self, versions: Mapping[int, LoadedVersion]) -> Mapping[int, LoadedVersion]:
        """Serve ``versions`` from now on; returns the set that served before."""
        old = self.versions
        self.versions = MappingProxyType(dict(versions))
        self.by_label = MappingProxyType({str(v): lv for v, lv in versions.items()})
        self.highest = versions[max(versions)] if versions else None
        return old


class ModelTable:
    """Every model the server knows, keyed by name."""

    def __init__(self) -> None:
        self._records: dict[str, ModelRecord] = {}

    def __iter__(self) -> Iterator[ModelRecord]:
        return iter(list(self._records.values()))

    def __contains__(self, name: object) -> bool:
        return name in self._records

    def get(self, name: str) -> ModelRecord | None:
        return self._records.get(name)

    def record(self, name: str) -> ModelRecord:
        """The record for ``name``, created (UNAVAILABLE, no versions) when new."""
        record = self._records.get(name)
        if record is None:
            record = self._records[name] = ModelRecord(name)
        return record

    def forget(self, name: str) -> None:
        self._records.pop(name, None)

    def resolve(self, name: str, version: str = "") -> LoadedVersion:
        """The version a request for ``name``/``version`` goes to ("" = highest serving one).

        Errors are Triton's, word for word before headrace's detail: a model with no serving
        version (never loaded, unloaded, failed) is not found (404 / NOT_FOUND); a named
        version of such a model is not ready (503 / UNAVAILABLE)."""
        record = self._records.get(name)
        if record is None:
            raise ModelNotFound(f"Request for unknown model: '{name}' is not found")
        if not version:
            if record.highest is None:
                raise ModelNotFound(
                    f"Request for unknown model: '{name}' has no available versions{_why(record)}"
                )
            return record.highest
        loaded = record.by_label.get(version)
        if loaded is not None:
            return loaded
        if record.highest is None:
            raise ModelNotReady(
                f"Request for unknown model: '{name}' version {version} is not at ready state"
                f"{_why(record)}"
            )
        raise ModelNotFound(
            f"Request for unknown model: '{name}' version {version} is not found "
            f"(serving versions {sorted(record.versions)})"
        )

    def loaded(self) -> Iterator[LoadedVersion]:
        """Every serving version of every model."""
        for record in list(self._records.values()):
            yield from record.versions.values()


def _why(record: ModelRecord) -> str:
    """Headrace's detail after Triton's phrase: the model's state and reason."""
    why = f": {record.reason}" if record.reason else ""
    return f" ({record.state}{why})"
