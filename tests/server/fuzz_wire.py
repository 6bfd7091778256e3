"""Hypothesis strategies for what a client can put on the wire, and the served models they hit.

Requests are built near the valid ones (real model, input and datatype names, shapes that
nearly fit, binary sizes that nearly match) and then anything can be swapped for junk: a
value of another JSON type, a nested structure, a huge or negative number, stray bytes. Near-
valid inputs reach the deep checks; junk reaches the type checks. Used by the HTTP and gRPC
fuzz tests (``test_http_fuzz.py``, ``test_grpc_fuzz.py``).
"""

from __future__ import annotations

import asyncio
import gzip
import json
import threading
import zlib
from typing import Any

import numpy as np
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from server_fakes import scale_config, scale_factory
from tritonclient.grpc import service_pb2

from headrace.backends.base import Backend
from headrace.config import add_tensor, new_config
from headrace.server.core import InferenceServer
from headrace.server.grpc.frontend import GrpcFrontend
from headrace.server.http.options import HttpOptions
from headrace.server.http.servers import make_http_frontend
from headrace.types import DataType, Outputs

FUZZ = settings(
    max_examples=120,
    deadline=None,  # a shared CI box; a hang is caught by the request timeouts instead
    derandomize=True,  # the same examples on every run: CI stays reproducible
    database=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
"""Settings of the codec-level properties (pure functions, a few ms each)."""

FUZZ_SERVED = settings(FUZZ, max_examples=60)
"""Settings of the properties that go through a served frontend."""

MODELS = {"scale": ("x", "FP32", [4]), "echo": ("IN", "BYTES", [-1]), "half": ("X", "FP16", [3])}
"""Served model -> its one input (name, datatype, dims); every model batches (max 8)."""

MAX_BODY = 1 << 16
MODEL_FAULT = "unlucky 13"
"""What ``scale`` raises when an input holds 13 (server_fakes.ScaleBackend): a model's own
failure, which fails only its request, with a 500 / INTERNAL."""
DATATYPES = [d.value for d in DataType]
_JUNK_TYPES = ["", "FP8", "fp32", "TYPE_FP32", "STRING"]

json_leaf = (
    st.none()
    | st.booleans()
    | st.integers(-(2**64), 2**64)
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(max_size=6)
)
json_value = st.recursive(
    json_leaf,
    lambda inner: (
        st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=6), inner, max_size=3)
    ),
    max_leaves=10,
)
"""Any JSON value, nested a few levels."""


def _pick(draw: st.DrawFn, good: st.SearchStrategy[Any], junk: bool) -> Any:
    """A value from ``good``; in a junk example, one time in four any JSON value instead."""
    if junk and draw(st.integers(0, 3)) == 0:
        return draw(json_value)
    return draw(good)


dims = st.one_of(st.integers(-2, 6), st.sampled_from([2**31, 2**32, 2**62, 2**63 - 1]))
shapes = st.lists(dims, max_size=4)


def _shape_for(draw: st.DrawFn, model_dims: list[int], junk: bool) -> list[int]:
    """The model's shape with a batch of 1-3 in front; in a junk example, often any shape."""
    good = [
        draw(st.integers(1, 3)),
        *(abs(d) if d >= 0 else draw(st.integers(0, 3)) for d in model_dims),
    ]
    if junk and draw(st.booleans()):
        return draw(shapes)
    return good


