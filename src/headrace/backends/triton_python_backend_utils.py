"""A stand-in for Triton's ``triton_python_backend_utils`` so python-backend models run unchanged.

Triton's python backend hands a ``model.py`` this module as ``pb_utils``. headrace installs this
file under that name (``sys.modules``) before importing a model, so ``import
triton_python_backend_utils as pb_utils`` resolves here. Behaviour follows Triton's documented
API; features headrace does not implement (BLS, custom metrics)
raise :class:`headrace.errors.Unsupported` naming what was asked for. Decoupled models send
through ``InferenceRequest.get_response_sender()``.

Tensors are numpy arrays; BYTES tensors are object arrays of ``bytes``.
"""

from __future__ import annotations

import enum
import json
import logging
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

import numpy as np
from tritonclient.grpc import model_config_pb2

from headrace.backends._pb_model_config import ModelConfig
from headrace.errors import Unsupported, require
from headrace.types import DataType, serialize_bytes_tensor
from headrace.types import deserialize_bytes_tensor as _decode_bytes

TRITONSERVER_REQUEST_FLAG_SEQUENCE_START = 1
TRITONSERVER_REQUEST_FLAG_SEQUENCE_END = 2
TRITONSERVER_RESPONSE_COMPLETE_FINAL = 1
TRITONSERVER_REQUEST_RELEASE_ALL = 1
TRITONSERVER_REQUEST_RELEASE_RESCHEDULE = 2

_CONFIG_NAMES = ("TYPE_STRING", *(d.config_name for d in DataType if d is not DataType.BYTES))
TRITON_STRING_TO_NUMPY: dict[str, type] = {
    name: DataType.from_name(name).numpy_dtype.type for name in _CONFIG_NAMES
}

_log = logging.getLogger("headrace.python_model")

__all__ = [
    "TRITONSERVER_REQUEST_FLAG_SEQUENCE_END",
    "TRITONSERVER_REQUEST_FLAG_SEQUENCE_START",
    "TRITONSERVER_REQUEST_RELEASE_ALL",
    "TRITONSERVER_REQUEST_RELEASE_RESCHEDULE",
    "TRITONSERVER_RESPONSE_COMPLETE_FINAL",
    "TRITON_STRING_TO_NUMPY",
    "InferenceRequest",
    "InferenceResponse",
    "LogLevel",
    "Logger",
    "MetricFamily",
    "ModelConfig",
    "Tensor",
    "TritonError",
    "TritonModelException",
    "deserialize_bytes_tensor",
    "get_input_config_by_name",
    "get_input_tensor_by_name",
    "get_output_config_by_name",
    "is_model_ready",
    "load_model",
    "numpy_to_triton_type",
    "serialize_byte_tensor",
    "triton_string_to_numpy",
    "triton_to_numpy_type",
    "unload_model",
    "using_decoupled_model_transaction_policy",
]


# --- data types ---------------------------------------------------------------------------


def triton_string_to_numpy(triton_type_string: str) -> type:
    """The numpy scalar type for a config data type name such as ``TYPE_FP32``."""
    try:
        return TRITON_STRING_TO_NUMPY[triton_type_string]
    except KeyError:
        raise TritonModelException(f"unknown Triton data type {triton_type_string!r}") from None


def triton_to_numpy_type(data_type: int) -> type:
    """The numpy scalar type for a ``model_config.DataType`` enum number (11 → float32)."""
    try:
        name = model_config_pb2.DataType.Name(data_type)
    except ValueError:
        raise TritonModelException(f"unknown Triton data type number {data_type!r}") from None
    return triton_string_to_numpy(name)


