"""One model version named by a path, resolved into a completed configuration.

A path is either a model directory inside a Triton-layout repository (``REPO/NAME``, with
``config.pbtxt`` or inferable from its model file) or a bare ``.onnx`` file, which gets a
one-model repository on the fly (its configuration auto-completed from the graph,
``max_batch_size`` set to the batch size asked for). TorchScript files carry no tensor
signature, so they need the repository form. ``headrace run`` and the benchmarks name their
model this way.

A :class:`ModelSource` is plain data, so each Ray actor can resolve and load its own copy. A
:class:`ResolvedModel` gives the :class:`~headrace.backends.base.BackendContext` of each
instance (``context``), for any :data:`~headrace.backends.base.BackendFactory`, or loads the
registered backend itself (``load_backend``).
"""

from __future__ import annotations

import hashlib
import os
import shutil
import tempfile
from dataclasses import dataclass, field

from headrace.backends.base import Backend, BackendContext
from headrace.config import ModelConfig, format_config, input_specs, output_specs
from headrace.devices import available_gpus
from headrace.errors import InvalidConfig, InvalidInput
from headrace.repository.api import ModelRepository
from headrace.types import TensorSpec

__all__ = ["DEFAULT_BATCH_SIZE", "ModelSource", "ResolvedModel", "resolve_model"]

#: The batch size when none is asked for (0): this, or the model's max_batch_size if smaller.
DEFAULT_BATCH_SIZE = 256

_FILE_BACKENDS = {".onnx": "onnxruntime"}


@dataclass(frozen=True)
class ModelSource:
    """``path``: ``REPO/NAME`` or a model file; ``version``: None for the newest served."""

    path: str
    version: int | None = None


@dataclass
class ResolvedModel:
    """A model version ready to load: its completed configuration and local directories."""

    name: str
    version: int
    config: ModelConfig
    model_dir: str
    version_dir: str
    _scratch: str | None = field(default=None, repr=False)

    @property
    def inputs(self) -> list[TensorSpec]:
        return input_specs(self.config)

    @property
    def outputs(self) -> list[TensorSpec]:
        return output_specs(self.config)

    def context(self, device: str = "cpu", instance_name: str = "") -> BackendContext:
        """What a backend factory needs to load this version as one instance on ``device``."""
        return BackendContext(
            model_name=self.name,
            version=self.version,
            model_dir=self.model_dir,
            version_dir=self.version_dir,
            config=self.config,
            device=device,
            instance_name=instance_name,
        )

    def load_backend(self, device: str, instance_name: str) -> Backend:
        """A loaded backend for this version on ``device`` (the backend its config names)."""
        from headrace.backends import load_backend

        return load_backend(self.context(device, instance_name))

    def fingerprint(self) -> str:
        """The completed configuration plus the content of every file of the version.

        Instance groups are left out: where instances run changes no result, so a job may
        resume on a machine with other devices.
        """
        described = type(self.config)()
        described.CopyFrom(self.config)
        described.ClearField("instance_group")
        digest = hashlib.sha256(format_config(described).encode("utf-8"))
        for folder, _, files in sorted(os.walk(self.version_dir)):
            for name in sorted(files):
                path = os.path.join(folder, name)
                digest.update(os.path.relpath(path, self.version_dir).encode() + b"\0")
                with open(path, "rb") as handle:
                    while block := handle.read(1 << 20):
                        digest.update(block)
        return digest.hexdigest()

    def cleanup(self) -> None:
        """Remove the on-the-fly repository of a bare model file, if one was made."""
        if self._scratch is not None:
            shutil.rmtree(self._scratch, ignore_errors=True)
            self._scratch = None


def resolve_model(source: ModelSource, batch_size: int) -> ResolvedModel:
    """Find, complete and check the model; the batch size must fit its ``max_batch_size``.

    ``batch_size`` 0 asks for no particular size: any batching model is accepted (a bare
    model file gets ``max_batch_size`` :data:`DEFAULT_BATCH_SIZE`).
    """
    path = os.path.abspath(source.path.rstrip("/"))
    scratch = None
    if os.path.isfile(path):
        path, scratch = _repository_for_file(path, batch_size)
    elif not os.path.isdir(path):
        raise InvalidInput(f"model {source.path!r} is neither a model directory nor a model file")
    repo = ModelRepository(os.path.dirname(path), strict_model_config=False)
    entry = repo[os.path.basename(path)]
    versions = entry.versions()
    if not versions:
        raise InvalidConfig(f"model {source.path!r} has no version to serve", source=entry.path)
    version = source.version if source.version is not None else versions[-1]
    config = entry.completed_config(version, gpus=available_gpus())
    resolved = ResolvedModel(
        entry.name, version, config, entry.path, entry.local_version_dir(version), scratch
    )
    _check_batch_size(resolved, batch_size, source.path)
    return resolved


def _repository_for_file(path: str, batch_size: int) -> tuple[str, str]:
    stem, suffix = os.path.splitext(os.path.basename(path))
    backend = _FILE_BACKENDS.get(suffix)
    if backend is None:
        raise InvalidInput(
            f"cannot run model file {path!r} directly (supported: {', '.join(_FILE_BACKENDS)}); "
            "put it in a model repository with a config.pbtxt and pass REPO/NAME"
        )
    scratch = tempfile.mkdtemp(prefix="headrace-run-")
    name = "".join(c if c.isalnum() or c in "_-" else "_" for c in stem) or "model"
    version_dir = os.path.join(scratch, name, "1")
    os.makedirs(version_dir)
    os.symlink(path, os.path.join(version_dir, f"model{suffix}"))
    with open(os.path.join(scratch, name, "config.pbtxt"), "w", encoding="utf-8") as handle:
        limit = batch_size or DEFAULT_BATCH_SIZE
        handle.write(f'backend: "{backend}"\nmax_batch_size: {limit}\n')
    return os.path.join(scratch, name), scratch


def _check_batch_size(model: ResolvedModel, batch_size: int, shown: str) -> None:
    limit = model.config.max_batch_size
    if limit <= 0:
        raise InvalidConfig(
            f"model {shown!r} has max_batch_size 0 (no batch dimension); offline runs need a "
            "batching model",
            field="max_batch_size",
        )
    if batch_size > limit:
        raise InvalidInput(
            f"batch size {batch_size} exceeds model {shown!r} max_batch_size {limit}; "
            f"pass --batch-size {limit} or raise max_batch_size in its config.pbtxt"
        )
