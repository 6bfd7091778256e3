"""Backends: one module per way of executing a model (see ``base.Backend`` for the contract).

A configuration picks its backend as Triton's does, by ``backend`` or ``platform``:

| backend / platform                    | class                                   |
| ------------------------------------- | --------------------------------------- |
| ``onnxruntime`` / ``onnxruntime_onnx`` | ``onnx.OnnxRuntimeBackend``             |
| ``pytorch`` / ``pytorch_libtorch``    | ``torchscript.TorchScriptBackend``      |
| the same, with ``VERSION/model.py`` or a ``module`` parameter | ``pytorch.PyTorchBackend`` |
| ``python``                            | ``python.TritonPythonBackend``          |

Classes are imported only when chosen, so torch or onnxruntime load only for models that use
them. Python callables bound from code use ``callable.CallableBackend`` directly.
"""

from __future__ import annotations

import importlib
import os

from headrace.backends.base import Backend, BackendContext
from headrace.config import ModelConfig
from headrace.errors import InvalidConfig

__all__ = ["SUPPORTED_BACKENDS", "Backend", "BackendContext", "backend_class_for", "load_backend"]

# backend name -> (module, class); platforms map onto these names first.
_CLASSES: dict[str, tuple[str, str]] = {
    "onnxruntime": ("headrace.backends.onnx", "OnnxRuntimeBackend"),
    "pytorch": ("headrace.backends.torchscript", "TorchScriptBackend"),
    "python": ("headrace.backends.python", "TritonPythonBackend"),
}
_PLAIN_PYTORCH = ("headrace.backends.pytorch", "PyTorchBackend")
_PLATFORMS = {"onnxruntime_onnx": "onnxruntime", "pytorch_libtorch": "pytorch"}

SUPPORTED_BACKENDS = tuple(sorted({*_CLASSES, *_PLATFORMS}))


def backend_class_for(config: ModelConfig, version_dir: str | None = None) -> type[Backend]:
    """The backend class a configuration's ``backend``/``platform`` names (imported lazily).

    ``version_dir`` tells TorchScript (``model.pt`` alone) from a plain PyTorch model
    (``model.py`` beside it); without it, only a ``module`` parameter selects plain PyTorch.
    """
    name = config.backend or _PLATFORMS.get(config.platform, "")
    if name not in _CLASSES:
        given = config.backend or config.platform
        what = f"backend {given!r}" if given else "no backend or platform"
        raise InvalidConfig(
            f"model '{config.name}' names {what}; supported: {', '.join(SUPPORTED_BACKENDS)}",
            field="backend" if config.backend or not config.platform else "platform",
        )
    target = _CLASSES[name]
    if name == "pytorch" and _is_plain_pytorch(config, version_dir):
        target = _PLAIN_PYTORCH
    module_name, class_name = target
    cls: type[Backend] = getattr(importlib.import_module(module_name), class_name)
    return cls


def load_backend(context: BackendContext) -> Backend:
    """Construct and load the backend for ``context.config``."""
    return backend_class_for(context.config, context.version_dir)(context)


def _is_plain_pytorch(config: ModelConfig, version_dir: str | None) -> bool:
    if "module" in config.parameters:
        return True
    return version_dir is not None and os.path.isfile(os.path.join(version_dir, "model.py"))
