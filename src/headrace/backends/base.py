"""The contract every backend keeps.

A backend turns one model version on disk (or a Python callable) into something that executes
batches. The engine's ``ModelInstance`` owns exactly one backend object and is its only caller.

Promises:
- ``execute`` is called by one thread at a time per backend object (an instance group of
  ``count`` N creates N backend objects, which may run concurrently on different threads).
  Heavy compute (torch, onnxruntime) releases the GIL.
- Inputs arrive keyed by the configuration's input names, as contiguous numpy arrays (BYTES as
  object arrays of ``bytes``), batch dimension first when the model batches. A backend whose
  ``accepts_torch`` is True may also be handed torch tensors already on its ``device``; it then
  returns torch tensors on that device (this is how the pipeline keeps copies on its own
  streams).
- ``execute`` returns every output named in the configuration. It never keeps references to
  its inputs after it returns: the caller reuses those buffers.
- Backends that must see requests one by one (Triton's Python backend) set
  ``handles_request_lists`` and implement ``execute_requests``: they get the batch's
  :class:`~headrace.types.WorkItem` objects (ids, sequence flags, parameters, requested
  outputs, response sinks) and answer each with its outputs, its error, or None when the
  backend answers through the item's sink itself (decoupled models). Everyone else is handed
  merged batches and never sees a work item.
- ``accepts_torch`` may depend on the device (a class attribute or a property); it is read
  once, when the instance builds its pipeline.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, ClassVar

from headrace.types import Outputs, WorkItem

if TYPE_CHECKING:
    from tritonclient.grpc import model_config_pb2

__all__ = ["Backend", "BackendContext", "BackendFactory", "RequestResult"]

RequestResult = Outputs | BaseException | None
"""One request's result from ``execute_requests``: its outputs, its own error, or None when
the backend answered through the request's sink (a decoupled model)."""


@dataclass(frozen=True)
class BackendContext:
    """Everything a backend needs to load one model version.

    ``version_dir`` is always a local directory (remote repositories are localised first);
    ``device`` is ``"cpu"`` or ``"cuda:N"``. ``serving``: the instance runs in a server, whose
    frontends need the same cores between batches (a backend's compute threads should then
    sleep rather than spin while idle); False for direct and offline use.
    """

    model_name: str
    version: int
    model_dir: str
    version_dir: str
    config: model_config_pb2.ModelConfig
    device: str = "cpu"
    instance_name: str = ""
    serving: bool = False


@dataclass(frozen=True)
class ShippedContext:
    """A BackendContext as it crosses to another process (a worker process, a Ray actor).

    The generated ``ModelConfig`` class says its module is ``model_config_pb2``, which
    cloudpickle cannot import by that name, so the configuration travels as its bytes.
    """

    values: dict[str, Any]
    config: bytes

    @classmethod
    def of(cls, context: BackendContext) -> ShippedContext:
        values = {name: getattr(context, name) for name in context.__dataclass_fields__}
        config = values.pop("config")
        return cls(values, config.SerializeToString())

    def unpack(self) -> BackendContext:
        from tritonclient.grpc import model_config_pb2

        config = model_config_pb2.ModelConfig.FromString(self.config)
        return BackendContext(config=config, **self.values)


class Backend(ABC):
    """One loaded model version, executed by one engine instance."""

    #: Backend name as a configuration's ``backend`` field spells it (``onnxruntime``…).
    name: ClassVar[str] = ""
    #: Whether ``execute`` also takes torch tensors on ``device`` (and returns them).
    accepts_torch: bool = False
    #: Whether the backend must see requests one by one (``execute_requests``).
    handles_request_lists: ClassVar[bool] = False

    def __init__(self, context: BackendContext) -> None:
        self.context = context

    @property
    def device(self) -> str:
        """Where the model computes: ``cpu`` or ``cuda:N``."""
        return self.context.device

    @abstractmethod
    def execute(self, inputs: Mapping[str, Any]) -> Outputs:
        """Run one merged batch and return every configured output."""

    def execute_requests(self, requests: Sequence[WorkItem]) -> list[RequestResult]:
        """Run requests one by one; an entry is an exception when only that request failed."""
        raise NotImplementedError(f"backend {self.name!r} executes merged batches only")

    def unload(self) -> None:
        """Release the model; called once, after the last ``execute``."""

    @classmethod
    def autocomplete(cls, config: model_config_pb2.ModelConfig, version_dir: str) -> None:
        """Fill missing inputs, outputs and ``max_batch_size`` from the model file, in place."""


BackendFactory = Callable[[BackendContext], Backend]
"""Builds (and loads) the backend of one instance from its context. Placement calls it once
per instance, on the instance's device; for Ray actors it must be picklable."""
