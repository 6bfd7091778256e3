"""ONNX models executed with onnxruntime (Triton's ``onnxruntime`` backend / ``onnxruntime_onnx``).

Layout: ``MODEL/VERSION/model.onnx`` (or ``default_model_filename``). Configuration
parameters, under Triton's onnxruntime backend names:

- ``intra_op_thread_count``: threads inside one operator (default: see :func:`intra_op_threads`);
- ``inter_op_thread_count``: threads across operators when ``execution_mode`` is parallel;
- ``execution_mode``: ``0`` sequential (default), ``1`` parallel;
- any key that starts with ``session.``: an onnxruntime session configuration entry, passed
  as it is (``SessionOptions.add_session_config_entry``), e.g.
  ``session.intra_op.allow_spinning`` ``0`` to stop the intra-op threads spinning for work
  after each run, which on a machine with few cores takes CPU from the other models.
  In a server (``BackendContext.serving``) on the CPU, with more than one intra-op thread, that
  entry defaults to ``0`` (and ``session.inter_op.allow_spinning`` too in parallel mode): the
  spinning threads take the cores the frontends parse and answer requests on (one instance of
  the MLP example on 2 cores: 1.03-1.21x the requests served, a compute-bound model 0.99x,
  ``benchmarks/results/serve_ab_onnx_spinning.json``). Alone in a process (direct and offline
  runs) spinning shortens each operator's hand-over to the pool and nothing else wants the
  cores, so there onnxruntime's default stays. A configuration that sets the entry keeps its value.

``InferenceSession.run`` releases the GIL, so instances of one model run concurrently.

String tensors (``tensor(string)``, ``TYPE_STRING`` in the config): each BYTES element is
decoded as UTF-8 and handed to onnxruntime as ``str``; string outputs come back UTF-8 encoded,
as BYTES, the same bytes Triton's onnxruntime backend returns. An element that is not UTF-8
fails its request with InvalidInput (HTTP 400 / INVALID_ARGUMENT) naming the input and the
element: onnxruntime's Python API takes and returns ``str`` only. Triton hands the raw bytes to
onnxruntime's C API instead, as C strings (so it would cut an element at a NUL byte, which
headrace passes through); for UTF-8 text without NUL bytes the two agree.

On ``cuda:N`` the session uses onnxruntime's ``CUDAExecutionProvider``; without it (the CPU
``onnxruntime`` wheel) loading fails with :class:`~headrace.errors.InvalidConfig` instead of
running on the CPU. With torch's CUDA available the backend also takes part in the engine's
CUDA pipeline (``accepts_torch``): it creates a ``torch.cuda.Stream`` on its device, hands it
to the provider as ``user_compute_stream``, exposes it as ``compute_stream``, and executes
batches of device tensors through I/O binding (:mod:`headrace.backends.onnx_binding`).

The ``compute_stream`` contract, for the engine:

- it is the one stream onnxruntime enqueues this session's work on (kernels and its own copies);
  the backend owns it, for as long as the backend lives; None when the backend has no device
  pipeline (CPU, string tensors, or no torch CUDA);
- ``execute`` with torch tensors enqueues the whole batch on it and returns without waiting for
  the GPU: outputs are complete only once ``compute_stream`` passes the point where ``execute``
  returned (an event recorded on it after ``execute``), never earlier;
- a caller that makes ``compute_stream`` current before ``execute`` (and has made it wait for
  its input copies) pays nothing more; a caller whose current stream is another one still gets
  correct results: the backend makes ``compute_stream`` wait for the caller's stream before the
  run and the caller's stream wait for ``compute_stream`` after it.
"""

from __future__ import annotations

import importlib
import logging
import os
from collections.abc import Mapping
from typing import Any

import ml_dtypes
import numpy as np
from tritonclient.grpc import model_config_pb2

from headrace.backends.base import Backend, BackendContext
from headrace.backends.onnx_binding import ONNX_DATATYPES, TensorBinding, binds_every_tensor
from headrace.backends.signature import (
    DEFAULT_MAX_BATCH_SIZE,
    add_tensor,
    enable_default_batcher,
    int_parameter,
    model_file,
    tensor_datatype,
)
from headrace.backends.threads import threads_per_cpu_instance
from headrace.config import model_dims, sequence_filled_inputs, state_specs
from headrace.config.platforms import default_model_filename
from headrace.errors import (
    HeadraceError,
    InvalidConfig,
    InvalidInput,
    ModelExecutionError,
    require,
)
from headrace.types import DataType, Outputs

