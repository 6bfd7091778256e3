"""One client script for decoupled models: gRPC ``ModelStreamInfer`` and HTTP generate.

Unmodified tritonclient (and plain ``http.client`` for the generate extension) sends the same
requests to any server and writes down every answer as plain data, so two servers' transcripts
can be compared (:mod:`verdicts`). Used by tests/integration/test_generate_vs_triton.py,
tests/integration/test_grpc_stream_mixed.py and benchmarks/stateful_vs_triton.py.

Models: ``repeat_decoupled`` (decoupled: three responses, then the final flag; an error for a
negative input), ``request_meta`` (plain: what the model learnt about its request) and the
others of tests/data/python_models the generate cases name, plus ``counts`` (decoupled: N
responses, an error when asked) and ``kinds`` (echoes one input of each JSON kind), written here.
"""

from __future__ import annotations

import http.client
import json
import queue
import shutil
import time
from collections import defaultdict
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import tritonclient.grpc as grpcclient
import tritonclient.http as httpclient
from tritonclient.utils import InferenceServerException

__all__ = [
    "BAD_BODY",
    "DECOUPLED_MODELS",
    "ERROR",
    "GENERATE_CASES",
    "SAME",
    "Sent",
    "Stream",
    "body_errors",
    "check",
    "decoupled_repository",
    "generate_key",
    "generate_scenario",
    "mixed_round",
    "mixed_stream",
    "post",
    "stream_scenario",
]

MODELS = Path(__file__).resolve().parents[2] / "tests" / "data" / "python_models"
DECOUPLED_MODELS = (
    "request_meta",
    "repeat_decoupled",
    "add_sub",
    "bytes_identity",
    "negative_error",
    "raising",
    "counts",
    "kinds",
)
WAIT_S = 20.0
QUIET_S = 0.5  # how long a stream must stay silent once everything expected has come
MIXED_ROUNDS = 10  # mixed streams in a row: Triton 2.51 aborted on about one in five here

#: Decoupled: N responses (I = 0 … N-1), then an error response when FAIL, then the final flag.
COUNTS_CONFIG = """\
name: "counts"
backend: "python"
max_batch_size: 0
model_transaction_policy { decoupled: true }
input [
  { name: "N" data_type: TYPE_INT32 dims: [ 1 ] },
  { name: "FAIL" data_type: TYPE_BOOL dims: [ 1 ] optional: true }
]
output [ { name: "I" data_type: TYPE_INT32 dims: [ 1 ] } ]
"""
COUNTS_MODEL = """\
import numpy as np
import triton_python_backend_utils as pb_utils


class TritonPythonModel:
    def execute(self, requests):
        for request in requests:
            sender = request.get_response_sender()
            n = int(pb_utils.get_input_tensor_by_name(request, "N").as_numpy()[0])
            fail = pb_utils.get_input_tensor_by_name(request, "FAIL")
            for i in range(n):
                out = pb_utils.Tensor("I", np.array([i], np.int32))
                sender.send(pb_utils.InferenceResponse(output_tensors=[out]))
            if fail is not None and fail.as_numpy()[0]:
                error = pb_utils.TritonError(f"failed after {n}")
                sender.send(pb_utils.InferenceResponse(error=error))
            sender.send(flags=pb_utils.TRITONSERVER_RESPONSE_COMPLETE_FINAL)
        return None
"""

#: Echoes whichever of its optional inputs it gets: one per JSON kind, and a 2-D one.
KINDS_CONFIG = """\
name: "kinds"
backend: "python"
max_batch_size: 0
input [
  { name: "B" data_type: TYPE_BOOL dims: [ -1 ] optional: true },
  { name: "U8" data_type: TYPE_UINT8 dims: [ -1 ] optional: true },
  { name: "I8" data_type: TYPE_INT8 dims: [ -1 ] optional: true },
  { name: "F" data_type: TYPE_FP32 dims: [ -1 ] optional: true },
  { name: "D" data_type: TYPE_FP64 dims: [ -1 ] optional: true },
  { name: "M" data_type: TYPE_INT32 dims: [ 2, -1 ] optional: true }
]
output [
  { name: "B" data_type: TYPE_BOOL dims: [ -1 ] },
  { name: "U8" data_type: TYPE_UINT8 dims: [ -1 ] },
  { name: "I8" data_type: TYPE_INT8 dims: [ -1 ] },
  { name: "F" data_type: TYPE_FP32 dims: [ -1 ] },
  { name: "D" data_type: TYPE_FP64 dims: [ -1 ] },
  { name: "M" data_type: TYPE_INT32 dims: [ 2, -1 ] }
]
"""
KINDS_MODEL = """\
import triton_python_backend_utils as pb_utils


class TritonPythonModel:
    def execute(self, requests):
        responses = []
        for request in requests:
            tensors = [
                pb_utils.Tensor(tensor.name(), tensor.as_numpy()) for tensor in request.inputs()
            ]
            responses.append(pb_utils.InferenceResponse(output_tensors=tensors))
        return responses
"""


