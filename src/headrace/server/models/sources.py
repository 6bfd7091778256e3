"""Where a model's versions come from: the repository, a load request's override and files.

Everything here blocks (file reads, config completion, backend imports), so the core calls it
on worker threads. A version comes out as a :class:`~headrace.server.models.loading.VersionSource`:
its completed configuration, its directories and the factory that builds its backends.
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from headrace.config import ModelConfig, config_from_json, format_config
from headrace.config.platforms import ENSEMBLE_PLATFORM
from headrace.errors import InvalidInput, brief
from headrace.server.models.loading import VersionSource

if TYPE_CHECKING:
    from headrace.repository import ModelRepository
    from headrace.repository.entry import ModelEntry

__all__ = [
    "ScratchDirs",
    "entry_sources",
    "fingerprint",
    "load_repository_backend",
    "open_repository",
    "parse_override",
]


class ScratchDirs:
    """Private directories holding the files of ``load`` requests, one per model."""

    def __init__(self) -> None:
        self._roots: dict[str, str] = {}

    def entry(
        self, name: str, override: ModelConfig | None, files: Mapping[str, bytes]
    ) -> ModelEntry:
        """Write the load request's files (``1/model.onnx`` …) and config to a private dir."""
        from headrace.repository.entry import ModelEntry
        from headrace.repository.storage import Storage

        root = tempfile.mkdtemp(prefix="headrace-load-")
        model_dir = os.path.join(root, name)
        for key, data in files.items():
            relative = key.removeprefix("file:")
            target = os.path.normpath(os.path.join(model_dir, relative))
            if not target.startswith(model_dir + os.sep):
                shutil.rmtree(root, ignore_errors=True)
                raise InvalidInput(
                    f"load file '{key}' of model '{name}' escapes the model directory"
                )
            os.makedirs(os.path.dirname(target), exist_ok=True)
            with open(target, "wb") as handle:
                handle.write(data)
        config = override if override is not None else ModelConfig(name=name)
        if not config.name:
            config.name = name
        with open(os.path.join(model_dir, "config.pbtxt"), "w", encoding="utf-8") as handle:
            handle.write(format_config(config))
        self.drop(name)
        self._roots[name] = root
        return ModelEntry(Storage(root), name)

    def drop(self, name: str) -> None:
        """Delete the directory of ``name`` (after its model unloaded or reloaded)."""
        root = self._roots.pop(name, None)
        if root is not None:
            shutil.rmtree(root, ignore_errors=True)

    def drop_all(self) -> None:
        for name in list(self._roots):
            self.drop(name)


def open_repository(
    repository: ModelRepository | str | os.PathLike[str] | None, strict: bool
) -> ModelRepository | None:
    if repository is None or hasattr(repository, "scan"):
        return repository  # type: ignore[return-value]
    from headrace.repository import ModelRepository

    return ModelRepository(os.fspath(repository), strict_model_config=strict)


def load_repository_backend(context: Any) -> Any:
    """The factory for repository models: the backend the config names."""
    from headrace.backends import load_backend

    return load_backend(context)


def entry_sources(entry: ModelEntry, override: ModelConfig | None) -> list[VersionSource]:
    """Complete each served version's config (blocking: reads files, may import backends)."""
    from headrace.devices import available_gpus
    from headrace.repository.complete import complete_config
    from headrace.repository.version_policy import select_versions

    if override is None:
        versions = entry.versions()
    else:
        policy = override.version_policy if override.HasField("version_policy") else None
        versions = list(select_versions(policy, entry.available_versions()).versions)
    gpus = available_gpus()
    sources = []
    for version in versions:
        version_dir = entry.local_version_dir(version)
        if override is None:
            config = entry.completed_config(version, gpus=gpus)
        else:
            config = complete_config(
                override,
                model_name=entry.name,
                version_dir=version_dir,
                gpus=gpus,
                source=f"load request config of model '{entry.name}'",
            )
        sources.append(
            VersionSource(
                name=entry.name,
                version=version,
                config=config,
                factory=load_repository_backend,
                model_dir=os.path.dirname(version_dir.rstrip(os.sep)),
                version_dir=version_dir,
                backend=_backend_name(config, version_dir),
            )
        )
    return sources


def _backend_name(config: ModelConfig, version_dir: str) -> str:
    from headrace.backends import backend_class_for

    if config.platform == ENSEMBLE_PLATFORM:
        return ENSEMBLE_PLATFORM
    return backend_class_for(config, version_dir).name


def fingerprint(entry: ModelEntry | None) -> str:
    return entry.fingerprint() if entry is not None else ""


def parse_override(name: str, text: str) -> ModelConfig:
    try:
        data = json.loads(text)
    except json.JSONDecodeError as exc:
        raise InvalidInput(f"load config for model '{name}' is not valid JSON: {exc}") from exc
    except RecursionError:  # Python's parser recurses once per level of nesting
        raise InvalidInput(f"load config for model '{name}' nests too deeply") from None
    if not isinstance(data, dict):
        raise InvalidInput(
            f"load config for model '{name}' must be a JSON object, got {brief(text)}"
        )
    config = config_from_json(data)
    if config.name and config.name != name:
        raise InvalidInput(f"load config names model '{config.name}', the request loads '{name}'")
    config.name = name
    return config