__all__ = ["GPU_INTRA_OP_THREADS", "OnnxRuntimeBackend", "intra_op_threads"]

_log = logging.getLogger(__name__)

DEFAULT_FILENAME = default_model_filename("onnxruntime_onnx", "onnxruntime")

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

#: onnxruntime's intra-op threads for a session on a GPU, unless ``intra_op_thread_count`` says
#: otherwise (see :func:`intra_op_threads`).
GPU_INTRA_OP_THREADS = 1

_CUDA_PROVIDER = "CUDAExecutionProvider"


class OnnxRuntimeBackend(Backend):
    """One onnxruntime ``InferenceSession`` per instance (on a GPU, with its own stream)."""

    name = "onnxruntime"

    #: The ``torch.cuda.Stream`` onnxruntime computes on, or None (see the module's contract).
    compute_stream: Any = None

    def __init__(self, context: BackendContext) -> None:
        super().__init__(context)
        ort = require("onnxruntime", "onnx")
        path = model_file(context, DEFAULT_FILENAME)
        if not os.path.isfile(path):
            raise InvalidConfig(f"model '{context.model_name}' has no ONNX file at {path}")
        config = context.config
        device = context.device
        on_gpu = device.startswith("cuda")
        if on_gpu:
            _require_cuda_provider(ort, context)
        options = ort.SessionOptions()
        options.intra_op_num_threads = intra_op_threads(config, device)
        options.inter_op_num_threads = int_parameter(config, "inter_op_thread_count", 0)
        if int_parameter(config, "execution_mode", 0) == 1:
            options.execution_mode = ort.ExecutionMode.ORT_PARALLEL
        _add_session_entries(options, config, path)
        if context.serving and not on_gpu:
            _sleep_when_idle(options, config)
        stream = _torch_stream(device) if on_gpu else None
        try:
            self.session = ort.InferenceSession(
                path, sess_options=options, providers=_providers(device, stream)
            )
        except Exception as exc:
            raise InvalidConfig(f"onnxruntime cannot load {path}: {exc}") from exc
        if on_gpu and _CUDA_PROVIDER not in self.session.get_providers():
            raise InvalidConfig(
                f"model '{context.model_name}': onnxruntime could not start its "
                f"{_CUDA_PROVIDER} on {device} and would run on {self.session.get_providers()}; "
                "its log says why (usually CUDA or cuDNN libraries that do not match the "
                "onnxruntime-gpu build)",
                field="instance_group",
            )
        self._input_dtypes = {i.name: _ORT_NUMPY.get(i.type) for i in self.session.get_inputs()}
        model_outputs = {o.name for o in self.session.get_outputs()}
        state_outputs = [spec.name for spec in state_specs(config)[1]]
        self._output_names = [output.name for output in config.output]
        # Implicit state: the sequence batcher feeds the state input and keeps the output.
        self._output_names += [n for n in state_outputs if n not in self._output_names]
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
        self._binding: TensorBinding | None = None
        self._stream = stream  # onnxruntime computes on it even when nothing is bound
        if stream is not None and binds_every_tensor(self.session):
            self._binding = TensorBinding(
                self.session, config, device, stream=stream, model=context.model_name
            )
            self.compute_stream = stream
            self.accepts_torch = True

    def execute(self, inputs: Mapping[str, Any]) -> Outputs:
        if self._binding is not None and self._binding.takes(inputs):
            return self._run_bound(self._binding, inputs)
        feed = {name: self._feed_value(name, value) for name, value in inputs.items()}
        try:
            results = self.session.run(self._output_names, feed)
        except Exception as exc:
            raise ModelExecutionError(
                f"onnxruntime failed on model '{self.context.model_name}': {exc}"
            ) from exc
        return {name: _to_bytes(value) for name, value in zip(self._output_names, results)}

    def unload(self) -> None:
        if self._stream is not None:
            self._stream.synchronize()
        self.__dict__.pop("_binding", None)
        self.__dict__.pop("session", None)

    def _run_bound(self, binding: TensorBinding, inputs: Mapping[str, Any]) -> Outputs:
        try:
            return binding.run(inputs)
        except HeadraceError:
            raise
        except Exception as exc:
            raise ModelExecutionError(
                f"onnxruntime failed on model '{self.context.model_name}': {exc}"
            ) from exc

    def _feed_value(self, name: str, value: Any) -> np.ndarray:
        if name not in self._input_dtypes:
            raise InvalidInput(
                f"model '{self.context.model_name}' has no input '{name}' "
                f"(inputs: {sorted(self._input_dtypes)})"
            )
        array = np.asarray(value)
        expected = self._input_dtypes[name]
        if expected == np.object_:
            # Checked before the dtype: BYTES arrive as object arrays too, of ``bytes``.
            return _to_strings(array, name, self.context.model_name)
        if expected is None or array.dtype == expected:
            return array
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
        # Sequence control and implicit-state tensors are the server's, not the model's API.
        skipped = {init.name for init in graph.initializer} | sequence_filled_inputs(config)
        skipped |= {spec.name for spec in state_specs(config)[1]}
        inputs = [_describe(v) for v in graph.input if v.name not in skipped]
        outputs = [_describe(v) for v in graph.output if v.name not in skipped]
        batched = _decide_batching(config, inputs, outputs, path)
        if batched and config.max_batch_size == 0:
            config.max_batch_size = DEFAULT_MAX_BATCH_SIZE
        _fill(config.input, inputs, batched)
        _fill(config.output, outputs, batched)
        enable_default_batcher(config)