def decoupled_repository(target: Path) -> Path:
    """A repository at ``target`` holding the models of :data:`DECOUPLED_MODELS`."""
    for name in ("request_meta", "repeat_decoupled", "add_sub", "bytes_identity"):
        shutil.copytree(MODELS / name, target / name)
    for name in ("negative_error", "raising"):
        shutil.copytree(MODELS / name, target / name)
    for name, config, model in (
        ("counts", COUNTS_CONFIG, COUNTS_MODEL),
        ("kinds", KINDS_CONFIG, KINDS_MODEL),
    ):
        (target / name / "1").mkdir(parents=True)
        (target / name / "config.pbtxt").write_text(config, encoding="utf-8")
        (target / name / "1" / "model.py").write_text(model, encoding="utf-8")
    return target


# --- HTTP generate / generate_stream -------------------------------------------------------

#: What two servers' answers to a generate case must share (see :func:`verdicts.generate_rule`):
#: ``SAME`` everything; ``ERROR`` status and Content-Type, and error bodies in each server's
#: own words; ``BAD_BODY`` a malformed body: Triton 500, headrace 400, both errors.
SAME, ERROR, BAD_BODY = "same", "error", "bad body"

GENERATE_CASES: list[tuple[str, str, str, str]] = [
    # plain model: inputs by name, every other key a parameter
    (SAME, "request_meta", "generate", '{"X": 7}'),
    (SAME, "request_meta", "generate", '{"X": [7]}'),
    (SAME, "request_meta", "generate", '{"X": [[7]]}'),
    (SAME, "request_meta", "generate", '{"X": -1, "temperature": 0.5, "flag": true, "n": 3}'),
    (SAME, "request_meta", "generate", '{"X": 7, "parameters": {"flag": true, "s": "abc"}}'),
    (SAME, "request_meta", "generate", '{"parameters": {"X": 7, "s": "abc"}}'),
    (SAME, "request_meta", "generate", '{"X": 7, "id": "abc"}'),
    (SAME, "request_meta", "generate", '{"X": 7, "id": "q", "parameters": {"id": "r"}}'),
    (SAME, "request_meta", "generate", '{"X": 7, "a": 1, "a": 2, "id": "q", "id": "r"}'),
    (SAME, "request_meta", "generate", '{"X": 7, "parameters": {"a": 1}, "parameters": {}}'),
    (
        SAME,
        "request_meta",
        "generate",
        '{"X": 7, "sequence_id": 5, "sequence_start": true, "priority": 1, "timeout": 100, '
        '"binary_data_output": true, "triton_x": 1}',
    ),
    (SAME, "request_meta", "versions/1/generate", '{"X": 7}'),
    (SAME, "request_meta", "generate_stream", '{"X": 7}'),
    (SAME, "add_sub", "generate", '{"INPUT0": [1, 2, 3, 4], "INPUT1": [1, 1, 1, 1]}'),
    (SAME, "add_sub", "generate", '{"INPUT0": [1.5, 2, 3, 4], "INPUT1": [1, 1, 1, 1]}'),
    (SAME, "add_sub", "generate_stream", '{"INPUT0": [1, 2, 3, 4], "INPUT1": [1, 1, 1, 1]}'),
    (SAME, "bytes_identity", "generate", '{"IN": "hello"}'),
    (SAME, "bytes_identity", "generate", '{"IN": ["a", "b\\u00e9", "\\n\\"x\\""]}'),
    (SAME, "bytes_identity", "generate", '{"IN": [["a"], ["b"]]}'),
    (SAME, "bytes_identity", "generate", '{"IN": []}'),
    (SAME, "negative_error", "generate", '{"X": [1, 4]}'),
    (SAME, "negative_error", "generate", '{"X": [1, 4, 9, 16]}'),
    (
        SAME,
        "kinds",
        "generate",
        '{"B": [true, false], "U8": [1, 255, 300], "I8": [-1, 2], "F": [0.1, 1], "D": 2}',
    ),
    (SAME, "kinds", "generate", '{"M": [1, 2, 3, 4], "F": []}'),
    (SAME, "kinds", "generate", "{}"),
    # decoupled: responses as the model sends them; /generate wants exactly one
    (SAME, "repeat_decoupled", "generate_stream", '{"IN": 1}'),
    (SAME, "repeat_decoupled", "generate_stream", '{"IN": 1, "in_thread": true}'),
    (SAME, "repeat_decoupled", "generate_stream", '{"IN": -1}'),
    (SAME, "repeat_decoupled", "generate", '{"IN": 1}'),
    (SAME, "repeat_decoupled", "generate", '{"IN": -1}'),
    (SAME, "counts", "generate", '{"N": 0}'),
    (SAME, "counts", "generate", '{"N": 1}'),
    (SAME, "counts", "generate", '{"N": 2}'),
    (SAME, "counts", "generate", '{"N": 0, "FAIL": true}'),
    (SAME, "counts", "generate", '{"N": 1, "FAIL": true}'),
    (SAME, "counts", "generate_stream", '{"N": 0}'),
    (SAME, "counts", "generate_stream", '{"N": 1}'),
    (SAME, "counts", "generate_stream", '{"N": 2, "FAIL": true}'),
    (SAME, "counts", "generate_stream", '{"N": 0, "FAIL": true}'),
    # errors: the same status and Content-Type, each server's own words
    (ERROR, "negative_error", "generate", '{"X": [-1, 4]}'),
    (ERROR, "negative_error", "generate_stream", '{"X": [-1, 4]}'),
    (ERROR, "negative_error", "generate", '{"X": [1e7, 4]}'),
    (ERROR, "raising", "generate", '{"X": 13}'),
    (ERROR, "raising", "generate_stream", '{"X": 13}'),
    (ERROR, "missing", "generate", '{"X": 7}'),
    (ERROR, "missing", "generate_stream", '{"X": 7}'),
    (ERROR, "request_meta", "versions/2/generate", '{"X": 7}'),
    (ERROR, "request_meta", "generate", "{}"),
    (ERROR, "request_meta", "generate_stream", "{}"),
    (ERROR, "request_meta", "generate", '{"X": [7, 8]}'),
    (ERROR, "request_meta", "generate", '{"X": 7, "X": 8}'),
    (ERROR, "request_meta", "generate", '{"X": 7, "parameters": {"X": 8}}'),
    (ERROR, "request_meta", "generate", '{"X": 7, "nested": {"a": 1}}'),
    (ERROR, "request_meta", "generate", '{"X": 7, "a": null}'),
    (ERROR, "add_sub", "generate", '{"INPUT0": [1, 2, 3], "INPUT1": [1, 1, 1, 1]}'),
    (ERROR, "add_sub", "generate", '{"INPUT0": [[1, 2, 3, 4]], "INPUT1": [1, 1, 1, 1]}'),
    (ERROR, "kinds", "generate", '{"M": [1, 2, 3]}'),
    # malformed bodies and values of the wrong JSON kind: Triton 500, headrace 400
    (BAD_BODY, "request_meta", "generate", "not json"),
    (BAD_BODY, "request_meta", "generate", ""),
    (BAD_BODY, "request_meta", "generate", "[1]"),
    (BAD_BODY, "request_meta", "generate", '{"X": "7"}'),
    (BAD_BODY, "request_meta", "generate", '{"X": 7.5}'),
    (BAD_BODY, "request_meta", "generate", '{"X": 7, "id": 5}'),
    (BAD_BODY, "request_meta", "generate", '{"X": 7, "parameters": 3}'),
    (BAD_BODY, "bytes_identity", "generate", '{"IN": 5}'),
    (BAD_BODY, "kinds", "generate", '{"B": 1}'),
    (BAD_BODY, "kinds", "generate", '{"U8": -1}'),
    (BAD_BODY, "kinds", "generate", '{"F": "x"}'),
    (BAD_BODY, "kinds", "generate", '{"M": [[1, 2], [3, 4]]}'),
]


