"""A Python callable served as a model (the PyTriton style ``Server().bind(name, fn, …)``).

``fn(**inputs)`` receives the merged batch as numpy arrays keyed by input name (batch
dimension first when ``max_batch_size > 0``) and returns a dict keyed by output name, a
sequence in configuration output order, or one array when there is a single output. Whatever
it returns is checked: a missing output or an output whose first dimension is not the batch
size fails the batch with :class:`ModelExecutionError` naming it.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

import numpy as np
from tritonclient.grpc import model_config_pb2

from headrace.backends.base import Backend, BackendContext
from headrace.backends.outputs import check_batch_size, collect_outputs
from headrace.backends.threads import limit_torch_threads
from headrace.errors import HeadraceError, InvalidConfig, ModelExecutionError
from headrace.types import Outputs

__all__ = ["CallableBackend"]


class CallableBackend(Backend):
    """Wraps ``fn``; the GIL is released only as far as ``fn`` itself releases it."""

    name = "python_callable"

    def __init__(
        self,
        fn: Callable[..., Any],
        config: model_config_pb2.ModelConfig,
        *,
        device: str = "cpu",
        instance_name: str = "",
        version: int = 1,
    ) -> None:
        if not callable(fn):
            raise InvalidConfig(f"model '{config.name}': {fn!r} is not callable")
        if not len(config.output):
            raise InvalidConfig(f"model '{config.name}' declares no outputs", field="output")
        super().__init__(
            BackendContext(
                model_name=config.name,
                version=version,
                model_dir="",
                version_dir="",
                config=config,
                device=device,
                instance_name=instance_name,
            )
        )
        self.fn = fn
        self._outputs = [output.name for output in config.output]
        if not device.startswith("cuda"):
            limit_torch_threads(config)  # a function that computes with torch
        self._batched = config.max_batch_size > 0

    def execute(self, inputs: Mapping[str, Any]) -> Outputs:
        model = self.context.model_name
        try:
            result = self.fn(**inputs)
        except HeadraceError:
            raise
        except Exception as exc:
            raise ModelExecutionError(
                f"model '{model}' raised {type(exc).__name__}: {exc}"
            ) from exc
        outputs = {
            name: np.asarray(value)
            for name, value in collect_outputs(result, self._outputs, model).items()
        }
        if self._batched and inputs:
            batch = int(next(iter(inputs.values())).shape[0])
            check_batch_size(outputs, batch, model)
        return outputs