_Described = tuple[str, DataType, tuple[int, ...]]


_SPINNING = ("session.intra_op.allow_spinning", "session.inter_op.allow_spinning")


def _sleep_when_idle(options: Any, config: model_config_pb2.ModelConfig) -> None:
    """Turn off the spinning of thread pools that exist (more than one thread), unless the
    configuration says; see the module's docstring."""
    pools = (options.intra_op_num_threads != 1, options.inter_op_num_threads != 1)
    parallel = int_parameter(config, "execution_mode", 0) == 1
    for key, pool in zip(_SPINNING, (pools[0], pools[1] and parallel)):
        if pool and key not in config.parameters:
            options.add_session_config_entry(key, "0")


def _add_session_entries(options: Any, config: model_config_pb2.ModelConfig, path: str) -> None:
    """The configuration's ``session.*`` parameters, as onnxruntime session config entries."""
    for key, value in sorted(config.parameters.items()):
        if not key.startswith("session."):
            continue
        try:
            options.add_session_config_entry(key, value.string_value)
        except Exception as exc:
            raise InvalidConfig(
                f"onnxruntime refuses session entry {key}={value.string_value!r}: {exc}",
                source=path,
                field="parameters",
            ) from exc


def intra_op_threads(config: model_config_pb2.ModelConfig, device: str) -> int:
    """onnxruntime's ``intra_op_num_threads`` for one instance of ``config`` on ``device``.

    ``intra_op_thread_count`` when the configuration sets it. Otherwise, on the CPU, the usable
    cores divided by the model's CPU instances (:mod:`headrace.backends.threads`). On a GPU,
    :data:`GPU_INTRA_OP_THREADS` (1): the CPU pool then only runs what the CUDA provider leaves
    on the host (shape arithmetic and the odd unsupported operator, on small tensors), and with
    one thread onnxruntime runs those on the calling thread and starts no pool at all. Its
    default would start a pool of one thread per core for every instance, threads that spin
    after each run on the cores the pipeline's stage, launch and hand-over threads and the
    frontends need. A model that leaves a heavy operator on the CPU sets the parameter.
    """
    threads = int_parameter(config, "intra_op_thread_count", 0)
    if threads:
        return threads
    if device.startswith("cuda"):
        return GPU_INTRA_OP_THREADS
    return threads_per_cpu_instance(config)


