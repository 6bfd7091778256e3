"""The one table of Triton backends: platform names, model files, headrace's implementations.

Everything that turns a backend or platform name into something else reads :data:`BACKENDS`:
completing a configuration (``platform`` <-> ``backend``, ``default_model_filename``, the
default CPU instance count), choosing the class that executes a model, inferring a backend
from the model file when there is no ``config.pbtxt``, checking a version directory holds the
right file, and exporting from torch. Backends headrace does not execute (TensorRT,
TensorFlow, OpenVINO) are rows too, so their configurations complete and validate as Triton's
do, and are then refused by name when loaded.

Implementations are ``"module:Class"`` strings, imported only when a model uses them (see
:func:`headrace.backends.backend_class_for`), so this table costs no torch or onnxruntime.
"""

from __future__ import annotations

from dataclasses import dataclass

from headrace.errors import InvalidConfig

__all__ = [
    "BACKENDS",
    "ENSEMBLE_PLATFORM",
    "BackendRow",
    "Platform",
    "SourceVariant",
    "backend_of_platform",
    "backend_row",
    "check_platform_backend",
    "default_cpu_instances",
    "default_model_filename",
    "platform_of_backend",
    "served_rows",
]

#: The platform of an ensemble, which has no backend (and is not a row of the table).
ENSEMBLE_PLATFORM = "ensemble"


@dataclass(frozen=True)
class Platform:
    """A Triton platform name; ``model_file`` overrides the backend's default file name."""

    name: str
    model_file: str = ""


@dataclass(frozen=True)
class SourceVariant:
    """Another implementation of a backend, chosen when the model's Python source is given.

    It applies when ``source_file`` sits beside the model file in the version directory, or
    when the configuration has a ``parameter`` (whose value ``package.module:Class`` names an
    installed class, so then no file is needed at all).
    """

    implementation: str
    source_file: str = "model.py"
    parameter: str = "module"


@dataclass(frozen=True)
class BackendRow:
    """One Triton backend as headrace knows it.

    ``platforms``: the platform names this backend serves; with exactly one, Triton fills it in
    when only the backend is given. ``model_file``: the file Triton looks for in a version
    directory (a platform's own ``model_file`` wins). ``implementation``: headrace's class as
    ``"module:Class"``, or None when headrace does not execute this backend.
    ``cpu_instances``: Triton's instance count for a ``KIND_CPU`` group without one.
    ``implied_by``: the model file name that selects this backend when there is no
    ``config.pbtxt`` (rows earlier in :data:`BACKENDS` win). ``variant``: an alternative
    implementation chosen by the presence of Python source.
    """

    name: str
    platforms: tuple[Platform, ...] = ()
    model_file: str = ""
    implementation: str | None = None
    cpu_instances: int = 1
    implied_by: str = ""
    variant: SourceVariant | None = None

    @property
    def platform_names(self) -> tuple[str, ...]:
        return tuple(platform.name for platform in self.platforms)


#: Every backend, in the order a version directory's files are tried without config.pbtxt.
BACKENDS: tuple[BackendRow, ...] = (
    BackendRow(
        "onnxruntime",
        platforms=(Platform("onnxruntime_onnx"),),
        model_file="model.onnx",
        implementation="headrace.backends.onnx:OnnxRuntimeBackend",
        cpu_instances=2,
        implied_by="model.onnx",
    ),
    BackendRow(
        "pytorch",
        platforms=(Platform("pytorch_libtorch"),),
        model_file="model.pt",
        implementation="headrace.backends.torchscript:TorchScriptBackend",
        implied_by="model.pt",
        variant=SourceVariant("headrace.backends.pytorch:PyTorchBackend"),
    ),
    BackendRow(
        "python",
        model_file="model.py",
        implementation="headrace.backends.python:TritonPythonBackend",
        implied_by="model.py",
    ),
    BackendRow("tensorrt", platforms=(Platform("tensorrt_plan"),), model_file="model.plan"),
    BackendRow(
        "tensorflow",
        platforms=(
            Platform("tensorflow_graphdef", "model.graphdef"),
            Platform("tensorflow_savedmodel", "model.savedmodel"),
        ),
        cpu_instances=2,
    ),
    BackendRow("openvino", model_file="model.xml"),
)

_BY_NAME = {row.name: row for row in BACKENDS}
_BY_PLATFORM = {platform.name: row for row in BACKENDS for platform in row.platforms}


def backend_row(backend: str) -> BackendRow | None:
    """The row of a backend name; None for a backend Triton's table does not list."""
    return _BY_NAME.get(backend)


def served_rows() -> tuple[BackendRow, ...]:
    """The rows headrace can execute (those with an implementation), in table order."""
    return tuple(row for row in BACKENDS if row.implementation is not None)


def backend_of_platform(platform: str) -> str:
    """The backend that serves ``platform`` (``onnxruntime_onnx`` -> ``onnxruntime``); ''."""
    row = _BY_PLATFORM.get(platform)
    return row.name if row is not None else ""


def platform_of_backend(backend: str) -> str:
    """The platform Triton fills in for ``backend`` alone; '' when it has none or several."""
    row = _BY_NAME.get(backend)
    if row is None or len(row.platforms) != 1:
        return ""
    return row.platforms[0].name


def default_model_filename(platform: str, backend: str) -> str:
    """The model file Triton looks for in a version directory; empty when unknown."""
    row = _BY_NAME.get(backend)
    if row is None:
        return ""
    for candidate in row.platforms:
        if candidate.name == platform and candidate.model_file:
            return candidate.model_file
    return row.model_file


def default_cpu_instances(backend: str) -> int:
    """Triton's instance count for a ``KIND_CPU`` group that gives none (2 for ONNX Runtime)."""
    row = _BY_NAME.get(backend)
    return row.cpu_instances if row is not None else 1


def check_platform_backend(platform: str, backend: str, source: str = "") -> None:
    """Reject a platform/backend pair Triton would refuse (without changing anything).

    Only backends that have platforms check them; any other backend accepts any platform.
    """
    if platform == ENSEMBLE_PLATFORM:
        if backend:
            raise InvalidConfig(
                f"ensemble models must have an empty backend, got {backend!r}",
                source=source,
                field="backend",
            )
        return
    if not platform and not backend:
        raise InvalidConfig("must specify 'platform' or 'backend'", source=source)
    row = _BY_NAME.get(backend)
    if row is not None and row.platforms and platform and platform not in row.platform_names:
        raise InvalidConfig(
            f"platform {platform!r} cannot be served by backend {backend!r}",
            source=source,
            field="platform",
        )
