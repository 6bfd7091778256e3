"""Property-based fuzzing of the HTTP door (issue 13): every body a client can send gets a
4xx/5xx with a message or a correct answer, no exception escapes, and the server keeps serving.

Three levels, cheapest first: the handlers on a real core (no socket), the same bodies as raw
requests on each HTTP server, and valid requests from unmodified tritonclient whose answers
must be right. ``FUZZ`` keeps the example counts small and fixed (``derandomize``) for CI; the
coverage-guided run lives in benchmarks/reliability/fuzz_codecs.py.
"""

from __future__ import annotations

import http.client
import json
from collections.abc import Iterator
from typing import Any

import numpy as np
import pytest

pytest.importorskip("hypothesis")

import tritonclient.http as httpclient
from fuzz_wire import (
    FUZZ,
    FUZZ_SERVED,
    MODEL_FAULT,
    MODELS,
    FuzzServed,
    http_infer_body,
)
from hypothesis import given
from hypothesis import strategies as st

from headrace.errors import HeadraceError
from headrace.server.http.handlers import HttpCall, HttpHandlers, error_response

_MODEL_NAMES = st.sampled_from([*MODELS, "nosuch"])


@pytest.fixture(scope="module")
def served(http_server: str) -> Iterator[FuzzServed]:
    server = FuzzServed(http_server)
    yield server
    server.close()


class _Headers(dict[str, str]):
    def get(self, key: str, default: Any = None) -> Any:  # type: ignore[override]
        return super().get(key.lower(), default)


def _call(model: str, body: bytes, headers: dict[str, str]) -> HttpCall:
    async def read() -> bytes:
        return body

    lowered = _Headers({k.lower(): v for k, v in headers.items()})
    lowered["content-length"] = str(len(body))
    return HttpCall(f"/v2/models/{model}/infer", {"model": model}, lowered, read)


def _check_answer(status: int, body: bytes, what: Any) -> None:
    """A refusal carries a message and is not an internal error; an answer is well formed."""
    assert 200 <= status < 600, what
    if status >= 400:
        message = json.loads(body)["error"]
        assert isinstance(message, str) and message, what
        if status == 500:  # only the model's own failure; any other is an escaped exception
            assert MODEL_FAULT in message, (message, what)
    else:
        assert status == 200, what


@FUZZ
@given(model=_MODEL_NAMES, data=st.data())
def test_handlers_answer_every_body(served: FuzzServed, model: str, data: Any) -> None:
    body, headers = data.draw(http_infer_body(model))
    handlers = HttpHandlers(served.core, 1 << 16)

    async def answer() -> tuple[int, bytes]:
        try:
            response = await handlers.infer(_call(model, body, headers))
        except HeadraceError as exc:
            response = error_response(exc)
        return response.status, response.body

    status, answer_body = served.call(answer())
    _check_answer(status, answer_body, (body[:300], headers))


def _post(url: str, path: str, body: bytes, headers: dict[str, str]) -> tuple[int, bytes]:
    host, port = url.split(":")
    conn = http.client.HTTPConnection(host, int(port), timeout=30)
    try:
        conn.request("POST", path, body=body, headers=headers)
        response = conn.getresponse()
        return response.status, response.read()
    finally:
        conn.close()


def _assert_still_serving(url: str) -> None:
    with httpclient.InferenceServerClient(url) as client:
        x = np.arange(4, dtype=np.float32).reshape(1, 4)
        tensor = httpclient.InferInput("x", [1, 4], "FP32")
        tensor.set_data_from_numpy(x)
        np.testing.assert_array_equal(client.infer("scale", [tensor]).as_numpy("y"), 2 * x)


@FUZZ_SERVED
@given(model=_MODEL_NAMES, data=st.data())
def test_server_answers_every_request_and_keeps_serving(
    served: FuzzServed, model: str, data: Any
) -> None:
    body, headers = data.draw(http_infer_body(model))
    status, answer = _post(served.http.url, f"/v2/models/{model}/infer", body, headers)
    _check_answer(status, answer, (body[:300], headers))
    _assert_still_serving(served.http.url)


@FUZZ_SERVED
@given(body=st.one_of(st.binary(max_size=64), st.just(b"[" * 5000 + b"]" * 5000)))
def test_control_bodies_are_answered(served: FuzzServed, body: bytes) -> None:
    for path in ("/v2/repository/index", "/v2/repository/models/nosuch/load"):
        status, answer = _post(served.http.url, path, body, {})
        _check_answer(status, answer, (path, body[:100]))


@FUZZ_SERVED
@given(
    rows=st.integers(1, 8),
    binary_in=st.booleans(),
    binary_out=st.booleans(),
    compression=st.sampled_from([None, "gzip", "deflate"]),
    values=st.data(),
)
def test_valid_requests_from_tritonclient_get_correct_answers(
    served: FuzzServed,
    rows: int,
    binary_in: bool,
    binary_out: bool,
    compression: str | None,
    values: Any,
) -> None:
    floats = st.floats(-1e6, 1e6, width=32)
    x = np.array(values.draw(st.lists(floats, min_size=4 * rows, max_size=4 * rows)), np.float32)
    x = x.reshape(rows, 4)
    words = values.draw(st.lists(st.binary(max_size=8), min_size=rows, max_size=rows))
    strings = np.array(words, dtype=np.object_).reshape(rows, 1)
    with httpclient.InferenceServerClient(served.http.url) as client:
        tensor = httpclient.InferInput("x", [rows, 4], "FP32")
        tensor.set_data_from_numpy(x, binary_data=binary_in)
        outputs = [httpclient.InferRequestedOutput("y", binary_data=binary_out)]
        result = client.infer(
            "scale", [tensor], outputs=outputs, request_compression_algorithm=compression
        )
        np.testing.assert_array_equal(result.as_numpy("y"), 2 * x)
        tensor = httpclient.InferInput("IN", [rows, 1], "BYTES")
        tensor.set_data_from_numpy(strings, binary_data=True)
        echoed = client.infer("echo", [tensor], response_compression_algorithm=compression)
        assert echoed.as_numpy("OUT").tolist() == strings.tolist()