def generate_key(model: str, route: str, body: str) -> str:
    """A generate case's name in a transcript."""
    return f"{model}/{route} {body}"


def post(port: int, model: str, route: str, body: str) -> dict[str, Any]:
    """One generate request: status, Content-Type and body (text, undecodable bytes escaped)."""
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=WAIT_S)
    try:
        conn.request("POST", f"/v2/models/{model}/{route}", body=body.encode())
        response = conn.getresponse()
        return {
            "status": response.status,
            "content_type": response.getheader("Content-Type", ""),
            "body": response.read().decode("utf-8", errors="backslashreplace"),
        }
    finally:
        conn.close()


def body_errors(answer: dict[str, Any]) -> list[str]:
    """The error messages of an answer's body: one JSON object, or one per event."""
    body = answer["body"]
    if answer["content_type"].startswith("text/event-stream"):
        parts = [p[len("data: ") :] for p in body.split("\n\n")[:-1]]
    else:
        parts = [body]
    return [json.loads(part)["error"] for part in parts]


def generate_scenario(http_port: int) -> dict[str, dict[str, Any]]:
    """Every generate case against one server, keyed by :func:`generate_key`."""
    return {
        generate_key(model, route, body): post(http_port, model, route, body)
        for _, model, route, body in GENERATE_CASES
    }


