"""Binary-extension infer bodies decoded with a memo of their JSON headers.

A client of the binary tensor extension sends a JSON header (``Inference-Header-Content-Length``
bytes) and then the tensors' bytes. perf_analyzer and most pipelines send the same header in
every request, byte for byte: the same model, names, datatypes, shapes, sizes, parameters and
requested outputs. Parsing and checking it costs more than wrapping the tensors of a small
request. :class:`InferBodyDecoder` keeps what a header decoded to (each input's name, type,
shape and size, and the request without its inputs) keyed by the model, the version and the
header's bytes, and replays it: per request only the tensors are sliced out of the body and
wrapped, with the same checks and error texts as
:func:`~headrace.server.http.codec.decode_infer_request`.

A request's ``id`` is not part of what is kept: clients that number their requests
(tritonclient's ``request_id``) would make every header new. tritonclient and perf_analyzer
write the id first (``{"id":"..."`` or ``{"id": "..."``); a plain id there (no escapes) is cut
out of the key and put into the replayed request. A header that names ``"id"`` anywhere else
is kept whole (JSON's last duplicate key would win), and so is a header with its id elsewhere.

Only headers whose inputs all arrive as binary data in the body (none as JSON ``data``, none in
shared memory) are kept; other requests, bodies without the header length, and headers whose
decoding failed take the full path every time. A body whose length is not the header's plus
its inputs' sizes takes the full path too, which says what is wrong. At most ``capacity``
headers are kept, the oldest dropped first. The decoder belongs to one event loop thread (the
HTTP frontend's).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import numpy as np

from headrace.server.http.codec import (
    DecodedRequest,
    decode_infer_request,
    decode_parsed_request,
    loads_header,
)
from headrace.server.kept_headers import KeptHeaders, KeptInput
from headrace.server.memory import SharedMemoryRegistry
from headrace.server.validation import array_from_bytes
from headrace.types import DataType

__all__ = ["InferBodyDecoder", "without_request_id"]

_MAX_HEADER_BYTES = 4096
"""Longer headers (many inputs or parameters) are decoded in full, not kept."""


@dataclass(frozen=True, slots=True)
class _Plan:
    """A decoded header: its binary inputs in body order with where each lies in the body
    (start, end), the whole body's length, and the decoded request without its inputs."""

    inputs: tuple[tuple[KeptInput, int, int], ...]
    body_size: int
    decoded: DecodedRequest


class InferBodyDecoder:
    """Decodes infer request bodies, replaying binary-extension headers seen before."""

    def __init__(self, capacity: int = 256) -> None:
        self._plans: KeptHeaders[tuple[str, str, bytes], _Plan] = KeptHeaders(capacity)

    def decode(
        self,
        model_name: str,
        model_version: str,
        body: bytes,
        header_length: int | None,
        memory: SharedMemoryRegistry | None = None,
    ) -> DecodedRequest:
        """The request ``body`` carries (``header_length``: as
        :func:`~headrace.server.http.codec.decode_infer_request`)."""
        if (
            header_length is None
            or not 0 < header_length <= _MAX_HEADER_BYTES
            or header_length > len(body)
            or not self._plans.capacity
        ):
            return decode_infer_request(model_name, model_version, body, header_length, memory)
        header, request_id = without_request_id(bytes(body[:header_length]))
        key = (model_name, model_version, header)
        plan = self._plans.get(key)
        view = memoryview(body)
        if plan is None or plan.body_size != len(body):
            return self._decode(key, request_id, view, header_length, memory)
        template = plan.decoded.request
        inputs: dict[str, np.ndarray] = {}
        for spec, start, end in plan.inputs:
            chunk = view[start:end]
            if spec.dtype is not None:
                inputs[spec.name] = np.frombuffer(chunk, spec.dtype).reshape(spec.shape)
            else:  # BYTES: its framing is checked each time, with the full path's words
                inputs[spec.name] = array_from_bytes(
                    chunk,
                    spec.datatype,
                    spec.shape,
                    spec.name,
                    template.model_name,
                    template.id if request_id is None else request_id,
                )
        decoded = plan.decoded
        return DecodedRequest(
            template.with_inputs(inputs, request_id), decoded.binary_default, decoded.binary_outputs
        )

    def _decode(
        self,
        key: tuple[str, str, bytes],
        request_id: str | None,
        view: memoryview,
        header_length: int,
        memory: SharedMemoryRegistry | None,
    ) -> DecodedRequest:
        parsed = loads_header(view[:header_length])
        decoded = decode_parsed_request(key[0], key[1], parsed, view, header_length, memory)
        if request_id is not None and (
            decoded.request.id != request_id or key[2].count(_ID_NAME) != 1
        ):
            return decoded  # an id elsewhere too: replaying the first one could be wrong
        inputs = _binary_inputs(parsed, header_length)
        if inputs is not None:
            template = decoded.request.with_inputs({})
            self._plans.keep(
                key,
                _Plan(
                    inputs,
                    inputs[-1][2],
                    DecodedRequest(template, decoded.binary_default, decoded.binary_outputs),
                ),
            )
        return decoded


_ID_NAME = b'"id"'
_ID_OPENINGS = (b'{"id":"', b'{"id": "')


def without_request_id(header: bytes) -> tuple[bytes, str | None]:
    """``header`` with the value of a leading plain ``"id"`` string cut out, and that id;
    the header unchanged and None when it does not begin so, or the id has escapes, bytes that
    are not UTF-8 or characters that are not printable (the full parse judges those)."""
    for opening in _ID_OPENINGS:
        if header.startswith(opening):
            start = len(opening)
            end = header.find(b'"', start)
            if end < 0:
                return header, None
            raw = header[start:end]
            if b"\\" in raw:
                return header, None
            try:
                request_id = raw.decode("utf-8")
            except UnicodeDecodeError:
                return header, None
            if not request_id.isprintable():  # control characters are not JSON: the parser says
                return header, None
            return opening + header[end:], request_id
    return header, None


def _binary_inputs(
    header: dict[str, Any], header_length: int
) -> tuple[tuple[KeptInput, int, int], ...] | None:
    """The inputs of a header that decoded without error, each with where its data lies in the
    body, or None unless all are binary."""
    inputs = header["inputs"]
    if not inputs:
        return None
    specs = []
    start = header_length
    for item in inputs:
        params = item.get("parameters") or {}
        if "data" in item or "binary_data_size" not in params:
            return None
        datatype = DataType.from_name(str(item["datatype"]))
        shape = tuple(item["shape"])
        size = params["binary_data_size"]
        dtype = None if datatype is DataType.BYTES else datatype.numpy_dtype
        if dtype is not None and size != math.prod(shape) * dtype.itemsize:
            return None  # refused by the full path already
        specs.append((KeptInput(item["name"], datatype, shape, dtype, size), start, start + size))
        start += size
    return tuple(specs)
