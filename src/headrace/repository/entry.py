"""One model directory of a repository: its configuration, versions and files.

A :class:`ModelEntry` reads the disk (or bucket) every time it is asked, so it is never stale;
it remembers only completed configurations, which it forgets whenever it writes, and an
ensemble's wiring between ``add_input``/``pipe``/``add_output`` and ``export_version(None)``
(read back from ``config.pbtxt`` by a fresh entry).
"""

from __future__ import annotations

import os
import posixpath
import shutil
import tempfile
from collections.abc import Mapping, Sequence
from typing import Any, TypeAlias

from tritonclient.grpc import model_config_pb2

from headrace.config.platforms import ENSEMBLE_PLATFORM
from headrace.errors import InvalidConfig
from headrace.repository.complete import backend_for_files, complete_config
from headrace.repository.ensemble_builder import LATEST, EnsemblePlan, EnsembleStep
from headrace.repository.entry_config import EntryConfig
from headrace.repository.export_bridge import ExportFormat, run_export
from headrace.repository.handles import TensorHandle, TensorHandles, tensor_handles
from headrace.repository.storage import Storage
from headrace.repository.version_policy import parse_version, select_versions

__all__ = ["CONFIG_FILENAME", "ModelEntry"]

CONFIG_FILENAME = "config.pbtxt"
ModelConfig: TypeAlias = model_config_pb2.ModelConfig