# --- gRPC streams --------------------------------------------------------------------------


@dataclass(frozen=True)
class Sent:
    """One request of a stream, the responses that carry its id (in order), and the error it
    must get: a part of its message that any server's words hold (tritonclient hands an error
    response over without its id, so errors are matched by text)."""

    request_id: str
    plain: bool
    expected: tuple[dict[str, Any], ...] = ()
    error: str | None = None


Request = tuple[str, list[Any], dict[str, Any], Sent]


def plain_request(request_id: str, model: str = "request_meta") -> Request:
    x = grpcclient.InferInput("X", [1], "INT64")
    x.set_data_from_numpy(np.array([7], np.int64))
    if model != "request_meta":
        error = f"'{model}'"  # headrace: unknown model 'm'; Triton: ...unknown model: 'm' is...
        return model, [x], {}, Sent(request_id, True, error=error)
    meta = {"id": request_id, "final": True, "META": request_id}
    return model, [x], {}, Sent(request_id, True, (meta,))


def decoupled_request(request_id: str, n: int, *, empty_final: bool, in_thread: bool) -> Request:
    """``repeat_decoupled`` on ``n``: n, n + 1, n + 2 (or an error when n < 0)."""
    x = grpcclient.InferInput("IN", [1], "INT32")
    x.set_data_from_numpy(np.array([n], np.int32))
    options: dict[str, Any] = {"enable_empty_final_response": empty_final}
    if in_thread:
        options["parameters"] = {"in_thread": True}
    final = [{"id": request_id, "final": True}] if empty_final else []
    if n < 0:
        sent = Sent(request_id, False, tuple(final), error=f"negative input {n}")
    else:
        outputs = [{"id": request_id, "final": False, "OUT": n + step} for step in range(3)]
        sent = Sent(request_id, False, tuple(outputs + final))
    return "repeat_decoupled", [x], options, sent


def counts_request(request_id: str, n: int, *, fail: bool, empty_final: bool) -> Request:
    """``counts`` on ``n``: responses 0 … n - 1, then an error when ``fail``."""
    tensor = grpcclient.InferInput("N", [1], "INT32")
    tensor.set_data_from_numpy(np.array([n], np.int32))
    inputs = [tensor]
    if fail:
        flag = grpcclient.InferInput("FAIL", [1], "BOOL")
        flag.set_data_from_numpy(np.array([True]))
        inputs.append(flag)
    outputs = [{"id": request_id, "final": False, "I": i} for i in range(n)]
    final = [{"id": request_id, "final": True}] if empty_final else []
    error = f"failed after {n}" if fail else None
    sent = Sent(request_id, False, tuple(outputs + final), error=error)
    return "counts", inputs, {"enable_empty_final_response": empty_final}, sent