def numpy_to_triton_type(data_type: Any) -> int | None:
    """The ``model_config.DataType`` number for a numpy dtype; None when there is none."""
    try:
        kind = DataType.from_numpy(np.dtype(data_type))
    except (TypeError, ValueError):
        return None
    number = _CONFIG_NUMBERS.get(kind)
    if number is None:  # once per type: every tensor a model makes asks
        number = _CONFIG_NUMBERS[kind] = int(model_config_pb2.DataType.Value(kind.config_name))
    dtype = np.dtype(data_type)
    if dtype.kind not in "OSUV":  # arrays of these are converted or refused by Tensor
        _NUMBERS_BY_DTYPE[dtype] = number
    return number


_CONFIG_NUMBERS: dict[DataType, int] = {}
_NUMBERS_BY_DTYPE: dict[np.dtype, int] = {}
"""Numeric dtypes already seen, for :class:`Tensor`'s fast path (object arrays, the BYTES
type, are not kept: their elements are checked each time)."""


def serialize_byte_tensor(input_tensor: np.ndarray) -> np.ndarray | None:
    """Length-prefixed BYTES encoding of ``input_tensor`` as a uint8 array (None when empty)."""
    if input_tensor.size == 0:
        return None
    return np.frombuffer(serialize_bytes_tensor(input_tensor), dtype=np.uint8)


def deserialize_bytes_tensor(encoded_tensor: bytes | np.ndarray) -> np.ndarray:
    """Decode a length-prefixed BYTES buffer into a 1-D object array of ``bytes``."""
    buffer = encoded_tensor.tobytes() if isinstance(encoded_tensor, np.ndarray) else encoded_tensor
    return _decode_bytes(buffer)


# --- errors -------------------------------------------------------------------------------


class TritonError:
    """An error a model attaches to one response; ``code`` defaults to ``INTERNAL``."""

    UNKNOWN = 0
    INTERNAL = 1
    NOT_FOUND = 2
    INVALID_ARG = 3
    UNAVAILABLE = 4
    UNSUPPORTED = 5
    ALREADY_EXISTS = 6
    CANCELLED = 7

    def __init__(self, msg: str, code: int = INTERNAL) -> None:
        self._msg = msg
        self._code = code

    def message(self) -> str:
        return self._msg

    def code(self) -> int:
        return self._code

    def __str__(self) -> str:
        return self._msg

    def __repr__(self) -> str:
        return f"TritonError({self._msg!r}, code={self._code})"


class TritonModelException(Exception):
    """Raised by this module when a model misuses it (a bad tensor, a bad config dict)."""

    def __init__(self, msg: str) -> None:
        super().__init__(msg)
        self._msg = msg

    def message(self) -> str:
        return self._msg


# --- tensors, requests, responses ---------------------------------------------------------


class Tensor:
    """A named numpy array, as a request input or a response output."""

    def __init__(self, name: str, numpy_array: Any, triton_dtype: int | None = None) -> None:
        if triton_dtype is None and type(numpy_array) is np.ndarray:
            number = _NUMBERS_BY_DTYPE.get(numpy_array.dtype)
            if number is not None:  # every tensor of a plain type: one lookup
                self._name, self._array, self._triton_dtype = name, numpy_array, number
                return
        array = np.asarray(numpy_array)
        if array.dtype.kind == "U" or array.dtype.kind == "V":
            raise TritonModelException(
                f"tensor '{name}' has numpy dtype {array.dtype}, which the python backend does "
                "not support; use an object array of bytes (dtype=np.object_) instead"
            )
        if array.dtype.kind == "S":
            array = _bytes_to_object(array)
        if triton_dtype is not None:
            wanted = np.dtype(triton_to_numpy_type(triton_dtype))
            if array.dtype != wanted:
                array = array.view(wanted)
        else:
            triton_dtype = numpy_to_triton_type(array.dtype)
            if triton_dtype is None:
                raise TritonModelException(
                    f"tensor '{name}' has numpy dtype {array.dtype}, which has no Triton type"
                )
        self._name = name
        self._array = array
        self._triton_dtype = triton_dtype

    def name(self) -> str:
        return self._name

    def as_numpy(self) -> np.ndarray:
        return self._array

    def triton_dtype(self) -> int:
        return self._triton_dtype

    def shape(self) -> list[int]:
        return list(self._array.shape)

    def is_cpu(self) -> bool:
        """Always True: headrace hands python models host (numpy) tensors."""
        return True

    def to_dlpack(self) -> Any:
        if self._array.dtype == np.object_:
            raise TritonModelException(f"BYTES tensor '{self._name}' cannot be shared via DLPack")
        return self._array.__dlpack__()

    @staticmethod
    def from_dlpack(tensor_name: str, dlpack_tensor: Any) -> Tensor:
        """Build a tensor from a DLPack capsule or any object with ``__dlpack__`` (copied to host)."""
        if hasattr(dlpack_tensor, "__dlpack__"):
            try:
                return Tensor(tensor_name, np.from_dlpack(dlpack_tensor))
            except (BufferError, RuntimeError, TypeError):
                pass  # a device tensor: go through torch below
        torch = require("torch", "torch")
        return Tensor(tensor_name, torch.from_dlpack(dlpack_tensor).cpu().numpy())


