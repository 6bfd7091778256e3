"""``ModelRepository``: build, inspect and check a Triton-layout model repository from Python.

repo = ModelRepository("/models")                 # or "s3://bucket/models", "memory://m"
entry = repo.add("mlp")
entry.export_version(MLP(), input_shapes={"x": (None, 64)}, output_names=["y"])
entry.config.add_instance_group(count=2)
report = repo.scan()                              # entries + problems, nothing skipped
"""

from __future__ import annotations

import os
from collections.abc import Iterator, Mapping, Sequence
from typing import Any

from tritonclient.grpc import model_config_pb2

from headrace.errors import InvalidConfig, ModelNotFound
from headrace.repository.entry import CONFIG_FILENAME, ModelEntry
from headrace.repository.scan import ScanReport, scan_repository
from headrace.repository.storage import Storage
from headrace.types import DataType, TensorSpec

__all__ = ["ModelRepository", "TensorLike"]

#: A tensor for ``add``: a TensorSpec or ``(name, datatype, dims)``.
TensorLike = TensorSpec | tuple[str, DataType | str, Sequence[int]]


class ModelRepository:
    """A repository root: ``ROOT/MODEL/config.pbtxt`` and ``ROOT/MODEL/VERSION/<model file>``.

    ``strict_model_config`` mirrors Triton's flag: when False, models without a
    ``config.pbtxt`` are inferred from their model file and auto-completed.
    """

    def __init__(
        self,
        root: str | os.PathLike[str],
        *,
        storage_options: Mapping[str, Any] | None = None,
        strict_model_config: bool = True,
        cache_dir: str | None = None,
    ) -> None:
        self.storage = Storage(root, storage_options=storage_options, cache_dir=cache_dir)
        self.strict_model_config = strict_model_config

    @property
    def path(self) -> str:
        """The root as a local path or URL."""
        return self.storage.url()

    def names(self) -> list[str]:
        """Every model directory's name, sorted (hidden directories are not models)."""
        return self.storage.list_dirs()

    def __contains__(self, name: object) -> bool:
        return isinstance(name, str) and _is_model_name(name) and self.storage.isdir(name)

    def __getitem__(self, name: str) -> ModelEntry:
        if name not in self:
            raise ModelNotFound(
                f"model '{name}' is not in repository {self.path!r} (models: {self.names()})"
            )
        return self._entry(name)

    def __iter__(self) -> Iterator[str]:
        return iter(self.names())

    def __len__(self) -> int:
        return len(self.names())

    def entries(self) -> list[ModelEntry]:
        """An entry per model directory, valid or not (see :meth:`scan` for which are valid)."""
        return [self._entry(name) for name in self.names()]

    def scan(self) -> ScanReport:
        """Servable entries and every problem found, each naming the file and the field."""
        return scan_repository(
            self.storage, self.names(), strict_model_config=self.strict_model_config
        )

    def add(
        self,
        name: str,
        *,
        platform: str = "",
        backend: str = "",
        max_batch_size: int | None = None,
        inputs: Sequence[TensorLike] | None = None,
        outputs: Sequence[TensorLike] | None = None,
    ) -> ModelEntry:
        """Create ``ROOT/name/config.pbtxt``; ``max_batch_size=None`` lets an export decide.

        ``platform="ensemble"`` makes an ensemble, wired with ``add_input``, ``pipe`` and
        ``add_output`` and written by ``export_version(None)``; its ``max_batch_size`` when
        not given is the smallest of its steps' when all of them batch, else 0.
        """
        from headrace.config import add_tensor
        from headrace.config.platforms import ENSEMBLE_PLATFORM

        if not _is_model_name(name):
            raise InvalidConfig(
                f"model name {name!r} must be a plain directory name (no '/', not hidden)",
                field="name",
            )
        if name in self:
            raise InvalidConfig(f"model '{name}' already exists in {self.path!r}", field="name")
        if max_batch_size is not None and max_batch_size < 0:
            raise InvalidConfig(f"must be >= 0, got {max_batch_size}", field="max_batch_size")
        ensemble = platform == ENSEMBLE_PLATFORM
        if ensemble and (inputs or outputs or backend):
            raise InvalidConfig(
                "an ensemble takes no backend, inputs or outputs here: its tensors come from "
                "add_input and add_output",
                field="platform",
            )
        config = model_config_pb2.ModelConfig(
            name=name, platform=platform, backend=backend, max_batch_size=max_batch_size or 0
        )
        for spec in map(_as_spec, inputs or ()):
            add_tensor(config, "input", spec.name, spec.datatype, spec.dims)
        for spec in map(_as_spec, outputs or ()):
            add_tensor(config, "output", spec.name, spec.datatype, spec.dims)
        entry = self._entry(name)
        entry.storage.makedirs(name)
        entry._write_config(config)
        if ensemble:
            entry._begin_ensemble(max_batch_size)
        return entry

    def remove(self, name: str) -> None:
        """Delete one model directory and everything in it."""
        entry = self[name]
        self.storage.remove(entry.name)

    def delete(self) -> None:
        """Delete the whole repository, root included."""
        self.storage.remove()

    def _entry(self, name: str) -> ModelEntry:
        return ModelEntry(self.storage, name, strict_model_config=self.strict_model_config)

    def __repr__(self) -> str:
        return f"ModelRepository({self.path!r})"


def _is_model_name(name: str) -> bool:
    return (
        bool(name)
        and name not in (".", "..", CONFIG_FILENAME)
        and not name.startswith(".")
        and "/" not in name
        and "\\" not in name
    )


def _as_spec(tensor: TensorLike) -> TensorSpec:
    if isinstance(tensor, TensorSpec):
        return tensor
    name, datatype, dims = tensor
    dt = datatype if isinstance(datatype, DataType) else DataType.from_name(datatype)
    return TensorSpec(name, dt, tuple(int(d) for d in dims))
