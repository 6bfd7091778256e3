"""One ``ModelStreamInfer`` stream that mixes a plain and a decoupled model, end to end.

Unmodified tritonclient sends, on a single stream, ``request_meta`` (plain: one response per
request) interleaved with ``repeat_decoupled`` (decoupled: three responses, then the final
flag), a negative input that makes ``repeat_decoupled`` answer with an error, and a request
for a model that does not exist. NVIDIA Triton 2.51 aborts a stream that mixes the two kinds;
headrace serves it, and this checks the promise its frontend makes
(:mod:`headrace.server.grpc.frontend`):

- every request gets all its responses and nothing more: one for a plain request; its three
  outputs for a decoupled request; one error for a failed decoupled request and one for the
  unknown model; and the empty final response wherever a decoupled request asked for it;
- plain responses (errors included) come in the order their requests arrived, each decoupled
  request's in its own order, and each says ``triton_final_response`` as
  tests/integration/test_request_contract.py records Triton doing;
- the stream stays open: round after round is answered in full, and so is a burst of more
  requests than the frontend runs at once on a stream (its ``stream_window``, 256).
"""

from __future__ import annotations

import json
import queue
import shutil
from collections import defaultdict
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import tritonclient.grpc as grpcclient
from serve_process import ServeProcess, start_server

MODELS = Path(__file__).resolve().parent.parent / "data" / "python_models"
WAIT_S = 20.0
QUIET_S = 0.5  # how long the stream must stay silent once everything expected has come


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServeProcess]:
    workdir = tmp_path_factory.mktemp("mixed-stream")
    repository = workdir / "repo"
    for name in ("request_meta", "repeat_decoupled"):
        shutil.copytree(MODELS / name, repository / name)
    process = start_server(repository, workdir)
    yield process
    assert process.stop() == 0, process.log_tail()


@dataclass(frozen=True)
class Sent:
    """One request of the stream, the responses that carry its id (in order), and the error
    it must get (tritonclient hands an error response over without its id: matched by text)."""

    request_id: str
    plain: bool
    expected: tuple[dict[str, Any], ...] = ()
    error: str | None = None


Request = tuple[str, list[Any], dict[str, Any], Sent]


def _plain(request_id: str, model: str = "request_meta") -> Request:
    x = grpcclient.InferInput("X", [1], "INT64")
    x.set_data_from_numpy(np.array([7], np.int64))
    if model != "request_meta":
        error = f"unknown model '{model}'"
        return model, [x], {}, Sent(request_id, True, error=error)
    meta = {"id": request_id, "final": True, "META": request_id}
    return model, [x], {}, Sent(request_id, True, (meta,))


def _decoupled(request_id: str, n: int, *, empty_final: bool, in_thread: bool) -> Request:
    x = grpcclient.InferInput("IN", [1], "INT32")
    x.set_data_from_numpy(np.array([n], np.int32))
    options: dict[str, Any] = {"enable_empty_final_response": empty_final}
    if in_thread:
        options["parameters"] = {"in_thread": True}
    final = [{"id": request_id, "final": True, "OUT": None}] if empty_final else []
    if n < 0:
        sent = Sent(request_id, False, tuple(final), error=f"negative input {n}")
    else:
        outputs = [{"id": request_id, "final": False, "OUT": n + step} for step in range(3)]
        sent = Sent(request_id, False, tuple(outputs + final))
    return "repeat_decoupled", [x], options, sent


def _round(tag: str) -> list[Request]:
    """Plain and decoupled requests interleaved, with failing and bad ones among them."""
    return [
        _plain(f"{tag}-p1"),
        _decoupled(f"{tag}-d1", 10, empty_final=True, in_thread=False),
        _plain(f"{tag}-p2"),
        _decoupled(f"{tag}-d2", 20, empty_final=False, in_thread=True),
        _decoupled(f"{tag}-d3", -5, empty_final=False, in_thread=False),
        _plain(f"{tag}-p3"),
        _plain(f"{tag}-bad", model="no_such_model"),
        _decoupled(f"{tag}-d4", 30, empty_final=True, in_thread=True),
        _plain(f"{tag}-p4"),
        _decoupled(f"{tag}-d5", -6, empty_final=True, in_thread=True),
        _decoupled(f"{tag}-d6", 40, empty_final=False, in_thread=False),
        _plain(f"{tag}-p5"),
    ]