def mixed_round(tag: str) -> list[Request]:
    """Plain and decoupled requests interleaved, with failing and bad ones among them."""
    return [
        plain_request(f"{tag}-p1"),
        decoupled_request(f"{tag}-d1", 10, empty_final=True, in_thread=False),
        plain_request(f"{tag}-p2"),
        decoupled_request(f"{tag}-d2", 20, empty_final=False, in_thread=True),
        decoupled_request(f"{tag}-d3", -5, empty_final=False, in_thread=False),
        plain_request(f"{tag}-p3"),
        plain_request(f"{tag}-bad", model="no_such_model"),
        decoupled_request(f"{tag}-d4", 30, empty_final=True, in_thread=True),
        plain_request(f"{tag}-p4"),
        decoupled_request(f"{tag}-d5", -6, empty_final=True, in_thread=True),
        decoupled_request(f"{tag}-d6", 40, empty_final=False, in_thread=False),
        plain_request(f"{tag}-p5"),
    ]


def _entry(result: Any, error: Any) -> dict[str, Any]:
    if error is not None:
        return {"error": error.message(), "status": str(error.status())}
    response = result.get_response()
    final = response.parameters.get("triton_final_response")
    entry: dict[str, Any] = {
        "id": response.id,
        "final": final.bool_param if final is not None else None,
    }
    for output in response.outputs:
        value = result.as_numpy(output.name)
        if output.name == "META":
            entry["META"] = json.loads(value[0])["request_id"]
        else:
            entry[output.name] = int(value.reshape(-1)[0])
    return entry


def check(sent: list[Sent], got: list[dict[str, Any]]) -> list[str]:
    """What is wrong with ``got`` (empty when nothing): every request must get exactly its
    responses, each in its order, and plain ones (answers and errors) in the order their
    requests arrived."""
    grouped = _group(sent, got)
    problems = []
    by_id = dict(grouped["responses"])
    for request in sent:
        found = by_id.pop(request.request_id, [])
        if found != list(request.expected):
            problems.append(f"{request.request_id}: got {found}, expected {list(request.expected)}")
    if by_id:
        problems.append(f"responses for requests never sent: {by_id}")
    if grouped["unmatched_errors"]:
        problems.append(f"errors no request expects: {grouped['unmatched_errors']}")
    missing = [s.error for s in sent if s.error and s.error not in grouped["matched_errors"]]
    if missing:
        problems.append(f"errors that never came: {missing}")
    expected_order = [s.error or s.request_id for s in sent if s.plain]
    if grouped["plain_order"] != expected_order:
        problems.append(f"plain answers in the order {grouped['plain_order']}")
    return problems


def _group(sent: list[Sent], got: list[dict[str, Any]]) -> dict[str, Any]:
    """Responses per request id, errors sorted, and plain answers in their arrival order (an
    error as the part of its text its request expects): what does not depend on how the
    server interleaves concurrent decoupled requests."""
    by_id: dict[str, list[dict[str, Any]]] = defaultdict(list)
    errors: list[str] = []
    matched: list[str] = []
    unmatched: list[str] = []
    plain_order: list[str] = []
    plain_ids = {s.request_id for s in sent if s.plain}
    waiting = [s for s in sent if s.error]
    for entry in got:
        if "error" in entry:
            errors.append(entry["error"])
            request = next((s for s in waiting if s.error and s.error in entry["error"]), None)
            if request is None:
                unmatched.append(entry["error"])
                continue
            waiting.remove(request)
            matched.append(str(request.error))
            if request.plain:
                plain_order.append(str(request.error))
            continue
        by_id[entry["id"]].append(entry)
        if entry["id"] in plain_ids:
            plain_order.append(entry["id"])
    return {
        "responses": dict(by_id),
        "errors": sorted(errors),
        "matched_errors": sorted(matched),
        "unmatched_errors": unmatched,
        "plain_order": plain_order,
    }


