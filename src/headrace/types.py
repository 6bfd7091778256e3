"""The protocol-neutral core: data types, tensor specs, requests and responses.

Every other module speaks these. The frontends convert wire messages to and from them; the
engine and the backends never see HTTP, gRPC or protobuf.
"""

from __future__ import annotations

import enum
import math
import struct
import threading
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import TYPE_CHECKING, Any, Protocol

import ml_dtypes
import numpy as np

if TYPE_CHECKING:
    import torch

__all__ = [
    "DETACHED",
    "BytesFramingError",
    "DataType",
    "InferenceRequest",
    "InferenceResponse",
    "Outputs",
    "PausableBacklog",
    "RequestTrace",
    "RequestedOutput",
    "ResponseSink",
    "TensorSpec",
    "WorkItem",
    "deserialize_bytes_tensor",
    "no_wait_hook",
    "sending_without_waiting",
    "serialize_bytes_tensor",
    "wire_bytes",
]


class DataType(enum.Enum):
    """A tensor element type under its Triton protocol name (``FP32``, ``BYTES``…)."""

    BOOL = "BOOL"
    UINT8 = "UINT8"
    UINT16 = "UINT16"
    UINT32 = "UINT32"
    UINT64 = "UINT64"
    INT8 = "INT8"
    INT16 = "INT16"
    INT32 = "INT32"
    INT64 = "INT64"
    FP16 = "FP16"
    BF16 = "BF16"
    FP32 = "FP32"
    FP64 = "FP64"
    BYTES = "BYTES"

    @property
    def numpy_dtype(self) -> np.dtype:
        """The numpy dtype that holds this type (``object`` of ``bytes`` for BYTES)."""
        return _NUMPY[self]

    @property
    def torch_dtype(self) -> torch.dtype:
        """The torch dtype for this type; BYTES has none."""
        import torch

        if self is DataType.BYTES:
            raise TypeError("BYTES tensors have no torch dtype")
        return getattr(torch, _TORCH_NAMES[self])

    @property
    def config_name(self) -> str:
        """The name in a model configuration (``TYPE_FP32``; BYTES is ``TYPE_STRING``)."""
        return "TYPE_STRING" if self is DataType.BYTES else f"TYPE_{self.value}"

    @property
    def itemsize(self) -> int | None:
        """Bytes per element on the wire; None for variable-length BYTES."""
        return None if self is DataType.BYTES else _NUMPY[self].itemsize

    @classmethod
    def from_name(cls, name: str) -> DataType:
        """Accept a protocol name (``FP32``) or a config name (``TYPE_FP32``, ``TYPE_STRING``)."""
        key = name.upper()
        if key.startswith("TYPE_"):
            key = key[5:]
        if key == "STRING":
            key = "BYTES"
        try:
            return cls(key)
        except ValueError:
            raise ValueError(f"unknown data type {name!r}") from None

    @classmethod
    def from_numpy(cls, dtype: np.dtype | type) -> DataType:
        """The type of a numpy dtype (any byte order); cached, since it runs per tensor."""
        dt = np.dtype(dtype)
        found = _FROM_NUMPY.get(dt)
        if found is None:
            found = _FROM_NUMPY[dt] = cls._lookup_numpy(dt)
        return found

    @classmethod
    def _lookup_numpy(cls, dt: np.dtype) -> DataType:
        if dt.kind in ("O", "S", "U"):
            return cls.BYTES
        if not dt.isnative:
            dt = dt.newbyteorder("=")
        for member, candidate in _NUMPY.items():
            if member is not DataType.BYTES and candidate == dt:
                return member
        raise ValueError(f"numpy dtype {dt} has no Triton data type")

    @classmethod
    def from_torch(cls, dtype: torch.dtype) -> DataType:
        name = str(dtype).removeprefix("torch.")
        for member, torch_name in _TORCH_NAMES.items():
            if torch_name == name:
                return member
        raise ValueError(f"torch dtype {dtype} has no Triton data type")


_NUMPY: dict[DataType, np.dtype] = {
    DataType.BOOL: np.dtype(np.bool_),
    DataType.UINT8: np.dtype(np.uint8),
    DataType.UINT16: np.dtype(np.uint16),
    DataType.UINT32: np.dtype(np.uint32),
    DataType.UINT64: np.dtype(np.uint64),
    DataType.INT8: np.dtype(np.int8),
    DataType.INT16: np.dtype(np.int16),
    DataType.INT32: np.dtype(np.int32),
    DataType.INT64: np.dtype(np.int64),
    DataType.FP16: np.dtype(np.float16),
    DataType.BF16: np.dtype(ml_dtypes.bfloat16),
    DataType.FP32: np.dtype(np.float32),
    DataType.FP64: np.dtype(np.float64),
    DataType.BYTES: np.dtype(np.object_),
}

