"""Plain PyTorch models: an ``nn.Module`` class plus its weights (no TorchScript needed).

The layout follows Triton's PyTorch 2 models: ``MODEL/VERSION/model.py`` defines the
``torch.nn.Module`` subclass and ``MODEL/VERSION/model.pt`` (optional, or
``default_model_filename``) holds its ``state_dict``, loaded with
``torch.load(weights_only=True)`` so a weights file cannot run code. The configuration names
``backend: "pytorch"`` as for TorchScript; a ``model.py`` in the version directory selects this
backend. Parameters:

- ``module``: which class to build. ``ClassName`` picks a class of ``model.py`` (needed only when
  it defines several modules); ``package.module:ClassName`` imports an installed class instead,
  and then ``model.py`` is not needed.

The class is constructed without arguments, put in ``eval()`` mode and moved to the instance's
device. Tensors bind as :mod:`headrace.backends.torch_exec` describes; dtypes and shapes come
from the configuration, which must list inputs and outputs.
"""

from __future__ import annotations

import importlib
import importlib.util
import inspect
import itertools
import os
import sys
from types import ModuleType
from typing import Any

from tritonclient.grpc import model_config_pb2

from headrace.backends.base import BackendContext
from headrace.backends.signature import model_file, parameter
from headrace.backends.torch_exec import TorchModuleBackend, require_tensors
from headrace.config.platforms import backend_row
from headrace.errors import InternalError, InvalidConfig, require

__all__ = ["MODULE_FILENAME", "PyTorchBackend", "resolve_module_class"]


def _file_names() -> tuple[str, str]:
    """The module source and weights file names, from the one table of backends."""
    row = backend_row("pytorch")
    if row is None or row.variant is None:
        raise InternalError("the table of backends has no plain PyTorch variant")
    return row.variant.source_file, row.model_file


MODULE_FILENAME, WEIGHTS_FILENAME = _file_names()

_counter = itertools.count()


class PyTorchBackend(TorchModuleBackend):
    """An ``nn.Module`` built from its class and ``state_dict``."""

    def __init__(self, context: BackendContext) -> None:
        super().__init__(context)
        torch = require("torch", "torch")
        config = context.config
        cls = resolve_module_class(config, context.version_dir)
        try:
            module = cls()
        except Exception as exc:
            raise InvalidConfig(f"cannot construct {cls.__qualname__}(): {exc}") from exc
        weights = model_file(context, WEIGHTS_FILENAME)
        if os.path.isfile(weights):
            _load_weights(torch, module, weights)
        elif config.default_model_filename:
            raise InvalidConfig(f"no weights file at {weights}", field="default_model_filename")
        module = module.eval().to(torch.device(context.device))
        self.bind(module, _arg_names(module))

    @classmethod
    def autocomplete(cls, config: model_config_pb2.ModelConfig, version_dir: str) -> None:
        """Nothing can be filled from a class; fail early, naming ``forward``'s arguments."""
        if len(config.input) and len(config.output):
            return
        module_cls = resolve_module_class(config, version_dir)
        require_tensors(config, config.name or version_dir, _arg_names(module_cls))


def resolve_module_class(config: model_config_pb2.ModelConfig, version_dir: str) -> type:
    """The ``nn.Module`` subclass the ``module`` parameter or ``model.py`` names."""
    torch = require("torch", "torch")
    spec = parameter(config, "module").strip()
    if ":" in spec:
        module_name, _, class_name = spec.partition(":")
        try:
            found = getattr(importlib.import_module(module_name), class_name)
        except (ImportError, AttributeError) as exc:
            raise InvalidConfig(f"cannot import {spec!r}: {exc}", field="parameters") from exc
        return _check_module_class(torch, found, spec)
    source = _import_file(os.path.join(version_dir, MODULE_FILENAME))
    if spec:
        found = getattr(source, spec, None)
        if found is None:
            raise InvalidConfig(
                f"{source.__file__} defines no class {spec!r} (parameter 'module')",
                field="parameters",
            )
        return _check_module_class(torch, found, spec)
    classes = [
        value
        for value in vars(source).values()
        if inspect.isclass(value)
        and issubclass(value, torch.nn.Module)
        and value.__module__ == source.__name__
    ]
    if len(classes) != 1:
        names = [c.__name__ for c in classes]
        raise InvalidConfig(
            f"{source.__file__} defines {len(classes)} nn.Module classes {names}; "
            'name one with parameters { key: "module" value: { string_value: "Name" } }',
            field="parameters",
        )
    return classes[0]


def _check_module_class(torch: Any, found: Any, spec: str) -> type:
    if not (inspect.isclass(found) and issubclass(found, torch.nn.Module)):
        raise InvalidConfig(f"{spec!r} is not a torch.nn.Module subclass", field="parameters")
    return found


def _import_file(path: str) -> ModuleType:
    """Import ``model.py`` under a unique name so versions and models never collide."""
    if not os.path.isfile(path):
        raise InvalidConfig(
            f"no {MODULE_FILENAME} at {path}; a plain PyTorch model needs its class there "
            "or a 'module' parameter of the form package.module:ClassName"
        )
    name = f"headrace_models._pytorch_{next(_counter)}"
    spec = importlib.util.spec_from_file_location(name, path)
    if spec is None or spec.loader is None:
        raise InvalidConfig(f"cannot import {path}")
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    try:
        spec.loader.exec_module(module)
    except Exception as exc:
        sys.modules.pop(name, None)
        raise InvalidConfig(f"importing {path} failed: {type(exc).__name__}: {exc}") from exc
    return module


def _load_weights(torch: Any, module: Any, path: str) -> None:
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
        module.load_state_dict(state)
    except Exception as exc:
        raise InvalidConfig(f"cannot load the state_dict in {path}: {exc}") from exc


def _arg_names(module: Any) -> list[str]:
    """``forward``'s parameter names (without ``self``) of a module or module class."""
    try:
        parameters = inspect.signature(module.forward).parameters.values()
    except (TypeError, ValueError):
        return []
    return [
        p.name
        for p in parameters
        if p.name != "self" and p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD)
    ]
