"""One model instance opened for a direct scan: its inputs and a timed-call ``infer``.

The instance is placed as serving places one (``place_instances`` with a count of 1), so a
scan measures the engine the server runs, without the server.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass

import numpy as np

from headrace.bench.scan import InputSpec, Target
from headrace.engine.instance import ModelInstance

__all__ = ["direct_target", "open_instance"]


@contextmanager
def direct_target(
    model: str, batch_size: int, *, device: str = "auto", version: int | None = None
) -> Iterator[Target]:
    """A scan target: one instance of ``model`` (``REPO/NAME`` or a ``.onnx`` file) on
    ``device``, loaded for batches up to ``batch_size``."""
    with open_instance(model, batch_size, device, version) as opened:
        yield Target(
            "direct",
            opened.name,
            opened.inputs,
            opened.max_batch_size,
            opened.infer,
            device=opened.device,
        )


@dataclass(frozen=True)
class OpenedInstance:
    name: str
    inputs: tuple[InputSpec, ...]
    max_batch_size: int
    batched: bool
    device: str
    infer: Callable[[Mapping[str, np.ndarray]], object]


@contextmanager
def open_instance(
    model: str, batch_size: int, device: str, version: int | None
) -> Iterator[OpenedInstance]:
    """Load one instance of ``model`` (``REPO/NAME`` or a ``.onnx`` file) on ``device``."""
    from headrace.backends import load_backend
    from headrace.engine.placement import PlacementOptions, close_instances, place_instances
    from headrace.repository.resolve import ModelSource, resolve_model

    resolved = resolve_model(ModelSource(model, version), batch_size)
    try:
        options = PlacementOptions(count=1, device="" if device == "auto" else device)
        instances = place_instances(resolved.context(), load_backend, options)
    finally:
        resolved.cleanup()
    try:
        instance = instances[0]
        yield OpenedInstance(
            name=resolved.name,
            inputs=tuple(InputSpec(s.name, s.datatype, tuple(s.dims)) for s in resolved.inputs),
            max_batch_size=resolved.config.max_batch_size,
            batched=resolved.config.max_batch_size > 0,
            device=instance.backend.device,
            infer=_infer(instance),
        )
    finally:
        close_instances(instances)


def _infer(instance: ModelInstance) -> Callable[[Mapping[str, np.ndarray]], object]:
    """Host batches on the calling thread; GPU batches through the pipeline, then a sync."""
    if instance.can_run_now:

        def run_now(inputs: Mapping[str, np.ndarray]) -> object:
            result = instance.run_requests_now([inputs]).results[0]
            if isinstance(result, BaseException):
                raise result
            return result

        return run_now
    import torch

    device = torch.device(instance.backend.device)

    def on_gpu(inputs: Mapping[str, np.ndarray]) -> object:
        outputs = instance.submit(inputs).result()
        torch.cuda.synchronize(device)
        return outputs

    return on_gpu