_FROM_NUMPY: dict[np.dtype, DataType] = {}

_TORCH_NAMES: dict[DataType, str] = {
    DataType.BOOL: "bool",
    DataType.UINT8: "uint8",
    DataType.UINT16: "uint16",
    DataType.UINT32: "uint32",
    DataType.UINT64: "uint64",
    DataType.INT8: "int8",
    DataType.INT16: "int16",
    DataType.INT32: "int32",
    DataType.INT64: "int64",
    DataType.FP16: "float16",
    DataType.BF16: "bfloat16",
    DataType.FP32: "float32",
    DataType.FP64: "float64",
}

_LENGTH = struct.Struct("<I")


def serialize_bytes_tensor(array: np.ndarray | Iterable[Any]) -> bytes:
    """Encode BYTES elements in row-major order, each as a 4-byte little-endian length + data.

    ``str`` elements are encoded as UTF-8; anything else that is not ``bytes`` is formatted
    with ``str()`` first, as Triton's clients do.
    """
    flat = np.asarray(array, dtype=np.object_).reshape(-1)
    parts: list[bytes] = []
    for item in flat:
        if isinstance(item, bytes | bytearray | memoryview):
            data = bytes(item)
        elif isinstance(item, str):
            data = item.encode("utf-8")
        else:
            data = str(item).encode("utf-8")
        parts.append(_LENGTH.pack(len(data)))
        parts.append(data)
    return b"".join(parts)


def wire_bytes(array: np.ndarray, datatype: DataType) -> bytes | memoryview:
    """A tensor's wire form: row-major, little-endian, BYTES length-prefixed.

    A view of the array's own memory when it is already contiguous and little-endian.
    """
    if datatype is DataType.BYTES:
        return serialize_bytes_tensor(array)
    if array.dtype.byteorder != ">" and array.flags.c_contiguous:
        try:
            return array.data.cast("B")  # the common case, a third of the steps below
        except (TypeError, ValueError):
            pass  # a dtype without a buffer format (bfloat16) or an empty shape
    array = np.ascontiguousarray(array)
    if array.dtype.byteorder == ">":
        array = array.astype(array.dtype.newbyteorder("<"))
    return memoryview(array.reshape(-1).view(np.uint8))  # type: ignore[arg-type]


class BytesFramingError(ValueError):
    """A BYTES wire buffer that does not frame: an element's 4-byte length (``length`` None) or
    its data (``length`` declared) runs past the end with ``available`` bytes left, or the
    element ``count`` is not the ``expected`` one."""

    def __init__(
        self,
        message: str,
        *,
        length: int | None = None,
        available: int = 0,
        count: int = 0,
        expected: int | None = None,
    ) -> None:
        super().__init__(message)
        self.length = length
        self.available = available
        self.count = count
        self.expected = expected


def deserialize_bytes_tensor(
    buffer: bytes | memoryview, shape: Sequence[int] | None = None
) -> np.ndarray:
    """Decode a BYTES wire buffer into an object array of ``bytes``; reshape when given a shape.

    Raises ``ValueError`` naming the offset when the framing is truncated or the element count
    does not match the shape.
    """
    view = memoryview(buffer).cast("B")
    items: list[bytes] = []
    offset = 0
    end = len(view)
    while offset < end:
        if offset + 4 > end:
            raise BytesFramingError(
                f"incomplete string length indicator at offset {offset}, expecting 4 bytes "
                f"but only {end - offset} bytes available",
                available=end - offset,
            )
        (length,) = _LENGTH.unpack_from(view, offset)
        offset += 4
        if offset + length > end:
            raise BytesFramingError(
                f"incomplete string data at offset {offset - 4}, expecting string of length "
                f"{length} but only {end - offset} bytes available",
                length=length,
                available=end - offset,
            )
        items.append(bytes(view[offset : offset + length]))
        offset += length
    out = np.empty(len(items), dtype=np.object_)
    out[:] = items
    if shape is not None:
        count = math.prod(shape)  # exact: numpy's int64 product wraps on huge shapes
        if count != len(items):
            raise BytesFramingError(
                f"BYTES buffer holds {len(items)} elements, shape {list(shape)} needs {count}",
                count=len(items),
                expected=count,
            )
        return out.reshape(tuple(shape))
    return out


