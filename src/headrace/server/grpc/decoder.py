"""Unary ``ModelInfer`` requests decoded with a memo of their headers.

Clients repeat themselves: perf_analyzer and most pipelines send the same model, input
names, datatypes, shapes and parameters in every request, and only the tensor bytes change.
Everything of a serialized ``ModelInferRequest`` but its ``raw_input_contents`` is its
*header*; parsing and checking that header through protobuf costs more than wrapping the
tensors of a small request. :class:`InferRequestDecoder` keeps what a header decoded to (the
checked input specs and the request without its inputs) keyed by the header's bytes, and
replays it: per request only the raw contents are checked and wrapped, with the same checks
and error texts as :func:`~headrace.server.grpc.codec.decode_infer_request`.

A request's ``id`` is not part of what is kept: clients that number their requests (as
perf_analyzer does on a stream, and tritonclient users who pass ``request_id``) would make
every header new. Protobuf writes fields in number order, so the id (field 3) comes right
after the model name and version; it is cut out of the header before the lookup and put
into the replayed request. A header whose id is not among those leading fields is decoded in
full each time.

Only headers whose inputs all arrive in ``raw_input_contents`` (none in shared memory, none in
typed ``contents``) are kept; other requests, and headers whose decoding failed, take the full
path every time. At most ``capacity`` headers are kept, the oldest dropped first. The decoder
belongs to one event loop thread (the gRPC frontend's).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
from google.protobuf.message import DecodeError
from tritonclient.grpc import service_pb2

from headrace.errors import InvalidInput
from headrace.server.grpc.codec import (
    ID_FIELD,
    decode_infer_request,
    message_fields,
    scan_infer_request,
    without_request_id,
)
from headrace.server.kept_headers import KeptHeaders, KeptInput
from headrace.server.memory import SharedMemoryRegistry
from headrace.server.validation import array_from_bytes
from headrace.types import DataType, InferenceRequest

__all__ = ["InferRequestDecoder"]

_MAX_HEADER_BYTES = 4096
"""Longer headers (many inputs or parameters) are decoded in full, not kept."""


@dataclass(frozen=True, slots=True)
class _Plan:
    """A decoded header: its raw inputs in order, and the request without its inputs."""

    inputs: tuple[KeptInput, ...]
    request: InferenceRequest


class InferRequestDecoder:
    """Decodes serialized ``ModelInferRequest`` messages, replaying headers seen before."""

    def __init__(self, memory: SharedMemoryRegistry | None, capacity: int = 256) -> None:
        self._memory = memory
        self._plans: KeptHeaders[bytes, _Plan] = KeptHeaders(capacity)

    def decode(self, data: bytes | memoryview) -> InferenceRequest:
        """The request ``data`` carries; raises :class:`InvalidInput` as the full decoding does."""
        header, raws = scan_infer_request(data)
        key, request_id = without_request_id(header)
        plan = self._plans.get(key)
        if plan is None or len(raws) != len(plan.inputs):
            return self._decode(header, key, request_id, raws)
        request_id = request_id or ""
        inputs: dict[str, np.ndarray] = {}
        for spec, raw in zip(plan.inputs, raws):
            if spec.size is not None and len(raw) == spec.size:
                inputs[spec.name] = np.frombuffer(raw, spec.dtype).reshape(spec.shape)
            else:  # BYTES, or a size that does not fit: the full check says what is wrong
                inputs[spec.name] = array_from_bytes(
                    raw,
                    spec.datatype,
                    spec.shape,
                    spec.name,
                    plan.request.model_name,
                    request_id,
                )
        return plan.request.with_inputs(inputs, request_id)

    def _decode(
        self, header: bytes, key: bytes, request_id: str | None, raws: list[memoryview]
    ) -> InferenceRequest:
        try:
            message = service_pb2.ModelInferRequest.FromString(header)
        except DecodeError as exc:
            raise InvalidInput(f"malformed ModelInferRequest: {exc}") from exc
        request = decode_infer_request(message, raws, self._memory)
        if (
            self._plans.capacity
            and len(header) <= _MAX_HEADER_BYTES
            and _keyable(key, request_id, message)
        ):
            plan = _plan(message, request, len(raws))
            if plan is not None:
                self._plans.keep(key, plan)
        return request


def _keyable(key: bytes, request_id: str | None, message: service_pb2.ModelInferRequest) -> bool:
    """Whether a header may be kept under ``key``, every replay of it then taking the id found
    beside it (``""`` when none was): only when that id is the message's, and no other id
    field is left in the key (protobuf's last one would win)."""
    if request_id is None:
        return message.id == ""
    return message.id == request_id and ID_FIELD not in message_fields(key)


def _plan(
    message: service_pb2.ModelInferRequest, request: InferenceRequest, raw_count: int
) -> _Plan | None:
    """What to replay for ``message``'s header, or None when it cannot be replayed."""
    tensors = message.inputs
    if not tensors or raw_count != len(tensors):
        return None  # typed contents or shared memory: decoded in full each time
    specs = []
    for tensor in tensors:
        if "shared_memory_region" in tensor.parameters:
            return None
        datatype = DataType(tensor.datatype)
        shape = tuple(tensor.shape)
        if datatype is DataType.BYTES:
            specs.append(KeptInput(tensor.name, datatype, shape, None, None))
        else:
            dtype = datatype.numpy_dtype
            nbytes = math.prod(shape) * dtype.itemsize
            specs.append(KeptInput(tensor.name, datatype, shape, dtype, nbytes))
    return _Plan(tuple(specs), request.with_inputs({}))
