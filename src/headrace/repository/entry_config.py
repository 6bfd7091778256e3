"""An editable view of one model's ``config.pbtxt`` that writes every change back at once.

Most users never write a configuration by hand: ``entry.config.add_instance_group(count=4)``
edits the real ``ModelConfig`` message (``.proto``) and saves the file before returning, so
what is on disk is always what the last call asked for.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from typing import TypeAlias

from tritonclient.grpc import model_config_pb2

from headrace.errors import InvalidConfig

__all__ = ["INSTANCE_KINDS", "EntryConfig"]

ModelConfig: TypeAlias = model_config_pb2.ModelConfig
_Group = model_config_pb2.ModelInstanceGroup

#: ``kind=`` spellings accepted by :meth:`EntryConfig.add_instance_group`.
INSTANCE_KINDS: dict[str, int] = {
    "auto": _Group.KIND_AUTO,
    "cpu": _Group.KIND_CPU,
    "gpu": _Group.KIND_GPU,
    "model": _Group.KIND_MODEL,
}


class EntryConfig:
    """The configuration of one model as written; ``save`` persists it (each method calls it)."""

    def __init__(
        self, proto: ModelConfig, save: Callable[[ModelConfig], None], source: str
    ) -> None:
        self._proto = proto
        self._save = save
        self.source = source

    @property
    def proto(self) -> ModelConfig:
        """The ``ModelConfig`` message; call :meth:`save` after editing it directly."""
        return self._proto

    def save(self) -> None:
        """Write the message to ``config.pbtxt``."""
        self._save(self._proto)

    def _error(self, field: str, message: str) -> InvalidConfig:
        return InvalidConfig(message, source=self.source, field=field)

    def set_max_batch_size(self, n: int) -> None:
        """0 means the model does not batch (dims then include every dimension)."""
        if n < 0:
            raise self._error("max_batch_size", f"must be >= 0, got {n}")
        self._proto.max_batch_size = n
        self.save()

    def add_instance_group(
        self,
        count: int = 1,
        kind: str = "cpu",
        gpus: Sequence[int] | None = None,
        *,
        name: str = "",
    ) -> None:
        """Append an instance group of ``count`` instances of ``kind`` (cpu, gpu, auto, model)."""
        if count < 1:
            raise self._error(
                f"instance_group[{len(self._proto.instance_group)}].count",
                f"must be >= 1, got {count}",
            )
        try:
            kind_value = INSTANCE_KINDS[kind.lower()]
        except KeyError:
            raise self._error(
                f"instance_group[{len(self._proto.instance_group)}].kind",
                f"unknown kind {kind!r}; expected one of {sorted(INSTANCE_KINDS)}",
            ) from None
        if gpus and kind_value != _Group.KIND_GPU:
            raise self._error(
                f"instance_group[{len(self._proto.instance_group)}].gpus",
                f"gpus {list(gpus)} given for kind {kind!r}; only kind 'gpu' takes gpus",
            )
        group = self._proto.instance_group.add()
        group.count = count
        group.kind = kind_value  # type: ignore[assignment]
        if name:
            group.name = name
        group.gpus.extend(gpus or ())
        self.save()

    def clear_instance_groups(self) -> None:
        del self._proto.instance_group[:]
        self.save()

    def set_dynamic_batching(
        self,
        preferred_batch_sizes: Iterable[int] = (),
        max_queue_delay_us: int = 0,
        priority_levels: int = 0,
        *,
        default_priority_level: int = 0,
        preserve_ordering: bool = False,
        default_queue_timeout_us: int = 0,
        max_queue_size: int = 0,
    ) -> None:
        """Turn dynamic batching on (replacing any previous settings)."""
        if self._proto.max_batch_size <= 0:
            raise self._error(
                "dynamic_batching",
                f"needs max_batch_size > 0, got {self._proto.max_batch_size}; "
                "call set_max_batch_size first",
            )
        sizes = list(preferred_batch_sizes)
        bad = [s for s in sizes if not 1 <= s <= self._proto.max_batch_size]
        if bad:
            raise self._error(
                "dynamic_batching.preferred_batch_size",
                f"{bad} outside 1..max_batch_size ({self._proto.max_batch_size})",
            )
        if max_queue_delay_us < 0:
            raise self._error(
                "dynamic_batching.max_queue_delay_microseconds",
                f"must be >= 0, got {max_queue_delay_us}",
            )
        batching = self._proto.dynamic_batching
        batching.Clear()
        self._proto.dynamic_batching.SetInParent()
        batching.preferred_batch_size.extend(sizes)
        batching.max_queue_delay_microseconds = max_queue_delay_us
        batching.preserve_ordering = preserve_ordering
        batching.priority_levels = priority_levels
        batching.default_priority_level = default_priority_level
        if default_queue_timeout_us or max_queue_size:
            policy = batching.default_queue_policy
            policy.default_timeout_microseconds = default_queue_timeout_us
            policy.max_queue_size = max_queue_size
        self.save()

    def set_version_policy(
        self,
        *,
        latest: int | None = None,
        all: bool = False,
        specific: Iterable[int] | None = None,
    ) -> None:
        """Exactly one of ``latest=N``, ``all=True``, ``specific=[...]``."""
        chosen = [latest is not None, bool(all), specific is not None]
        if sum(chosen) != 1:
            raise self._error(
                "version_policy",
                f"give exactly one of latest=, all=True, specific= "
                f"(got latest={latest!r}, all={all!r}, specific={specific!r})",
            )
        policy = self._proto.version_policy
        policy.Clear()
        if latest is not None:
            if latest < 1:
                raise self._error(
                    "version_policy.latest.num_versions", f"must be >= 1, got {latest}"
                )
            policy.latest.num_versions = latest
        elif all:
            policy.all.SetInParent()
        else:
            versions = sorted(set(specific or ()))
            bad = [v for v in versions if v < 1]
            if bad or not versions:
                raise self._error(
                    "version_policy.specific.versions",
                    f"versions must be >= 1 and non-empty, got {versions}",
                )
            policy.specific.versions.extend(versions)
        self.save()

    def set_parameter(self, key: str, value: str | int | float | bool) -> None:
        """Set ``parameters { key: ... value: { string_value: ... } }`` (Triton stores strings)."""
        if not key:
            raise self._error("parameters", "parameter key must be non-empty")
        text = str(value).lower() if isinstance(value, bool) else str(value)
        self._proto.parameters[key].string_value = text
        self.save()

    def __repr__(self) -> str:
        return f"EntryConfig({self.source!r})"