@dataclass(frozen=True)
class TensorSpec:
    """A model input or output as a configuration declares it.

    ``dims`` excludes the batch dimension when the model batches (``max_batch_size > 0``);
    ``-1`` marks a variable dimension.
    """

    name: str
    datatype: DataType
    dims: tuple[int, ...]
    optional: bool = False

    def shape(self, batched: bool) -> tuple[int, ...]:
        """The full tensor shape, with ``-1`` for the batch dimension when ``batched``."""
        return (-1, *self.dims) if batched else self.dims

    def accepts(self, shape: Sequence[int], batched: bool) -> bool:
        """Whether a concrete tensor shape matches this spec."""
        expected = self.shape(batched)
        if len(shape) != len(expected):
            return False
        return all(e == -1 or e == s for e, s in zip(expected, shape))


@dataclass(frozen=True)
class RequestedOutput:
    """An output a client asked for, with its per-output parameters (``binary_data`` …)."""

    name: str
    parameters: Mapping[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class InferenceRequest:
    """One inference request as the server core and schedulers see it.

    ``inputs`` hold numpy arrays (BYTES as object arrays of ``bytes``). ``outputs`` is None when
    the client asked for every output. ``timeout_us`` of 0 means no timeout; ``priority`` of 0
    means the model's default priority level.
    """

    model_name: str
    inputs: Mapping[str, np.ndarray]
    model_version: str = ""
    id: str = ""
    outputs: tuple[RequestedOutput, ...] | None = None
    parameters: Mapping[str, Any] = field(default_factory=dict)
    priority: int = 0
    timeout_us: int = 0
    sequence_id: int | str = 0
    sequence_start: bool = False
    sequence_end: bool = False

    def with_inputs(
        self, inputs: Mapping[str, np.ndarray], request_id: str | None = None
    ) -> InferenceRequest:
        """This request with other inputs (and ``request_id`` as its id, when given), and a
        copy of its parameters.

        For a door that replays a decoded request header (the gRPC frontend's), once per
        request: filled field by field, a fraction of the cost of ``dataclasses.replace``.
        """
        clone = object.__new__(InferenceRequest)
        fields = clone.__dict__
        fields.update(self.__dict__)
        fields["inputs"] = inputs
        fields["parameters"] = dict(self.parameters)
        if request_id is not None:
            fields["id"] = request_id
        return clone


@dataclass(frozen=True)
class InferenceResponse:
    """The result of one request: the outputs it asked for, in the model's output order."""

    model_name: str
    model_version: str
    outputs: Mapping[str, np.ndarray]
    id: str = ""
    parameters: Mapping[str, Any] = field(default_factory=dict)


Outputs = dict[str, Any]
"""Output name → numpy array (or a torch tensor on the device of a torch-accepting backend)."""

_NO_PARAMETERS: Mapping[str, Any] = MappingProxyType({})


class ResponseSink(Protocol):
    """Where a work item's responses go: once for a plain model, or (decoupled) zero or more
    times and then final.

    ``send`` and ``fail`` may be called from any thread; a sink hands the response to its
    receiver's thread itself. ``outputs`` of None sends no response, only the final flag (a
    decoupled model that has nothing more to say). ``fail`` answers with an error instead: the
    request could not run (final), or one response of a decoupled model is an error and more
    may follow (``final=False``). After anything final the sink ignores further calls.
    ``done`` is True from then on, and also when the receiver has gone away (its request was
    cancelled), so work for it can be skipped. A stream's sink bounds what it holds for a client
    that is not reading: ``send`` from a thread other than the receiver's may wait for room,
    and raises :class:`~headrace.errors.Unavailable` (having failed the request) when none
    comes in time.
    """

    def send(
        self,
        outputs: Outputs | None,
        *,
        final: bool = True,
        parameters: Mapping[str, Any] | None = None,
    ) -> None: ...

    def fail(self, error: BaseException, *, final: bool = True) -> None: ...

    @property
    def done(self) -> bool: ...


class RequestTrace(Protocol):
    """A sampled request's trace (``headrace.server.tracing``); schedulers stamp its batch."""

    def computed(self, start_ns: int, end_ns: int) -> None:
        """The batch the request ran in went to its instance at ``start_ns`` and came back at
        ``end_ns`` (``time.monotonic_ns``)."""


class PausableBacklog(Protocol):
    """A stream's full backlog as a sender that must not wait sees it
    (:class:`headrace.scheduling.backlog.StreamBacklog`)."""

    timeout_s: float

    @property
    def overrun_message(self) -> str: ...

    def when_room(self, callback: Callable[[], None]) -> None: ...


OnFull = Callable[[PausableBacklog], None]
_no_wait = threading.local()


@contextmanager
def sending_without_waiting(on_full: OnFull) -> Iterator[None]:
    """Sends on this thread inside the block never wait for a slow client: a response that
    fills its stream's backlog calls ``on_full(backlog)`` instead, which should pause that
    request at its source (a thread that hands over many requests' responses, such as a
    worker process's reader, must not stall them all for one)."""
    previous = getattr(_no_wait, "on_full", None)
    _no_wait.on_full = on_full
    try:
        yield
    finally:
        _no_wait.on_full = previous


def no_wait_hook() -> OnFull | None:
    """The ``on_full`` of the :func:`sending_without_waiting` block this thread is in."""
    return getattr(_no_wait, "on_full", None)


class _DetachedSink:
    """The sink of a work item whose results come back through the instance's future only."""

    __slots__ = ()

    def send(
        self,
        outputs: Outputs | None,
        *,
        final: bool = True,
        parameters: Mapping[str, Any] | None = None,
    ) -> None:
        raise RuntimeError(
            "this work item has no response sink; only batches submitted by a scheduler can "
            "answer through one (decoupled models)"
        )

    def fail(self, error: BaseException, *, final: bool = True) -> None:
        pass

    @property
    def done(self) -> bool:
        return False


DETACHED: ResponseSink = _DetachedSink()
"""The sink of work items made from bare inputs (offline runs, benchmarks, tests)."""


class WorkItem:
    """One request as the engine sees it, whichever door it came through.

    A door makes it from its wire message; the core routes it to a model version, whose
    scheduler batches it and whose instances execute it. Backends that want arrays get
    ``inputs`` merged with other items' inputs; backends that handle request lists (Triton's
    python backend) get the items themselves, with their ids, sequence flags and parameters,
    and may answer through ``sink`` (decoupled models). Everyone else's results reach the sink
    through the scheduler.

    ``sequence_id`` of 0 or "" means no sequence; ``requested_outputs`` of None means every
    output; ``timeout_us`` of 0 means none; ``priority`` of 0 means the model's default;
    ``trace`` is None unless the request was sampled for tracing.
    """

    __slots__ = (
        "inputs",
        "parameters",
        "priority",
        "request_id",
        "requested_outputs",
        "sequence_end",
        "sequence_id",
        "sequence_start",
        "sink",
        "timeout_us",
        "trace",
    )

    def __init__(
        self,
        inputs: Mapping[str, np.ndarray],
        sink: ResponseSink = DETACHED,
        *,
        request_id: str = "",
        sequence_id: int | str = 0,
        sequence_start: bool = False,
        sequence_end: bool = False,
        priority: int = 0,
        timeout_us: int = 0,
        parameters: Mapping[str, Any] = _NO_PARAMETERS,
        requested_outputs: tuple[str, ...] | None = None,
    ) -> None:
        self.inputs = inputs
        self.sink = sink
        self.request_id = request_id
        self.sequence_id = sequence_id
        self.sequence_start = sequence_start
        self.sequence_end = sequence_end
        self.priority = priority
        self.timeout_us = timeout_us
        self.parameters = parameters
        self.requested_outputs = requested_outputs
        self.trace: RequestTrace | None = None

    @classmethod
    def from_request(cls, request: InferenceRequest, sink: ResponseSink) -> WorkItem:
        """The work item of a protocol request, answered through ``sink``.

        Runs once per request on the server's hot path, so it fills the slots directly:
        a third of the cost of a call to ``__init__`` with ten keywords.
        """
        item = object.__new__(cls)
        item.inputs = request.inputs
        item.sink = sink
        item.request_id = request.id
        item.sequence_id = request.sequence_id
        item.sequence_start = request.sequence_start
        item.sequence_end = request.sequence_end
        item.priority = request.priority
        item.timeout_us = request.timeout_us
        item.parameters = request.parameters
        outputs = request.outputs
        item.requested_outputs = None if outputs is None else tuple(o.name for o in outputs)
        item.trace = None
        return item

    def __repr__(self) -> str:
        shapes = {name: tuple(np.shape(value)) for name, value in self.inputs.items()}
        return f"WorkItem(id={self.request_id!r}, sequence={self.sequence_id!r}, inputs={shapes})"