def _require_cuda_provider(ort: Any, context: BackendContext) -> None:
    """A GPU device without the CUDA provider is a configuration this installation cannot run.

    InvalidConfig rather than Unavailable: the model cannot load as configured, and retrying
    will not change that (Unavailable means overload or shutdown, worth a retry).
    """
    available = ort.get_available_providers()
    if _CUDA_PROVIDER in available:
        return
    # A provider loaded as a plugin library is listed among the EP devices only (onnxruntime
    # issue #27832), as onnxruntime-gpu's CUDA provider may be in recent releases.
    ep_devices = getattr(ort, "get_ep_devices", None)
    if ep_devices is not None and any(d.ep_name == _CUDA_PROVIDER for d in ep_devices()):
        return
    raise InvalidConfig(
        f"model '{context.model_name}' asks for {context.device}, but this onnxruntime has no "
        f"{_CUDA_PROVIDER} (it has {available}); install the GPU build: "
        "pip install 'headrace[gpu]' (onnxruntime-gpu, which replaces the CPU onnxruntime "
        "wheel: pip uninstall onnxruntime first)",
        field="instance_group",
    )


def _torch_stream(device: str) -> Any:
    """A new torch stream on ``device`` for onnxruntime to compute on; None without torch CUDA
    (onnxruntime then copies inputs and outputs itself, outside the engine's CUDA pipeline)."""
    torch: Any
    try:
        torch = importlib.import_module("torch")
    except ImportError:
        torch = None
    if torch is None or not torch.cuda.is_available():
        _log.warning(
            "onnxruntime runs on %s without the engine's CUDA pipeline: torch with CUDA is "
            "not installed, so onnxruntime copies every batch in and out itself",
            device,
        )
        return None
    return torch.cuda.Stream(device=torch.device(device))


def _providers(device: str, stream: Any) -> list[Any]:
    if not device.startswith("cuda"):
        return ["CPUExecutionProvider"]
    options: dict[str, Any] = {"device_id": int(device.partition(":")[2] or 0)}
    if stream is not None:
        # Python's provider options set has_user_compute_stream from this one (onnxruntime
        # PR #19229); the stream must outlive the session, which the backend ensures.
        options["user_compute_stream"] = str(stream.cuda_stream)
    return [(_CUDA_PROVIDER, options), "CPUExecutionProvider"]


def _describe(value_info: Any) -> _Described:
    tensor_type = value_info.type.tensor_type
    dtype = ONNX_DATATYPES.get(tensor_type.elem_type)
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
    # A reshaped tensor's model-side dims are its reshape's, as the graph sees them.
    configured = [t for t in [*config.input, *config.output] if t.name in ranks and _dims_given(t)]
    if configured:
        return all(len(model_dims(t)) == ranks[t.name] - 1 for t in configured)
    return True


def _dims_given(tensor: Any) -> bool:
    return bool(len(tensor.dims)) or tensor.HasField("reshape")


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


def _to_strings(array: np.ndarray, name: str, model: str) -> np.ndarray:
    """A BYTES input as onnxruntime's Python API wants a ``tensor(string)``: ``str`` objects.

    onnxruntime turns a ``bytes`` element into its ``repr`` (``"b'427'"``) and cannot carry
    bytes that are not UTF-8 (it decodes every string it returns), so elements are decoded
    as UTF-8 and an element that is not UTF-8 fails its request. Triton's onnxruntime backend
    hands the raw bytes to onnxruntime's C API instead; only valid UTF-8 behaves the same.
    """
    flat = array.reshape(-1)
    strings = np.empty(flat.shape, dtype=np.object_)
    for index, item in enumerate(flat):
        if isinstance(item, bytes | bytearray | memoryview):
            try:
                strings[index] = bytes(item).decode("utf-8")
            except UnicodeDecodeError as exc:
                raise InvalidInput(
                    f"input '{name}' of model '{model}': element {index} is not UTF-8 "
                    f"({exc.reason} at byte {exc.start}); onnxruntime string tensors "
                    "take UTF-8 text only"
                ) from exc
        else:
            strings[index] = str(item)
    return strings.reshape(array.shape)


def _to_bytes(value: Any) -> Any:
    """onnxruntime returns strings as ``str``; the protocol carries BYTES as ``bytes``."""
    if isinstance(value, np.ndarray) and value.dtype == np.object_:
        return np.vectorize(
            lambda s: s.encode("utf-8") if isinstance(s, str) else s, otypes=[np.object_]
        )(value)
    return value
