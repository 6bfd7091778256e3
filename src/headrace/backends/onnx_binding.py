"""I/O binding: onnxruntime reads and writes torch tensors where they already are.

The CUDA pipeline hands a backend its batch as torch tensors on the GPU, with the pipeline's
compute stream current, and copies the tensors it gets back to the host on another stream (see
:mod:`headrace.engine.cuda`). :class:`TensorBinding` runs an onnxruntime session on such
tensors through an ``IOBinding``, without a host round trip:

- inputs are bound by ``data_ptr()``, shape and element type. A tensor of another dtype than the
  graph's is cast first, and one elsewhere (or a numpy array) is moved to the device first, both
  on the caller's stream.
- outputs whose shape is known before the run (the batch size, then the model's static dims or,
  where the model leaves a dim symbolic, the configuration's) are preallocated torch tensors that
  onnxruntime writes into.
- other outputs are allocated by onnxruntime on the device, then copied into a torch tensor (a
  DLPack view, then one device-to-device copy on the run's stream). The copy is on purpose:
  onnxruntime's buffer goes back to its arena when the binding is cleared, and the next run
  could rewrite it while the pipeline's device-to-host stream still reads the output; a tensor
  from torch's caching allocator is protected by ``record_stream`` instead. An onnxruntime build
  without DLPack gets those outputs on the host (onnxruntime copies them, and such a run
  synchronises its stream before it returns).

Streams, on a GPU: ``stream`` is the CUDA provider's ``user_compute_stream``, so onnxruntime
enqueues every kernel and copy of a run on it, and runs ask onnxruntime not to synchronise at
the end (run option ``disable_synchronize_execution_providers``): ``run`` returns once the work
is enqueued, and the outputs are complete when ``stream`` gets there. When the caller's current
stream is another one, ``stream`` first waits for it (the inputs were written there), the
caller's stream then waits for ``stream``, and the tensors used on both are marked with
``record_stream``, so to the caller a run looks like any torch operation on its own stream.
``IOBinding.synchronize_inputs`` / ``synchronize_outputs`` are not used: they call the provider's
device-wide ``Sync`` and would block the launch thread, where the stream order already suffices.

String tensors cannot be bound (onnxruntime's Python binding refuses them), nor can sequences or
maps: :func:`binds_every_tensor` tells the backend to run such models with ``session.run``.
"""

from __future__ import annotations

import contextlib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import ml_dtypes
import numpy as np
from tritonclient.grpc import model_config_pb2

from headrace.config.tensors import model_dims
from headrace.errors import InvalidInput, require
from headrace.types import DataType

__all__ = ["ONNX_DATATYPES", "BoundTensor", "TensorBinding", "binds_every_tensor", "known_dims"]

# ONNX TensorProto element types -> DataType (numbers from onnx.proto's TensorProto.DataType).
ONNX_DATATYPES: dict[int, DataType] = {
    1: DataType.FP32,
    2: DataType.UINT8,
    3: DataType.INT8,
    4: DataType.UINT16,
    5: DataType.INT16,
    6: DataType.INT32,
    7: DataType.INT64,
    8: DataType.BYTES,
    9: DataType.BOOL,
    10: DataType.FP16,
    11: DataType.FP64,
    12: DataType.UINT32,
    13: DataType.UINT64,
    16: DataType.BF16,
}

# onnxruntime's type strings ("tensor(float)") -> ONNX element types, for the numeric tensors
# a binding takes.
_ORT_ELEMENTS: dict[str, int] = {
    "tensor(float)": 1,
    "tensor(uint8)": 2,
    "tensor(int8)": 3,
    "tensor(uint16)": 4,
    "tensor(int16)": 5,
    "tensor(int32)": 6,
    "tensor(int64)": 7,
    "tensor(bool)": 9,
    "tensor(float16)": 10,
    "tensor(double)": 11,
    "tensor(uint32)": 12,
    "tensor(uint64)": 13,
    "tensor(bfloat16)": 16,
}

_NO_SYNC = "disable_synchronize_execution_providers"
_BF16 = np.dtype(ml_dtypes.bfloat16)