@st.composite
def http_input(draw: st.DrawFn, model: str, junk: bool) -> tuple[dict[str, Any], bytes]:
    """One ``$request_input`` for ``model`` and the binary bytes it brings."""
    name, datatype, model_dims = MODELS.get(model, ("x", "FP32", [4]))
    shape = _shape_for(draw, model_dims, junk)
    types = st.sampled_from([*DATATYPES, *_JUNK_TYPES]) if junk else st.just(datatype)
    entry: dict[str, Any] = {
        "name": _pick(draw, st.just(name), junk),
        "datatype": _pick(draw, types, junk),
        "shape": _pick(draw, st.just(shape), junk),
    }
    count = int(np.prod([d for d in shape if 0 <= d < 64], dtype=np.int64)) if shape else 1
    blob = b""
    forms = ["data", "binary", "none", "both", "shm"] if junk else ["data", "binary"]
    form = draw(st.sampled_from(forms))
    if datatype == "FP16" and form == "data" and not junk:
        form = "binary"  # FP16 cannot travel as JSON
    if form in ("data", "both"):
        leaf = st.text(max_size=4) if datatype == "BYTES" else st.integers(-3, 300)
        entry["data"] = _pick(draw, st.lists(leaf, min_size=count, max_size=count), junk)
    if form in ("binary", "both"):
        blob = draw(_binary_tensor(datatype, count))
        sizes = [len(blob), len(blob) + 1, max(len(blob) - 1, 0)] if junk else [len(blob)]
        entry["parameters"] = {"binary_data_size": _pick(draw, st.sampled_from(sizes), junk)}
    if form == "shm":
        entry["parameters"] = {
            "shared_memory_region": _pick(draw, st.just("nowhere"), junk),
            "shared_memory_byte_size": _pick(draw, st.just(16), junk),
        }
    if junk and draw(st.integers(0, 9)) == 0:
        entry["parameters"] = draw(json_value)
    return entry, blob


def _binary_tensor(datatype: str, count: int) -> st.SearchStrategy[bytes]:
    if datatype == "BYTES":
        element = st.binary(max_size=6).map(lambda b: len(b).to_bytes(4, "little") + b)
        return st.lists(element, min_size=count, max_size=count).map(b"".join)
    itemsize = np.dtype(DataType(datatype).numpy_dtype).itemsize if datatype in DATATYPES else 4
    return st.binary(min_size=count * itemsize, max_size=count * itemsize)


@st.composite
def http_infer_body(draw: st.DrawFn, model: str) -> tuple[bytes, dict[str, str]]:
    """An infer body for ``model`` and its headers: valid half the time, else JSON with junk
    fields, a raw binary body, or stray bytes; perhaps compressed, perhaps truncated."""
    kind = draw(st.sampled_from(["valid", "valid", "valid", "junk", "junk", "raw", "bytes"]))
    junk = kind != "valid"
    headers: dict[str, str] = {}
    if kind == "raw":
        body = draw(st.binary(max_size=40))
        headers["Inference-Header-Content-Length"] = "0"
    elif kind == "bytes":
        body = draw(st.binary(max_size=200))
        if draw(st.booleans()):
            headers["Inference-Header-Content-Length"] = str(draw(st.integers(-2, 210)))
    else:
        entries = draw(st.lists(http_input(model, junk), min_size=0 if junk else 1, max_size=2))
        if not junk:
            entries = entries[:1]
        header: dict[str, Any] = {"inputs": _pick(draw, st.just([e for e, _ in entries]), junk)}
        if draw(st.booleans()):
            header["id"] = _pick(draw, st.text(max_size=8), junk)
        if draw(st.booleans()):
            reserved = st.sampled_from(
                ["priority", "timeout", "sequence_id", "sequence_start", "binary_data_output"]
            )
            keys = st.one_of(reserved, st.text(max_size=6)) if junk else st.text(max_size=6)
            values = json_leaf if junk else st.integers(0, 5) | st.text(max_size=4)
            header["parameters"] = _pick(draw, st.dictionaries(keys, values, max_size=3), junk)
        if draw(st.booleans()):
            names = st.sampled_from(["y", "z", "OUT", "Y", "nope"])
            outputs = st.fixed_dictionaries(
                {"name": names}, optional={"parameters": st.just({"binary_data": True})}
            )
            header["outputs"] = _pick(draw, st.lists(outputs, max_size=3), junk)
        text = json.dumps(header).encode()
        blobs = b"".join(blob for _, blob in entries)
        body = text + blobs
        if blobs or draw(st.booleans()):
            lengths = [len(text), len(text) + 1, len(text) - 1] if junk else [len(text)]
            headers["Inference-Header-Content-Length"] = str(draw(st.sampled_from(lengths)))
        if junk and draw(st.integers(0, 5)) == 0:
            at = draw(st.integers(0, max(len(body) - 1, 0)))
            body = body[:at] + draw(st.binary(min_size=1, max_size=3)) + body[at + 1 :]
    encoding = draw(st.sampled_from([None, None, None, None, "gzip", "deflate", "identity", "br"]))
    if encoding is not None:
        headers["Content-Encoding"] = encoding
        if encoding == "gzip":
            body = gzip.compress(body)
        elif encoding == "deflate":
            body = zlib.compress(body)
        if junk and draw(st.integers(0, 3)) == 0:
            body = body[: draw(st.integers(0, len(body)))]  # truncated stream
    return body, headers