def _entry(result: Any, error: Any) -> dict[str, Any]:
    if error is not None:
        return {"error": error.message()}
    response = result.get_response()
    final = response.parameters.get("triton_final_response")
    entry: dict[str, Any] = {
        "id": response.id,
        "final": final.bool_param if final is not None else None,
    }
    names = {output.name for output in response.outputs}
    if "META" in names:
        entry["META"] = json.loads(result.as_numpy("META")[0])["request_id"]
    else:
        entry["OUT"] = int(result.as_numpy("OUT")[0]) if "OUT" in names else None
    return entry


def _check(sent: list[Sent], got: list[dict[str, Any]]) -> None:
    """Every request got exactly its responses, each in its order; plain ones (answers and
    errors, the latter known by their text) in the order their requests arrived."""
    by_id: dict[str, list[dict[str, Any]]] = defaultdict(list)
    errors: list[str] = []
    plain_order: list[str] = []
    plain_errors = {s.error for s in sent if s.plain and s.error}
    for entry in got:
        if "error" in entry:
            errors.append(entry["error"])
            if entry["error"] in plain_errors:
                plain_order.append(entry["error"])
            continue
        by_id[entry["id"]].append(entry)
        if "META" in entry:
            plain_order.append(entry["id"])
    for request in sent:
        assert by_id.pop(request.request_id, []) == list(request.expected), request
    assert not by_id, f"responses for requests never sent: {dict(by_id)}"
    assert sorted(errors) == sorted(s.error for s in sent if s.error), errors
    assert plain_order == [s.error or s.request_id for s in sent if s.plain]


class MixedStream:
    """A tritonclient stream whose responses land on a queue, in the order they came."""

    def __init__(self, server: ServeProcess) -> None:
        self.received: queue.Queue[dict[str, Any]] = queue.Queue()
        self.client = grpcclient.InferenceServerClient(server.grpc_url)
        self.client.start_stream(callback=self._callback)

    def _callback(self, result: Any, error: Any) -> None:
        self.received.put(_entry(result, error))

    def send(self, requests: list[Request]) -> list[Sent]:
        for model, inputs, options, request in requests:
            self.client.async_stream_infer(model, inputs, request_id=request.request_id, **options)
        return [request[3] for request in requests]

    def collect(self, sent: list[Sent]) -> list[dict[str, Any]]:
        """Everything ``sent`` must get, then a quiet moment: nothing more may come."""
        count = sum(len(s.expected) + (s.error is not None) for s in sent)
        got = [self.received.get(timeout=WAIT_S) for _ in range(count)]
        with pytest.raises(queue.Empty):
            self.received.get(timeout=QUIET_S)
        return got

    def close(self) -> None:
        self.client.stop_stream()
        self.client.close()


def test_one_stream_mixes_plain_and_decoupled_requests(server: ServeProcess) -> None:
    stream = MixedStream(server)
    try:
        for index in range(3):  # round after round on the one stream: it stays open
            sent = stream.send(_round(f"r{index}"))
            _check(sent, stream.collect(sent))
    finally:
        stream.close()


def test_a_burst_past_the_stream_window_loses_nothing(server: ServeProcess) -> None:
    # 30 rounds of 12 requests, sent at once: more than the 256 a stream runs concurrently
    stream = MixedStream(server)
    try:
        sent = stream.send([request for index in range(30) for request in _round(f"b{index}")])
        _check(sent, stream.collect(sent))
        after = stream.send(_round("after"))
        _check(after, stream.collect(after))
    finally:
        stream.close()