@dataclass(frozen=True)
class BoundTensor:
    """One graph input or output as a binding sees it."""

    name: str
    element_type: int
    """ONNX TensorProto element type (what ``bind_input`` / ``bind_output`` take)."""
    torch_dtype: Any
    dims: tuple[int, ...] | None = None
    """Outputs only: sizes known before a run (-1 where only the run can tell), without the
    batch dimension of a batching model; None when not even the rank is known."""


def binds_every_tensor(session: Any) -> bool:
    """Whether every input and output of ``session`` is a numeric tensor (bindable)."""
    args = [*session.get_inputs(), *session.get_outputs()]
    return all(arg.type in _ORT_ELEMENTS for arg in args)


def known_dims(
    model_shape: Sequence[Any] | None, config_dims: Sequence[int], batched: bool
) -> tuple[int, ...] | None:
    """An output's dims known before a run, -1 where unknown, batch dimension left out.

    ``model_shape`` is onnxruntime's (ints, names of symbolic dims, or None); a static model dim
    wins, a symbolic one takes the configuration's dim when the ranks agree. A model shape of
    unknown rank falls back to the configuration's dims, if it has any.
    """
    if not model_shape:
        return tuple(config_dims) if len(config_dims) else None
    model = [d if isinstance(d, int) and d >= 0 else -1 for d in model_shape]
    if batched:
        model = model[1:]
    if len(model) != len(config_dims):
        return tuple(model)
    return tuple(m if m >= 0 else int(c) for m, c in zip(model, config_dims))


