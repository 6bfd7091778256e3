"""Backends: one module per way of executing a model (see ``base.Backend`` for the contract).

A configuration picks its backend as Triton's does, by ``backend`` or ``platform``; the names,
classes and file layouts come from the one table in :mod:`headrace.config.platforms`:

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
from headrace.config.platforms import (
    SourceVariant,
    backend_of_platform,
    backend_row,
    served_rows,
)
from headrace.errors import InvalidConfig

__all__ = ["SUPPORTED_BACKENDS", "Backend", "BackendContext", "backend_class_for", "load_backend"]

SUPPORTED_BACKENDS = tuple(
    sorted({name for row in served_rows() for name in (row.name, *row.platform_names)})
)


def backend_class_for(config: ModelConfig, version_dir: str | None = None) -> type[Backend]:
    """The backend class a configuration's ``backend``/``platform`` names (imported lazily).

    ``version_dir`` tells TorchScript (``model.pt`` alone) from a plain PyTorch model
    (``model.py`` beside it); without it, only a ``module`` parameter selects plain PyTorch.
    """
    name = config.backend or backend_of_platform(config.platform)
    row = backend_row(name)
    if row is None or row.implementation is None:
        field = "backend" if config.backend or not config.platform else "platform"
        supported = ", ".join(SUPPORTED_BACKENDS)
        if not (config.backend or config.platform):
            raise InvalidConfig(
                f"model '{config.name}' names no backend or platform; supported: {supported}",
                field=field,
            )
        # Triton's words for a backend it does not have, then which ones headrace has.
        platform = f" (platform '{config.platform}')" if field == "platform" else ""
        raise InvalidConfig(
            f"unable to find backend library for backend '{name or config.platform}' of model "
            f"'{config.name}'{platform}; headrace serves: {supported}",
            field=field,
        )
    target = row.implementation
    if row.variant is not None and _uses_source(row.variant, config, version_dir):
        target = row.variant.implementation
    module_name, class_name = target.split(":")
    cls: type[Backend] = getattr(importlib.import_module(module_name), class_name)
    return cls


def load_backend(context: BackendContext) -> Backend:
    """Construct and load the backend for ``context.config``."""
    return backend_class_for(context.config, context.version_dir)(context)


def _uses_source(variant: SourceVariant, config: ModelConfig, version_dir: str | None) -> bool:
    if variant.parameter in config.parameters:
        return True
    source = variant.source_file
    return version_dir is not None and os.path.isfile(os.path.join(version_dir, source))