# --- gRPC ------------------------------------------------------------------------------------

_CONTENT_FIELDS = [
    "bool_contents",
    "int_contents",
    "int64_contents",
    "uint_contents",
    "uint64_contents",
    "fp32_contents",
    "fp64_contents",
    "bytes_contents",
]


def _contents_values(field: str, count: int) -> st.SearchStrategy[list[Any]]:
    values: dict[str, st.SearchStrategy[Any]] = {
        "bool_contents": st.booleans(),
        "int_contents": st.integers(-(2**31), 2**31 - 1),
        "int64_contents": st.integers(-(2**63), 2**63 - 1),
        "uint_contents": st.integers(0, 2**32 - 1),
        "uint64_contents": st.integers(0, 2**64 - 1),
        "fp32_contents": st.floats(width=32),
        "fp64_contents": st.floats(),
        "bytes_contents": st.binary(max_size=5),
    }
    size = st.sampled_from([count, count, count + 1, max(count - 1, 0)])
    return size.flatmap(lambda n: st.lists(values[field], min_size=n, max_size=n))


_parameter = st.one_of(
    st.booleans().map(lambda v: {"bool_param": v}),
    st.integers(-(2**63), 2**63 - 1).map(lambda v: {"int64_param": v}),
    st.integers(0, 2**64 - 1).map(lambda v: {"uint64_param": v}),
    st.floats().map(lambda v: {"double_param": v}),
    st.text(max_size=6).map(lambda v: {"string_param": v}),
    st.just({}),
)
_parameter_keys = st.one_of(
    st.sampled_from(
        [
            "priority",
            "timeout",
            "sequence_id",
            "sequence_start",
            "sequence_end",
            "binary_data_output",
            "shared_memory_region",
            "shared_memory_byte_size",
            "triton_x",
        ]
    ),
    st.text(max_size=6),
)


def _set_parameters(target: Any, pairs: dict[str, dict[str, Any]]) -> None:
    for key, value in pairs.items():
        param = target[key]
        for field, item in value.items():
            setattr(param, field, item)