def _bytes_to_object(array: np.ndarray) -> np.ndarray:
    out = np.empty(array.shape, dtype=np.object_)
    for index, item in np.ndenumerate(array):
        out[index] = bytes(item)
    return out


class InferenceRequest:
    """One request handed to ``execute``; constructing one for BLS is accepted, running it is not."""

    def __init__(
        self,
        model_name: str = "",
        requested_output_names: Iterable[str] = (),
        inputs: Iterable[Tensor] = (),
        request_id: str = "",
        correlation_id: int | str = 0,
        flags: int = 0,
        parameters: Mapping[str, Any] | str | None = None,
        model_version: int = -1,
        timeout: int = 0,
        response_sender: Any = None,
        **_: Any,
    ) -> None:
        self._model_name = model_name
        self._requested_output_names = list(requested_output_names)
        self._inputs = list(inputs)
        self._request_id = request_id
        self._correlation_id = correlation_id
        self._flags = flags
        if parameters is None:
            parameters = {}
        self._parameters = parameters if isinstance(parameters, str) else json.dumps(parameters)
        self._model_version = model_version
        self._timeout = timeout
        self._response_sender = response_sender

    def inputs(self) -> list[Tensor]:
        return self._inputs

    def request_id(self) -> str:
        return self._request_id

    def correlation_id(self) -> int | str:
        return self._correlation_id

    def requested_output_names(self) -> list[str]:
        return self._requested_output_names

    def flags(self) -> int:
        return self._flags

    def parameters(self) -> str:
        """The request's parameters as a JSON object string."""
        return self._parameters

    def model_name(self) -> str:
        return self._model_name

    def model_version(self) -> int:
        return self._model_version

    def timeout(self) -> int:
        return self._timeout

    def is_cancelled(self) -> bool:
        """Whether the client went away (the request's stream or call was cancelled)."""
        sender = self._response_sender
        return bool(sender is not None and sender.is_cancelled())

    def get_response_sender(self) -> Any:
        """The sender that answers this request: ``send(response=None, flags=0)``, any number
        of times in a decoupled model, ending with ``TRITONSERVER_RESPONSE_COMPLETE_FINAL``."""
        if self._response_sender is None:
            raise TritonModelException(
                f"request for model '{self._model_name}' was not made by the server and has "
                "no response sender"
            )
        return self._response_sender

    def set_release_flags(self, flags: int) -> None:
        raise Unsupported(f"request release flags ({flags}) are not supported by headrace")

    def exec(self, *args: Any, **kwargs: Any) -> InferenceResponse:
        raise Unsupported(
            f"business logic scripting (BLS: InferenceRequest.exec on model "
            f"'{self._model_name}') is not supported by headrace"
        )

    async def async_exec(self, *args: Any, **kwargs: Any) -> InferenceResponse:
        raise Unsupported(
            f"business logic scripting (BLS: InferenceRequest.async_exec on model "
            f"'{self._model_name}') is not supported by headrace"
        )