class Stream:
    """A tritonclient stream whose responses land on a queue, in the order they came."""

    def __init__(self, grpc_url: str) -> None:
        self.received: queue.Queue[dict[str, Any]] = queue.Queue()
        self.client = grpcclient.InferenceServerClient(grpc_url)
        self.client.start_stream(callback=self._callback)

    def _callback(self, result: Any, error: Any) -> None:
        self.received.put(_entry(result, error))

    def send(self, requests: list[Request]) -> list[Sent]:
        """Send every request, or as many as the stream takes: tritonclient refuses to send
        on a stream the server has broken, and its callback gets the error."""
        for model, inputs, options, request in requests:
            try:
                self.client.async_stream_infer(
                    model, inputs, request_id=request.request_id, **options
                )
            except InferenceServerException:
                break
        return [request[3] for request in requests]

    def collect(self, sent: list[Sent]) -> tuple[list[dict[str, Any]], bool]:
        """What the stream answers to ``sent``, and whether all of it came: everything expected
        (unless the stream breaks first or ``WAIT_S`` passes), then whatever more comes before
        the stream has been quiet for ``QUIET_S``."""
        count = sum(len(s.expected) + (s.error is not None) for s in sent)
        deadline = time.monotonic() + WAIT_S
        got: list[dict[str, Any]] = []
        while len(got) < count:
            try:
                entry = self.received.get(timeout=max(0.0, deadline - time.monotonic()))
            except queue.Empty:
                return got, False
            got.append(entry)
            if entry.get("status") == "StatusCode.UNAVAILABLE":  # the stream is gone
                return got, False
        for _ in range(count + 16):  # bounded: extra responses would be a fault anyway
            try:
                got.append(self.received.get(timeout=QUIET_S))
            except queue.Empty:
                break
        return got, True

    def close(self) -> None:
        try:
            self.client.stop_stream()
        finally:
            self.client.close()


def record(grpc_url: str, requests: list[Request]) -> dict[str, Any]:
    """Send ``requests`` on a stream of their own; what came back, grouped, and what is wrong."""
    stream = Stream(grpc_url)
    try:
        sent = stream.send(requests)
        got, complete = stream.collect(sent)
    finally:
        stream.close()
    grouped = _group(sent, got)
    return {
        "responses": grouped["responses"],
        "errors": grouped["errors"],
        "plain_order": grouped["plain_order"],
        "complete": complete,
        "problems": check(sent, got),
    }


def _unary(module: Any, url: str) -> dict[str, Any]:
    client = module.InferenceServerClient(url)
    tensor = module.InferInput("IN", [1], "INT32")
    tensor.set_data_from_numpy(np.array([1], np.int32))
    try:
        client.infer("repeat_decoupled", [tensor])
    except InferenceServerException as exc:
        message = exc.message() or ""
        if message.startswith("[") and "] " in message[:8]:  # HTTP: "[501] text"
            message = message.split("] ", 1)[1]
        return {"status": str(exc.status()), "message": message}
    finally:
        client.close()
    return {"status": "ok"}


def stream_scenario(http_url: str, grpc_url: str) -> dict[str, dict[str, Any]]:
    """Decoupled and plain models, each kind on a stream of its own, and unary requests to a
    decoupled model; the transcript, keyed by case."""
    requests = mixed_round("s")
    return {
        "decoupled requests on one stream": record(
            grpc_url, [r for r in requests if not r[3].plain]
        ),
        "plain requests on one stream": record(grpc_url, [r for r in requests if r[3].plain]),
        "counts: none, some, errors on one stream": record(
            grpc_url,
            [
                counts_request("c0", 0, fail=False, empty_final=True),
                counts_request("c1", 0, fail=False, empty_final=False),
                counts_request("c2", 2, fail=True, empty_final=True),
                counts_request("c3", 1, fail=False, empty_final=False),
                counts_request("c4", 0, fail=True, empty_final=False),
            ],
        ),
        "http infer on a decoupled model": _unary(httpclient, http_url),
        "grpc infer on a decoupled model": _unary(grpcclient, grpc_url),
    }


def mixed_stream(http_url: str, grpc_url: str, rounds: int = MIXED_ROUNDS) -> list[dict[str, Any]]:
    """Round after round, each on a new stream, of plain and decoupled requests mixed: what
    came back and whether the server is still live after each. NVIDIA Triton 2.51 now and then
    aborts on such a stream, so the rounds stop once the server is gone (run it last)."""
    answers = []
    for index in range(rounds):
        answer = record(grpc_url, mixed_round(f"m{index}"))
        answer["server_live_after"] = _live(http_url)
        answers.append(answer)
        if not answer["server_live_after"]:
            break
    return answers


def _live(http_url: str) -> bool:
    client = httpclient.InferenceServerClient(http_url, connection_timeout=5.0)
    try:
        return bool(client.is_server_live())
    except Exception:  # refused: the server is gone
        return False
    finally:
        client.close()
