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
  ``handles_request_lists`` and implement ``execute_requests``; everyone else is handed merged
  batches.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, ClassVar

import numpy as np

if TYPE_CHECKING:
    from tritonclient.grpc import model_config_pb2

__all__ = ["Backend", "BackendContext", "Outputs"]

Outputs = dict[str, Any]
"""Output name → numpy array (or torch tensor for ``accepts_torch`` backends)."""


@dataclass(frozen=True)
class BackendContext:
    """Everything a backend needs to load one model version.

    ``version_dir`` is always a local directory (remote repositories are localised first);
    ``device`` is ``"cpu"`` or ``"cuda:N"``.
    """

    model_name: str
    version: int
    model_dir: str
    version_dir: str
    config: model_config_pb2.ModelConfig
    device: str = "cpu"
    instance_name: str = ""


class Backend(ABC):
    """One loaded model version, executed by one engine instance."""

    #: Backend name as a configuration's ``backend`` field spells it (``onnxruntime``…).
    name: ClassVar[str] = ""
    #: Whether ``execute`` also takes torch tensors on ``device`` (and returns them).
    accepts_torch: ClassVar[bool] = False
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

    def execute_requests(
        self, requests: Sequence[Mapping[str, np.ndarray]]
    ) -> list[Outputs | BaseException]:
        """Run requests one by one; an entry is an exception when only that request failed."""
        raise NotImplementedError(f"backend {self.name!r} executes merged batches only")

    def unload(self) -> None:
        """Release the model; called once, after the last ``execute``."""

    @classmethod
    def autocomplete(cls, config: model_config_pb2.ModelConfig, version_dir: str) -> None:
        """Fill missing inputs, outputs and ``max_batch_size`` from the model file, in place."""
