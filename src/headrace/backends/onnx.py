"""ONNX models executed with onnxruntime (Triton's ``onnxruntime`` backend / ``onnxruntime_onnx``).

Layout: ``MODEL/VERSION/model.onnx`` (or ``default_model_filename``). Configuration
parameters, under Triton's onnxruntime backend names:

- ``intra_op_thread_count``: threads inside one operator (default on the CPU: the usable
  cores divided by the model's CPU instances, see :mod:`headrace.backends.threads`);
- ``inter_op_thread_count``: threads across operators when ``execution_mode`` is parallel;
- ``execution_mode``: ``0`` sequential (default), ``1`` parallel.

``InferenceSession.run`` releases the GIL, so instances of one model run concurrently.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Mapping
from typing import Any

import ml_dtypes
import numpy as np
from tritonclient.grpc import model_config_pb2

from headrace.backends.base import Backend, BackendContext
from headrace.backends.signature import (
    DEFAULT_MAX_BATCH_SIZE,
    add_tensor,
    enable_default_batcher,
    int_parameter,
    model_file,
    tensor_datatype,
)
from headrace.backends.threads import threads_per_cpu_instance
from headrace.errors import InvalidConfig, InvalidInput, ModelExecutionError, require
from headrace.types import DataType, Outputs

__all__ = ["OnnxRuntimeBackend"]

_log = logging.getLogger(__name__)

DEFAULT_FILENAME = "model.onnx"

# onnxruntime's type strings ("tensor(float)") -> numpy dtypes.
_ORT_NUMPY: dict[str, np.dtype] = {
    "tensor(bool)": np.dtype(np.bool_),
    "tensor(uint8)": np.dtype(np.uint8),
    "tensor(uint16)": np.dtype(np.uint16),
    "tensor(uint32)": np.dtype(np.uint32),
    "tensor(uint64)": np.dtype(np.uint64),
    "tensor(int8)": np.dtype(np.int8),
    "tensor(int16)": np.dtype(np.int16),
    "tensor(int32)": np.dtype(np.int32),
    "tensor(int64)": np.dtype(np.int64),
    "tensor(float16)": np.dtype(np.float16),
    "tensor(bfloat16)": np.dtype(ml_dtypes.bfloat16),
    "tensor(float)": np.dtype(np.float32),
    "tensor(double)": np.dtype(np.float64),
    "tensor(string)": np.dtype(np.object_),
}

# ONNX TensorProto element types -> DataType (numbers from onnx.proto's TensorProto.DataType).
_ONNX_ELEM: dict[int, DataType] = {
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


class OnnxRuntimeBackend(Backend):
    """One onnxruntime ``InferenceSession`` per instance."""

    name = "onnxruntime"

    def __init__(self, context: BackendContext) -> None:
        super().__init__(context)
        ort = require("onnxruntime", "onnx")
        path = model_file(context, DEFAULT_FILENAME)
        if not os.path.isfile(path):
            raise InvalidConfig(f"model '{context.model_name}' has no ONNX file at {path}")
        options = ort.SessionOptions()
        config = context.config
        threads = int_parameter(config, "intra_op_thread_count", 0)
        if threads == 0 and not context.device.startswith("cuda"):
            threads = threads_per_cpu_instance(config)
        options.intra_op_num_threads = threads
        options.inter_op_num_threads = int_parameter(config, "inter_op_thread_count", 0)
        if int_parameter(config, "execution_mode", 0) == 1:
            options.execution_mode = ort.ExecutionMode.ORT_PARALLEL
        try:
            self.session = ort.InferenceSession(
                path, sess_options=options, providers=_providers(ort, context.device)
            )
        except Exception as exc:
            raise InvalidConfig(f"onnxruntime cannot load {path}: {exc}") from exc
        self._input_dtypes = {i.name: _ORT_NUMPY.get(i.type) for i in self.session.get_inputs()}
        model_outputs = {o.name for o in self.session.get_outputs()}
        self._output_names = [output.name for output in config.output]
        unknown = [n for n in self._output_names if n not in model_outputs]
        if unknown:
            raise InvalidConfig(
                f"model '{context.model_name}': outputs {unknown} are not in the ONNX graph "
                f"(it has {sorted(model_outputs)})",
                field="output",
            )
        unknown = [i.name for i in config.input if i.name not in self._input_dtypes]
        if unknown:
            raise InvalidConfig(
                f"model '{context.model_name}': inputs {unknown} are not in the ONNX graph "
                f"(it has {sorted(self._input_dtypes)})",
                field="input",
            )

    def execute(self, inputs: Mapping[str, Any]) -> Outputs:
        feed = {name: self._feed_value(name, value) for name, value in inputs.items()}
        try:
            results = self.session.run(self._output_names, feed)
        except Exception as exc:
            raise ModelExecutionError(
                f"onnxruntime failed on model '{self.context.model_name}': {exc}"
            ) from exc
        return {name: _to_bytes(value) for name, value in zip(self._output_names, results)}

    def unload(self) -> None:
        self.__dict__.pop("session", None)

    def _feed_value(self, name: str, value: Any) -> np.ndarray:
        if name not in self._input_dtypes:
            raise InvalidInput(
                f"model '{self.context.model_name}' has no input '{name}' "
                f"(inputs: {sorted(self._input_dtypes)})"
            )
        array = np.asarray(value)
        expected = self._input_dtypes[name]
        if expected is None or array.dtype == expected:
            return array
        if expected == np.object_:
            return np.vectorize(_to_str, otypes=[np.object_])(array)
        return array.astype(expected)

    @classmethod
    def autocomplete(cls, config: model_config_pb2.ModelConfig, version_dir: str) -> None:
        """Fill inputs, outputs and max_batch_size from the ONNX graph, as Triton does.

        A model batches when every input and output has a dynamic first dimension (or when the
        configured dims are one shorter than the graph's); it then gets
        ``max_batch_size`` 4 and ``dynamic_batching {}`` unless the config says otherwise.
        """
        onnx = require("onnx", "onnx")
        path = os.path.join(version_dir, config.default_model_filename or DEFAULT_FILENAME)
        try:
            graph = onnx.load(path, load_external_data=False).graph
        except Exception as exc:
            raise InvalidConfig(f"cannot read ONNX model {path}: {exc}") from exc
        initializers = {init.name for init in graph.initializer}
        inputs = [_describe(v) for v in graph.input if v.name not in initializers]
        outputs = [_describe(v) for v in graph.output]
        batched = _decide_batching(config, inputs, outputs, path)
        if batched and config.max_batch_size == 0:
            config.max_batch_size = DEFAULT_MAX_BATCH_SIZE
        _fill(config.input, inputs, batched)
        _fill(config.output, outputs, batched)
        enable_default_batcher(config)


_Described = tuple[str, DataType, tuple[int, ...]]


def _providers(ort: Any, device: str) -> list[Any]:
    if device.startswith("cuda"):
        if "CUDAExecutionProvider" in ort.get_available_providers():
            index = int(device.partition(":")[2] or 0)
            return [("CUDAExecutionProvider", {"device_id": index}), "CPUExecutionProvider"]
        _log.warning("onnxruntime has no CUDAExecutionProvider; running on CPU, not %s", device)
    return ["CPUExecutionProvider"]


def _describe(value_info: Any) -> _Described:
    tensor_type = value_info.type.tensor_type
    dtype = _ONNX_ELEM.get(tensor_type.elem_type)
    if dtype is None:
        raise InvalidConfig(
            f"ONNX tensor '{value_info.name}' has element type {tensor_type.elem_type}, "
            "which has no Triton data type"
        )
    dims = tuple(int(d.dim_value) if d.HasField("dim_value") else -1 for d in tensor_type.shape.dim)
    return value_info.name, dtype, dims


def _decide_batching(
    config: model_config_pb2.ModelConfig,
    inputs: list[_Described],
    outputs: list[_Described],
    path: str,
) -> bool:
    everything = inputs + outputs
    dynamic_first = all(len(dims) > 0 and dims[0] == -1 for _, _, dims in everything)
    if config.max_batch_size > 0:
        if not dynamic_first:
            fixed = [name for name, _, dims in everything if not dims or dims[0] != -1]
            raise InvalidConfig(
                f"max_batch_size is {config.max_batch_size} but tensors {fixed} of {path} "
                "have no dynamic first (batch) dimension",
                field="max_batch_size",
            )
        return True
    if not dynamic_first:
        return False
    ranks = {name: len(dims) for name, _, dims in everything}
    configured = [t for t in [*config.input, *config.output] if len(t.dims) and t.name in ranks]
    if configured:
        return all(len(t.dims) == ranks[t.name] - 1 for t in configured)
    return True


def _fill(repeated: Any, described: list[_Described], batched: bool) -> None:
    present = {tensor.name: tensor for tensor in repeated}
    for name, dtype, dims in described:
        model_dims = dims[1:] if batched else dims
        tensor = present.get(name)
        if tensor is None:
            add_tensor(repeated, name, dtype, model_dims)
            continue
        if tensor_datatype(tensor) is None:
            tensor.data_type = model_config_pb2.DataType.Value(dtype.config_name)
        if not len(tensor.dims) and model_dims:
            tensor.dims.extend(model_dims)


def _to_str(item: Any) -> str:
    return item.decode("utf-8") if isinstance(item, bytes | bytearray) else str(item)


def _to_bytes(value: Any) -> Any:
    """onnxruntime returns strings as ``str``; the protocol carries BYTES as ``bytes``."""
    if isinstance(value, np.ndarray) and value.dtype == np.object_:
        return np.vectorize(
            lambda s: s.encode("utf-8") if isinstance(s, str) else s, otypes=[np.object_]
        )(value)
    return value
