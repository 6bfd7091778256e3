"""Execute a torch callable (a TorchScript or a plain ``nn.Module``) the way Triton binds tensors.

Binding follows Triton's PyTorch backend:

- inputs: when every configured input is named ``<name>__<index>`` (``INPUT__0``) the index is
  the position in ``forward``; otherwise, when the names are ``forward``'s argument names, they
  bind by argument name; otherwise by configuration order;
- outputs: ``<name>__<index>`` picks the index in a returned tuple; otherwise configuration
  order; a returned dict binds by key; a single tensor is the only output.

numpy arrays in give numpy arrays out (``torch.from_numpy``, no copy on CPU); torch tensors on
the device in give tensors out, so the pipeline keeps its copies on its own streams.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import ml_dtypes
import numpy as np
from tritonclient.grpc import model_config_pb2

from headrace.backends.base import Backend
from headrace.backends.outputs import collect_outputs
from headrace.backends.signature import tensor_specs
from headrace.backends.threads import limit_torch_threads
from headrace.config import state_specs
from headrace.errors import InvalidConfig, InvalidInput, ModelExecutionError, require
from headrace.types import Outputs

__all__ = ["TorchExecutor", "indexed_position", "require_tensors"]

_INDEXED = re.compile(r"^.+__(\d+)$")
_BF16 = np.dtype(ml_dtypes.bfloat16)


def indexed_position(name: str) -> int | None:
    """The index of a ``<name>__<index>`` tensor name, or None for other names."""
    match = _INDEXED.match(name)
    return int(match.group(1)) if match else None


def require_tensors(config: model_config_pb2.ModelConfig, model: str, args: Sequence[str]) -> None:
    """Torch files do not record dtypes or shapes: the config must list inputs and outputs."""
    if not len(config.input):
        raise InvalidConfig(
            f"model '{model}': a PyTorch model does not record its input dtypes and shapes; "
            f"list input [...] in config.pbtxt (forward takes {list(args)})",
            field="input",
        )
    if not len(config.output):
        raise InvalidConfig(
            f"model '{model}': a PyTorch model does not record its outputs; "
            "list output [...] in config.pbtxt",
            field="output",
        )
    for tensor in [*config.input, *config.output]:
        if tensor.data_type == model_config_pb2.TYPE_STRING:
            raise InvalidConfig(
                f"model '{model}': tensor '{tensor.name}' is TYPE_STRING, which the PyTorch "
                "backends do not support",
                field="data_type",
            )


class TorchExecutor:
    """Binds configured inputs to ``fn``'s arguments and its results to configured outputs."""

    def __init__(
        self,
        fn: Callable[..., Any],
        config: model_config_pb2.ModelConfig,
        *,
        arg_names: Sequence[str],
        device: str,
        model: str,
    ) -> None:
        self.torch = require("torch", "torch")
        if self.torch.device(device).type == "cpu":
            limit_torch_threads(config)
        self.fn = fn
        self.model = model
        self.device = self.torch.device(device)
        state_inputs, state_outputs = state_specs(config)
        # Implicit state: the state inputs come after the configured ones, as do the outputs.
        self.input_names = [tensor.name for tensor in config.input]
        self.input_names += [s.name for s in state_inputs if s.name not in self.input_names]
        self.input_order = _input_order(self.input_names, list(arg_names), model)
        self.outputs = tensor_specs(config.output)
        self.outputs += [s for s in state_outputs if s.name not in {o.name for o in self.outputs}]
        self.output_names = [spec.name for spec in self.outputs]
        positions = [indexed_position(name) for name in self.output_names]
        self.output_positions: list[int] | None = (
            [p for p in positions if p is not None] if None not in positions else None
        )

    def __call__(self, inputs: Mapping[str, Any]) -> dict[str, Any]:
        torch = self.torch
        as_torch = any(isinstance(value, torch.Tensor) for value in inputs.values())
        args = [self._tensor(name, inputs) for name in self.input_order]
        try:
            with torch.inference_mode():
                result = self.fn(*args)
        except Exception as exc:
            raise ModelExecutionError(
                f"model '{self.model}' raised {type(exc).__name__}: {exc}"
            ) from exc
        named = collect_outputs(result, self.output_names, self.model, self.output_positions)
        outputs: dict[str, Any] = {}
        for spec in self.outputs:
            value = named[spec.name]
            if not isinstance(value, torch.Tensor):
                raise ModelExecutionError(
                    f"model '{self.model}' returned {type(value).__name__} for output "
                    f"'{spec.name}', expected a tensor"
                )
            if value.dtype != spec.datatype.torch_dtype:
                value = value.to(spec.datatype.torch_dtype)
            outputs[spec.name] = value if as_torch else _to_numpy(torch, value)
        return outputs

    def _tensor(self, name: str, inputs: Mapping[str, Any]) -> Any:
        torch = self.torch
        try:
            value = inputs[name]
        except KeyError:
            raise InvalidInput(f"model '{self.model}' needs input '{name}'") from None
        if isinstance(value, torch.Tensor):
            return value if value.device == self.device else value.to(self.device)
        array = np.asarray(value)
        if not array.flags.writeable:
            # torch.from_numpy warns on read-only memory (a wire buffer); copy once instead.
            array = array.copy()
        if array.dtype == _BF16:
            return torch.from_numpy(array.view(np.int16)).view(torch.bfloat16).to(self.device)
        return torch.from_numpy(array).to(self.device)


def _to_numpy(torch: Any, tensor: Any) -> np.ndarray:
    """A host numpy array of ``tensor`` (bfloat16 through ml_dtypes, which numpy lacks)."""
    tensor = tensor.detach().cpu()
    if tensor.dtype == torch.bfloat16:
        return np.ascontiguousarray(tensor.view(torch.int16).numpy().view(_BF16))
    return np.ascontiguousarray(tensor.numpy())


def _input_order(names: list[str], arg_names: list[str], model: str) -> list[str]:
    indexed = {name: indexed_position(name) for name in names}
    positions = [p for p in indexed.values() if p is not None]
    if names and len(positions) == len(names):
        if sorted(positions) != list(range(len(names))):
            raise InvalidConfig(
                f"model '{model}': input indexes {sorted(positions)} must be 0..{len(names) - 1}",
                field="input",
            )
        return sorted(names, key=lambda name: indexed[name] or 0)
    if arg_names and set(names) == set(arg_names[: len(names)]):
        return arg_names[: len(names)]
    if arg_names and len(arg_names) < len(names):
        raise InvalidConfig(
            f"model '{model}': config lists {len(names)} inputs {names}, forward takes "
            f"{len(arg_names)} {arg_names}",
            field="input",
        )
    return names


class TorchModuleBackend(Backend):
    """A torch module on the instance's device, executed through a :class:`TorchExecutor`."""

    name = "pytorch"
    accepts_torch = True

    def bind(self, module: Any, arg_names: Sequence[str]) -> None:
        """Check the configured inputs against ``arg_names`` and bind ``module`` to them."""
        context = self.context
        require_tensors(context.config, context.model_name, arg_names)
        self.module = module
        self._run = TorchExecutor(
            module,
            context.config,
            arg_names=arg_names,
            device=context.device,
            model=context.model_name,
        )

    def execute(self, inputs: Mapping[str, Any]) -> Outputs:
        return self._run(inputs)

    def unload(self) -> None:
        self.__dict__.pop("_run", None)
        self.__dict__.pop("module", None)
