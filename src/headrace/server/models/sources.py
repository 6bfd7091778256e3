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
from headrace.errors import InvalidConfig, InvalidInput, brief
from headrace.server.models.load_files import check_files, write_files
from headrace.server.models.loading import VersionSource

if TYPE_CHECKING:
    from headrace.repository import ModelRepository
    from headrace.repository.entry import ModelEntry

__all__ = [
    "ScratchDirs",
    "check_repository",
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

        checked = check_files(name, files)  # before anything is written
        root = tempfile.mkdtemp(prefix="headrace-load-")
        model_dir = os.path.join(root, name)
        config = override if override is not None else ModelConfig(name=name)
        if not config.name:
            config.name = name
        try:
            os.mkdir(model_dir, 0o700)
            write_files(model_dir, checked)
            with open(os.path.join(model_dir, "config.pbtxt"), "w", encoding="utf-8") as handle:
                handle.write(format_config(config))
        except OSError as exc:
            shutil.rmtree(root, ignore_errors=True)
            raise InvalidInput(
                f"the files of the load request of model '{name}' cannot be written: "
                f"{exc.strerror or exc}"
            ) from exc
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


def check_repository(repository: ModelRepository) -> None:
    """Refuse a repository root that is missing, not a directory, or unreadable (blocking).

    Triton refuses such a root at start; serving an empty model set from a typo'd path
    would look healthy while serving nothing."""
    storage = repository.storage
    where = f"model repository '{repository.path}'"
    try:
        if not storage.exists():
            raise InvalidConfig(f"{where} does not exist")
        if not storage.isdir():
            raise InvalidConfig(f"{where} is not a directory")
        if storage.is_local:
            os.listdir(storage.root)  # what the repository's listings would hit
        else:
            storage.fs.ls(storage.root, detail=False)
    except InvalidConfig:
        raise
    except Exception as exc:  # PermissionError, or a remote store's own error types
        why = exc.strerror if isinstance(exc, OSError) and exc.strerror else str(exc)
        raise InvalidConfig(f"{where} cannot be read: {why or type(exc).__name__}") from exc


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
                _with_backend(override, entry, version_dir),
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


def _with_backend(override: ModelConfig, entry: ModelEntry, version_dir: str) -> ModelConfig:
    """A load request's config replaces ``config.pbtxt`` whole, as in Triton 2.51 (fields it
    leaves out are not taken from the file); without strict model config, a backend it does
    not name comes from the model file's name, then the backend completes the rest."""
    if entry.strict_model_config or override.platform or override.backend:
        return override
    from headrace.repository.complete import backend_for_files

    files = os.listdir(version_dir) if os.path.isdir(version_dir) else []
    filled = ModelConfig()
    filled.CopyFrom(override)
    filled.backend = backend_for_files(files, version_dir)
    return filled


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