@st.composite
def grpc_infer_request(draw: st.DrawFn) -> bytes:
    """A serialized ``ModelInferRequest``: near-valid fields, typed and raw contents mixed,
    parameters of every type, then perhaps a few bytes cut or changed."""
    model = draw(st.sampled_from([*MODELS, "nosuch", ""]))
    name, datatype, model_dims = MODELS.get(model, ("x", "FP32", [4]))
    message = service_pb2.ModelInferRequest(
        model_name=model,
        model_version=draw(st.sampled_from(["", "", "1", "2", "x"])),
        id=draw(st.text(max_size=8)),
    )
    for _ in range(draw(st.integers(0, 2))):
        dtype = draw(st.sampled_from([datatype, datatype, *DATATYPES, *_JUNK_TYPES]))
        shape = _shape_for(draw, model_dims, junk=True)
        shape = [max(min(d, 2**63 - 1), -(2**63)) for d in shape]
        tensor = message.inputs.add(
            name=draw(st.sampled_from([name, name, "other", ""])), datatype=dtype, shape=shape
        )
        count = int(np.prod([d for d in shape if 0 <= d < 64], dtype=np.int64)) if shape else 1
        form = draw(st.sampled_from(["raw", "raw", "contents", "both", "none"]))
        if form in ("contents", "both"):
            field = draw(st.sampled_from(_CONTENT_FIELDS))
            getattr(tensor.contents, field).extend(draw(_contents_values(field, count)))
        if form in ("raw", "both"):
            if dtype in DATATYPES:
                blob = draw(_binary_tensor(dtype, count))
            else:
                blob = draw(st.binary(max_size=16))
            if draw(st.integers(0, 4)) == 0:
                blob = blob[: draw(st.integers(0, len(blob)))]
            message.raw_input_contents.append(blob)
        _set_parameters(
            tensor.parameters, draw(st.dictionaries(_parameter_keys, _parameter, max_size=2))
        )
    for _ in range(draw(st.integers(0, 2))):
        output = message.outputs.add(name=draw(st.sampled_from(["y", "z", "OUT", "Y", "nope"])))
        _set_parameters(
            output.parameters, draw(st.dictionaries(_parameter_keys, _parameter, max_size=2))
        )
    _set_parameters(
        message.parameters, draw(st.dictionaries(_parameter_keys, _parameter, max_size=3))
    )
    data = message.SerializeToString()
    if data and draw(st.integers(0, 9)) == 0:
        at = draw(st.integers(0, len(data) - 1))
        data = data[:at] + draw(st.binary(max_size=3)) + data[at + 1 :]
    return data


# --- the served models -----------------------------------------------------------------------


class _EchoBackend(Backend):
    name = "fake"

    def execute(self, inputs: Any) -> Outputs:
        return {"OUT": np.asarray(inputs["IN"], dtype=object)}


class _HalfBackend(Backend):
    name = "fake"

    def execute(self, inputs: Any) -> Outputs:
        with np.errstate(all="ignore"):
            return {"Y": (np.asarray(inputs["X"]) * 2).astype(np.float16)}


def _configs() -> list[tuple[str, Any, Any]]:
    echo = new_config("echo", backend="fake", max_batch_size=8)
    add_tensor(echo, "input", "IN", "BYTES", [-1])
    add_tensor(echo, "output", "OUT", "BYTES", [-1])
    half = new_config("half", backend="fake", max_batch_size=8)
    add_tensor(half, "input", "X", "FP16", [3])
    add_tensor(half, "output", "Y", "FP16", [3])
    return [
        ("scale", scale_factory(), scale_config(dynamic=True)),
        ("echo", _EchoBackend, echo),
        ("half", _HalfBackend, half),
    ]


class FuzzServed:
    """A real core with the three models, an HTTP frontend (``http_server``) and a gRPC
    frontend, on their own loop in a daemon thread."""

    def __init__(self, http_server: str) -> None:
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, daemon=True)
        self.thread.start()
        self.core = InferenceServer()
        self.http = make_http_frontend(
            http_server, self.core, "127.0.0.1", 0, HttpOptions(max_body_bytes=MAX_BODY)
        )
        self.grpc = GrpcFrontend(self.core, "127.0.0.1", 0, max_message_bytes=MAX_BODY)
        self.call(self._start())

    async def _start(self) -> None:
        await self.core.start()
        for name, factory, config in _configs():
            await self.core.register_model(name, factory, config)
        await self.http.start()
        await self.grpc.start()

    def call(self, coro: Any, timeout: float = 60) -> Any:
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result(timeout)

    def close(self) -> None:
        self.call(self.grpc.stop(1.0))
        self.call(self.http.stop())
        self.call(self.core.stop())
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(10)
        self.loop.close()