class TensorBinding:
    """Runs one onnxruntime session on torch tensors through one ``IOBinding``.

    ``run`` is called by one thread at a time (the backend's contract). ``device`` is ``cpu``
    or ``cuda:N``; on ``cuda:N``, ``stream`` is the ``torch.cuda.Stream`` the session's CUDA
    provider was given as ``user_compute_stream``.
    """

    def __init__(
        self,
        session: Any,
        config: model_config_pb2.ModelConfig,
        device: str,
        *,
        stream: Any = None,
        model: str = "",
    ) -> None:
        ort = require("onnxruntime", "onnx")
        torch = require("torch", "torch")
        self._torch = torch
        self._session = session
        self._model = model or config.name
        self._device = torch.device(device)
        self._cuda = self._device.type == "cuda"
        if self._cuda and stream is None:
            raise ValueError(f"binding on {device} needs the stream onnxruntime computes on")
        self._stream = stream
        self._device_type = self._device.type
        self._device_id = self._device.index or 0
        self._batched = config.max_batch_size > 0
        self._inputs = {arg.name: _bound(torch, arg.name, arg.type) for arg in session.get_inputs()}
        graph_outputs = {arg.name: arg for arg in session.get_outputs()}
        self._outputs = [
            _bound(
                torch,
                output.name,
                graph_outputs[output.name].type,
                known_dims(graph_outputs[output.name].shape, model_dims(output), self._batched),
            )
            for output in config.output
        ]
        self._binding = session.io_binding()
        # dlpack_at exists where onnxruntime was built with DLPack (the default since 1.21).
        self._dlpack = hasattr(self._binding.get_outputs_as_ortvaluevector(), "dlpack_at")
        self._no_sync = None
        if self._cuda:
            self._no_sync = ort.RunOptions()
            self._no_sync.add_run_config_entry(_NO_SYNC, "1")

    def takes(self, inputs: Mapping[str, Any]) -> bool:
        """Whether a batch is for the binding: it holds torch tensors (numpy-only batches are
        for ``session.run``)."""
        return any(isinstance(value, self._torch.Tensor) for value in inputs.values())

    def run(self, inputs: Mapping[str, Any]) -> dict[str, Any]:
        """Run one batch; returns every configured output as a torch tensor on the device
        (outputs of unknown shape from a build without DLPack: numpy arrays)."""
        torch = self._torch
        on_device = torch.cuda.device(self._device) if self._cuda else contextlib.nullcontext()
        with on_device:
            caller = torch.cuda.current_stream(self._device) if self._cuda else None
            tensors = {name: self._input(name, value) for name, value in inputs.items()}
            batch = next(iter(tensors.values())).shape[0] if self._batched and tensors else 0
            outputs: dict[str, Any] = {}
            try:
                host_outputs = self._bind(tensors, outputs, batch)
                separate = caller is not None and caller != self._stream
                try:
                    if separate:
                        self._stream.wait_stream(caller)
                    options = None if host_outputs else self._no_sync
                    self._session.run_with_iobinding(self._binding, options)
                    self._collect(outputs)
                finally:
                    if separate:
                        self._join(caller, tensors, outputs)
            finally:
                self._binding.clear_binding_inputs()
                self._binding.clear_binding_outputs()
        return {spec.name: outputs[spec.name] for spec in self._outputs}

    def _input(self, name: str, value: Any) -> Any:
        spec = self._inputs.get(name)
        if spec is None:
            raise InvalidInput(
                f"model '{self._model}' has no input '{name}' (inputs: {sorted(self._inputs)})"
            )
        torch = self._torch
        tensor = value if isinstance(value, torch.Tensor) else _from_numpy(torch, name, value)
        return tensor.to(device=self._device, dtype=spec.torch_dtype).contiguous()

    def _bind(self, tensors: Mapping[str, Any], outputs: dict[str, Any], batch: int) -> bool:
        """Bind inputs and outputs; fills ``outputs`` with the preallocated ones. Returns
        whether an output is bound on the host."""
        binding, kind, index = self._binding, self._device_type, self._device_id
        for name, tensor in tensors.items():
            spec = self._inputs[name]
            dims = tuple(tensor.shape)
            binding.bind_input(name, kind, index, spec.element_type, dims, tensor.data_ptr())
        host = False
        for spec in self._outputs:
            shape = self._shape(spec, batch)
            if shape is not None:
                tensor = self._torch.empty(shape, dtype=spec.torch_dtype, device=self._device)
                outputs[spec.name] = tensor
                binding.bind_output(
                    spec.name, kind, index, spec.element_type, shape, tensor.data_ptr()
                )
            elif self._dlpack:
                binding.bind_output(spec.name, kind, index)
            else:
                binding.bind_output(spec.name, "cpu", 0)
                host = True
        return host

    def _shape(self, spec: BoundTensor, batch: int) -> tuple[int, ...] | None:
        """The output's shape for this batch, or None when only the run can tell (or it is
        empty: onnxruntime refuses to bind a null buffer)."""
        if spec.dims is None:
            return None
        shape = (batch, *spec.dims) if self._batched else spec.dims
        if any(size <= 0 for size in shape):
            return None
        return shape

    def _collect(self, outputs: dict[str, Any]) -> None:
        """Take the outputs onnxruntime allocated (bound without a buffer) out of the binding."""
        missing = [i for i, spec in enumerate(self._outputs) if spec.name not in outputs]
        if not missing:
            return
        torch = self._torch
        values = self._binding.get_outputs_as_ortvaluevector()
        on_stream = torch.cuda.stream(self._stream) if self._cuda else contextlib.nullcontext()
        with on_stream:
            for index in missing:
                spec = self._outputs[index]
                if not self._dlpack:
                    outputs[spec.name] = np.array(values[index].numpy(), copy=True)
                    continue
                view = torch.from_dlpack(values.dlpack_at(index))
                outputs[spec.name] = view.to(dtype=spec.torch_dtype, copy=True)

    def _join(self, caller: Any, tensors: Mapping[str, Any], outputs: Mapping[str, Any]) -> None:
        """Order the caller's stream after the run and keep shared buffers alive for both."""
        stream = self._stream
        caller.wait_stream(stream)
        for tensor in tensors.values():
            tensor.record_stream(stream)
        for value in outputs.values():
            if isinstance(value, self._torch.Tensor):
                # Preallocated outputs live on the caller's stream, copied ones on ours.
                value.record_stream(stream)
                value.record_stream(caller)


def _bound(
    torch: Any, name: str, ort_type: str, dims: tuple[int, ...] | None = None
) -> BoundTensor:
    element_type = _ORT_ELEMENTS.get(ort_type)
    if element_type is None:
        raise ValueError(f"tensor '{name}' of type {ort_type} cannot be bound")
    return BoundTensor(name, element_type, ONNX_DATATYPES[element_type].torch_dtype, dims)


def _from_numpy(torch: Any, name: str, value: Any) -> Any:
    array = np.require(value, requirements=["C", "W"])
    if array.dtype == np.object_:
        raise InvalidInput(f"input '{name}' holds strings, which cannot be bound to a device")
    if array.dtype == _BF16:
        return torch.from_numpy(array.view(np.int16)).view(torch.bfloat16)
    return torch.from_numpy(array)
