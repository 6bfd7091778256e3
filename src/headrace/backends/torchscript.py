"""TorchScript models (Triton's ``pytorch`` backend / ``pytorch_libtorch`` platform).

Layout: ``MODEL/VERSION/model.pt`` (or ``default_model_filename``), a file written by
``torch.jit.save``. Inputs and outputs bind as :mod:`headrace.backends.torch_exec` describes
(``INPUT__0``/``OUTPUT__0`` indexes, ``forward`` argument names, or configuration order).
A TorchScript file does not record dtypes or shapes, so the configuration must list inputs and
outputs; auto-completion only checks that they are there and names ``forward``'s arguments
when they are not.
"""

from __future__ import annotations

import os
from typing import Any

from tritonclient.grpc import model_config_pb2

from headrace.backends.base import BackendContext
from headrace.backends.signature import model_file
from headrace.backends.torch_exec import TorchModuleBackend, require_tensors
from headrace.config.platforms import default_model_filename
from headrace.errors import InvalidConfig, require

__all__ = ["TorchScriptBackend", "forward_arg_names"]

DEFAULT_FILENAME = default_model_filename("pytorch_libtorch", "pytorch")


class TorchScriptBackend(TorchModuleBackend):
    """A ``torch.jit`` module loaded onto the instance's device."""

    def __init__(self, context: BackendContext) -> None:
        super().__init__(context)
        module = _load(model_file(context, DEFAULT_FILENAME), context.device)
        self.bind(module, forward_arg_names(module))

    @classmethod
    def autocomplete(cls, config: model_config_pb2.ModelConfig, version_dir: str) -> None:
        """Nothing can be filled from a TorchScript file; fail early, naming what is missing."""
        path = os.path.join(version_dir, config.default_model_filename or DEFAULT_FILENAME)
        if len(config.input) and len(config.output):
            return
        args = forward_arg_names(_load(path, "cpu"))
        require_tensors(config, config.name or path, args)


def forward_arg_names(module: Any) -> list[str]:
    """The argument names of a scripted/traced module's ``forward``, without ``self``."""
    try:
        arguments = module.forward.schema.arguments
    except (AttributeError, RuntimeError):
        return []
    return [arg.name for arg in arguments if arg.name != "self"]


def _load(path: str, device: str) -> Any:
    torch = require("torch", "torch")
    if not os.path.isfile(path):
        raise InvalidConfig(f"no TorchScript file at {path}")
    try:
        module = torch.jit.load(path, map_location=torch.device(device))
    except Exception as exc:
        raise InvalidConfig(f"torch.jit.load cannot read {path}: {exc}") from exc
    module.eval()
    return module