class InferenceResponse:
    """The answer to one request: output tensors, or an error."""

    def __init__(
        self,
        output_tensors: Sequence[Tensor] | None = None,
        error: TritonError | None = None,
        parameters: Mapping[str, Any] | str | None = None,
    ) -> None:
        if output_tensors is None:
            output_tensors = []
        if not isinstance(output_tensors, list | tuple):
            raise TritonModelException(
                f'"output_tensors" must be a list, got {type(output_tensors).__name__}'
            )
        self._output_tensors = list(output_tensors)
        self._error = error
        if isinstance(parameters, str):
            self._parameters = parameters
        else:  # most responses have none: skip the encoder for them
            self._parameters = json.dumps(parameters) if parameters else "{}"

    def output_tensors(self) -> list[Tensor]:
        return self._output_tensors

    def has_error(self) -> bool:
        return self._error is not None

    def error(self) -> TritonError | None:
        return self._error

    def parameters(self) -> str:
        return self._parameters


def get_input_tensor_by_name(inference_request: InferenceRequest, name: str) -> Tensor | None:
    """The request's input called ``name``, or None."""
    for tensor in inference_request.inputs():
        if tensor.name() == name:
            return tensor
    return None


def get_input_config_by_name(model_config: Mapping[str, Any], name: str) -> dict | None:
    """The config dict of input ``name`` (from ``json.loads(args['model_config'])``), or None."""
    return _find_by_name(model_config.get("input", ()), name)


def get_output_config_by_name(model_config: Mapping[str, Any], name: str) -> dict | None:
    """The config dict of output ``name`` (from ``json.loads(args['model_config'])``), or None."""
    return _find_by_name(model_config.get("output", ()), name)


def _find_by_name(entries: Iterable[dict], name: str) -> dict | None:
    for entry in entries:
        if entry.get("name") == name:
            return entry
    return None


def using_decoupled_model_transaction_policy(model_config: Mapping[str, Any]) -> bool:
    policy = model_config.get("model_transaction_policy") or {}
    return bool(policy.get("decoupled", False))


# --- logging ------------------------------------------------------------------------------


class LogLevel(enum.IntEnum):
    INFO = 0
    WARNING = 1
    ERROR = 2
    VERBOSE = 3


_LEVELS = {
    LogLevel.INFO: logging.INFO,
    LogLevel.WARNING: logging.WARNING,
    LogLevel.ERROR: logging.ERROR,
    LogLevel.VERBOSE: logging.DEBUG,
}


class Logger:
    """Model logging, routed to the ``headrace.python_model`` logger."""

    @staticmethod
    def log(message: str, level: LogLevel = LogLevel.INFO) -> None:
        _log.log(_LEVELS[LogLevel(level)], "%s", message)

    @staticmethod
    def log_info(message: str) -> None:
        _log.info("%s", message)

    @staticmethod
    def log_warn(message: str) -> None:
        _log.warning("%s", message)

    @staticmethod
    def log_error(message: str) -> None:
        _log.error("%s", message)

    @staticmethod
    def log_verbose(message: str) -> None:
        _log.debug("%s", message)


# --- features headrace does not provide ---------------------------------------------------


def load_model(model_name: str, *args: Any, **kwargs: Any) -> None:
    raise Unsupported(f"loading model '{model_name}' from a python model is not supported")


def unload_model(model_name: str, *args: Any, **kwargs: Any) -> None:
    raise Unsupported(f"unloading model '{model_name}' from a python model is not supported")


def is_model_ready(model_name: str, *args: Any, **kwargs: Any) -> bool:
    raise Unsupported(f"querying model '{model_name}' from a python model is not supported")


class MetricFamily:
    COUNTER = 0
    GAUGE = 1
    HISTOGRAM = 2

    def __init__(self, name: str, *args: Any, **kwargs: Any) -> None:
        raise Unsupported(f"custom metric family '{name}' in a python model is not supported")