class ModelEntry:
    """``REPO/NAME``: what is on disk, plus the completed configuration a server would use.

    ``strict_model_config`` follows Triton's flag: when False, a missing ``config.pbtxt`` is
    inferred from the model file name and auto-completed.
    """

    def __init__(self, storage: Storage, name: str, *, strict_model_config: bool = True) -> None:
        self.storage = storage
        self.name = name
        self.strict_model_config = strict_model_config
        self._completed: dict[tuple[int, tuple[int, ...]], ModelConfig] = {}
        self._plan: EnsemblePlan | None = None  # an ensemble's wiring, until exported

    # -- where -----------------------------------------------------------------------------

    @property
    def path(self) -> str:
        """The model directory as a local path or URL."""
        return self.storage.url(self.name)

    @property
    def config_path(self) -> str:
        return self.storage.url(self.name, CONFIG_FILENAME)

    def has_config_file(self) -> bool:
        return self.storage.isfile(self.name, CONFIG_FILENAME)

    def version_path(self, version: int) -> str:
        """The version directory as a local path or URL (it need not exist yet)."""
        return self.storage.url(self.name, str(version))

    def local_version_dir(self, version: int) -> str:
        """A local directory with the version's files (a cached copy for remote repositories)."""
        if version not in self.available_versions():
            raise InvalidConfig(
                f"model {self.name!r} has no version {version} "
                f"(available: {self.available_versions() or 'none'})",
                source=self.path,
            )
        return self.storage.localize(self.name, str(version))

    def fingerprint(self) -> str:
        """Changes whenever any file of the model changes (for repository polling)."""
        return self.storage.fingerprint(self.name)

    # -- configuration ---------------------------------------------------------------------

    def raw_config(self) -> ModelConfig:
        """The configuration as written, or inferred from the model file when allowed."""
        from headrace.config import parse_config

        if self.has_config_file():
            text = self.storage.read_bytes(self.name, CONFIG_FILENAME).decode("utf-8")
            return parse_config(text, self.config_path)
        if self.strict_model_config:
            raise InvalidConfig(
                "file is missing (a config.pbtxt is required with strict model config; "
                "--strict-model-config=false, or strict_model_config=False in Python, "
                "completes it from the model file)",
                source=self.config_path,
            )
        return self._inferred_config()

    def _inferred_config(self) -> ModelConfig:
        config = ModelConfig(name=self.name)
        versions = self.available_versions()
        if versions:
            newest = str(versions[-1])
            files = self.storage.list_files(self.name, newest) + self.storage.list_dirs(
                self.name, newest
            )
            config.backend = backend_for_files(files, self.storage.url(self.name, newest))
        return config

    @property
    def config(self) -> EntryConfig:
        """The editable configuration; every method writes ``config.pbtxt`` at once."""
        return EntryConfig(self.raw_config(), self._write_config, self.config_path)

    def _write_config(self, config: ModelConfig) -> None:
        from headrace.config import format_config

        self.storage.write_bytes(format_config(config).encode("utf-8"), self.name, CONFIG_FILENAME)
        self._completed.clear()

    def completed_config(
        self, version: int | None = None, *, gpus: Sequence[int] = ()
    ) -> ModelConfig:
        """The auto-completed, validated configuration for ``version`` (default: newest served).

        ``gpus`` are the device ids instance groups may use; none gives CPU-only groups.
        """
        chosen = self.versions()[-1] if version is None else version
        key = (chosen, tuple(gpus))
        cached = self._completed.get(key)
        if cached is None:
            cached = complete_config(
                self.raw_config(),
                model_name=self.name,
                version_dir=self.local_version_dir(chosen),
                source=self.config_path if self.has_config_file() else self.path,
                gpus=gpus,
            )
            self._completed[key] = cached
        result = ModelConfig()
        result.CopyFrom(cached)
        return result

    @property
    def inputs(self) -> TensorHandles:
        """The inputs by name (``entry.inputs["x"]``), from the completed configuration of
        the newest served version (the configuration as written while there is none)."""
        return tensor_handles(self._described(), "input")

    @property
    def outputs(self) -> TensorHandles:
        """The outputs by name (``entry.outputs["y"]``); see :attr:`inputs`."""
        return tensor_handles(self._described(), "output")

    def _described(self) -> ModelConfig:
        if self.available_versions():
            return self.completed_config()
        config = self.raw_config()
        config.name = config.name or self.name
        return config

    # -- ensembles -------------------------------------------------------------------------

    def add_input(self, tensor: TensorHandle, name: str | None = None) -> str:
        """Ensemble only: a new ensemble input feeding step input ``tensor``.

        It takes ``tensor``'s name, data type and dims, or is named ``name``; adding a name
        that is already an ensemble input feeds that input to one more step. Returns the name.
        """
        return self._ensemble().add_input(tensor, name)

    def pipe(self, output: TensorHandle, input: TensorHandle) -> str:
        """Ensemble only: feed one step's ``output`` to another step's ``input``.

        One output may feed many inputs (fan-out) and a step may read from many steps
        (fan-in). Returns the name of the ensemble tensor between them.
        """
        return self._ensemble().pipe(output, input)

    def add_output(self, tensor: TensorHandle, name: str | None = None) -> str:
        """Ensemble only: step output ``tensor`` as an ensemble output (its name unless
        ``name``). Returns the name."""
        return self._ensemble().add_output(tensor, name)

    def step(self, model: ModelEntry | str, version: int = LATEST) -> EnsembleStep:
        """Ensemble only: one more step running ``model`` (for a model used more than once).

        Handles from ``model.inputs``/``model.outputs`` name the model's default step; those
        of the returned ``step.inputs``/``step.outputs`` name this one.
        """
        plan = self._ensemble()
        name = model if isinstance(model, str) else model.name
        plan.check_step(name, version)
        other = self._sibling(name)
        if other is None:
            raise InvalidConfig(
                f"model {name!r} is not in the repository {self.storage.url()!r}",
                source=self.config_path,
            )
        config = other._described() if version == LATEST else other.completed_config(version)
        index = plan.add_step(name, version)
        return EnsembleStep(
            index,
            plan.steps[index].label,
            name,
            version,
            tensor_handles(config, "input", step=index),
            tensor_handles(config, "output", step=index),
        )

    def _ensemble(self) -> EnsemblePlan:
        if self._plan is None:
            raw = self.raw_config()
            if raw.platform != ENSEMBLE_PLATFORM:
                raise InvalidConfig(
                    f"model {self.name!r} is not an ensemble (platform {raw.platform!r}); "
                    "create one with repo.add(name, platform='ensemble')",
                    source=self.config_path,
                    field="platform",
                )
            raw.name = raw.name or self.name
            self._plan = EnsemblePlan.from_config(raw, self.config_path)
        return self._plan

    def _begin_ensemble(self, max_batch_size: int | None) -> None:
        """Start an empty plan (``ModelRepository.add``); None lets the steps decide."""
        self._plan = EnsemblePlan(self.name, max_batch_size, self.config_path)

    def _sibling(self, name: str) -> ModelEntry | None:
        """Another model of the same repository, or None when it has no directory."""
        if not name or name.startswith(".") or "/" in name or not self.storage.isdir(name):
            return None
        return ModelEntry(self.storage, name, strict_model_config=self.strict_model_config)

    def _export_ensemble(self, number: int) -> int:
        config = self._ensemble().build(self.raw_config(), self._sibling)
        self._write_config(config)
        self.storage.remove(self.name, str(number))
        self.storage.makedirs(self.name, str(number))
        if not self.storage.isdir(self.name, str(number)):
            # Object stores keep no empty directories; a hidden file keeps this one (listings
            # and model-file checks ignore it).
            self.storage.write_bytes(b"", self.name, str(number), ".keep")
        self._completed.clear()
        return number

    # -- versions --------------------------------------------------------------------------

    def available_versions(self) -> list[int]:
        """Every numeric version directory present, ascending (others are ignored, as Triton)."""
        found = (parse_version(name) for name in self.storage.list_dirs(self.name))
        return sorted(v for v in found if v is not None)

    def versions(self) -> list[int]:
        """The versions the configuration's ``version_policy`` serves, ascending."""
        raw = self.raw_config()
        policy = raw.version_policy if raw.HasField("version_policy") else None
        return list(
            select_versions(policy, self.available_versions(), source=self.config_path).versions
        )

    def add_version_file(self, version: int, filename: str, data: bytes) -> str:
        """Write ``VERSION/filename`` (``model.py`` and its helpers); returns its path or URL."""
        parts = _relative_parts(filename)
        _check_version(version)
        self.storage.write_bytes(data, self.name, str(version), *parts)
        self._completed.clear()
        return self.storage.url(self.name, str(version), *parts)

    def export_version(
        self,
        module: Any,
        *,
        input_shapes: Mapping[str, tuple[int | None, ...]] | None = None,
        output_names: list[str] | None = None,
        input_dtypes: Mapping[str, Any] | None = None,
        format: ExportFormat = "onnx",
        version: int | None = None,
        overwrite: bool = False,
    ) -> int:
        """Export a torch module as a new version and fill the configuration from the export.

        The version is the next free number unless given. Inputs, outputs, platform/backend
        and (when not set yet) ``max_batch_size`` are written to ``config.pbtxt``. For a later
        version ``input_shapes``/``output_names``/``input_dtypes`` default to the configuration.

        An ensemble exports with ``module=None``: its wiring is checked against the composing
        models, then ``config.pbtxt`` and an empty version directory are written.
        """
        available = self.available_versions()
        number = version if version is not None else (available[-1] + 1 if available else 1)
        _check_version(number)
        if number in available and not overwrite:
            raise InvalidConfig(
                f"version {number} of model {self.name!r} exists; pass overwrite=True to replace it",
                source=self.version_path(number),
            )
        config = self.raw_config()
        if config.platform == ENSEMBLE_PLATFORM:
            if module is not None:
                raise InvalidConfig(
                    f"ensemble {self.name!r} has no model file to export; call "
                    "export_version(None)",
                    source=self.config_path,
                )
            return self._export_ensemble(number)
        if module is None:
            raise InvalidConfig(
                f"export_version of model {self.name!r} needs a torch module (None exports "
                "an ensemble)",
                source=self.config_path,
            )
        staging = self._staging_dir()
        try:
            result = run_export(
                module,
                config,
                os.path.join(staging, "export"),
                format=format,
                input_shapes=input_shapes,
                output_names=output_names,
                input_dtypes=input_dtypes,
                source=self.config_path,
                has_other_versions=bool(set(available) - {number}),
            )
            self._install_version(os.path.join(staging, "export"), number)
        finally:
            shutil.rmtree(staging, ignore_errors=True)
        self._write_config(result)
        return number

    def _staging_dir(self) -> str:
        if self.storage.is_local:
            self.storage.makedirs(self.name)
            # A hidden directory inside the model dir: same filesystem (rename is atomic) and
            # ignored by listings, so a failed export never shows up as a version.
            return tempfile.mkdtemp(dir=self.storage.full(self.name), prefix=".export-")
        return tempfile.mkdtemp(prefix="headrace-export-")

    def _install_version(self, local_dir: str, version: int) -> None:
        self.storage.remove(self.name, str(version))
        if self.storage.is_local:
            os.replace(local_dir, self.storage.full(self.name, str(version)))
        else:
            self.storage.put_dir(local_dir, self.name, str(version))
        self._completed.clear()

    def __repr__(self) -> str:
        return f"ModelEntry({self.name!r}, path={self.path!r})"


def _check_version(version: int) -> None:
    if isinstance(version, bool) or not isinstance(version, int) or version < 1:
        raise InvalidConfig(f"a version must be an integer >= 1, got {version!r}")


def _relative_parts(filename: str) -> list[str]:
    parts = [p for p in posixpath.normpath(filename.replace(os.sep, "/")).split("/") if p]
    if not parts or filename.startswith("/") or any(p in (".", "..") for p in parts):
        raise InvalidConfig(
            f"version file name must be a relative path inside the version, got {filename!r}"
        )
    return parts
