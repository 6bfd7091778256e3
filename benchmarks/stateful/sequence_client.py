"""One client script for the sequence models of tests/data/python_models (``seq_*``).

Unmodified tritonclient drives a server over HTTP, gRPC and a gRPC stream, with integer and
string sequence ids, good sequences and bad requests, and writes down every answer (outputs, or
the error's status and message) in a transcript. The headrace integration tests check the
transcript of ``headrace serve``; tests/integration/test_triton_sequences.py and
benchmarks/stateful_vs_triton.py compare it with NVIDIA Triton's (:mod:`verdicts`).

Models: ``seq_accumulate`` (direct, implicit state from zeros, idle release after 2 s),
``seq_controls`` (oldest, two instances, START/END/READY/CORRID controls, sums kept by the
model per instance), ``seq_string`` (no batching, state from ``initial_state/hundred``, no
CORRID control), ``seq_corrid`` (a TYPE_STRING CORRID control).
"""

from __future__ import annotations

import queue
import shutil
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import tritonclient.grpc as grpcclient
import tritonclient.http as httpclient
from tritonclient.utils import InferenceServerException

__all__ = ["SEQUENCE_MODELS", "outputs", "scenario", "sequence_repository"]

SEQUENCE_MODELS = ("seq_accumulate", "seq_controls", "seq_corrid", "seq_string")
MODELS = Path(__file__).resolve().parents[2] / "tests" / "data" / "python_models"
WAIT_S = 20.0
Answer = dict[str, Any]


def sequence_repository(target: Path) -> Path:
    """A repository at ``target`` holding copies of the sequence models."""
    for name in SEQUENCE_MODELS:
        shutil.copytree(MODELS / name, target / name)
    return target


def outputs(answers: list[Answer], name: str = "OUTPUT") -> list[Any]:
    """One output of each answer (a scalar when it has one element); every answer must have
    succeeded."""
    assert all("outputs" in a for a in answers), answers
    values = [a["outputs"][name] for a in answers]
    return [v[0] if len(v) == 1 else v for v in values]


def _inputs(module: Any, value: int, batched: bool, rows: int = 1) -> list[Any]:
    shape = [rows, 1] if batched else [1]
    tensor = module.InferInput("INPUT", shape, "INT32")
    tensor.set_data_from_numpy(np.full(shape, value, np.int32))
    return [tensor]


def _outputs(result: Any, names: list[str]) -> dict[str, list[Any]]:
    found = {}
    for name in names:
        array = result.as_numpy(name)
        if array is None:
            continue
        if array.dtype == np.object_:
            found[name] = [x.decode() if isinstance(x, bytes) else x for x in array.reshape(-1)]
        else:
            found[name] = array.reshape(-1).tolist()
    return found


def _error(exc: InferenceServerException) -> Answer:
    message = exc.message() or ""
    if message.startswith("[") and "] " in message[:8]:  # HTTP: "[400] text"
        message = message.split("] ", 1)[1]
    return {"status": str(exc.status()), "message": message}


def _call(
    client: Any, model: str, value: int, sequence_id: int | str = 0, **options: Any
) -> Answer:
    """One request; ``rows``, ``extra`` (more InferInputs) and ``batched`` shape it."""
    module = grpcclient if isinstance(client, grpcclient.InferenceServerClient) else httpclient
    batched = options.pop("batched", model != "seq_string")
    inputs = _inputs(module, value, batched, options.pop("rows", 1)) + options.pop("extra", [])
    names = ["OUTPUT", "CONTROLS", "CORRID_OUT", "ID"]
    try:
        result = client.infer(model, inputs, sequence_id=sequence_id, **options)
    except InferenceServerException as exc:
        return _error(exc)
    return {"outputs": _outputs(result, names)}


def _stream(url: str, requests: list[tuple[int, int | str, dict[str, Any]]]) -> list[Answer]:
    """Send ``(value, sequence_id, flags)`` requests on one gRPC stream, in order; the answers
    in order of their request ids."""
    received: queue.Queue[tuple[str, Answer]] = queue.Queue()

    def callback(result: Any, error: Any) -> None:
        if error is not None:
            received.put(("?", _error(error)))
        else:
            answer = {"outputs": _outputs(result, ["OUTPUT", "CONTROLS", "CORRID_OUT"])}
            received.put((result.get_response().id, answer))

    client = grpcclient.InferenceServerClient(url)
    client.start_stream(callback=callback)
    try:
        for index, (value, sequence_id, flags) in enumerate(requests):
            client.async_stream_infer(
                "seq_controls",
                _inputs(grpcclient, value, True),
                request_id=str(index),
                sequence_id=sequence_id,
                **flags,
            )
        answers = dict(received.get(timeout=WAIT_S) for _ in requests)
    finally:
        client.stop_stream()
        client.close()
    return [answers.get(str(index), answers.get("?", {})) for index in range(len(requests))]


def _concurrent(url: str, count: int, steps: int) -> list[list[Answer]]:
    """``count`` sequences on seq_controls at once, each from its own thread and client."""
    results: list[list[Answer]] = [[] for _ in range(count)]

    def one(index: int) -> None:
        client = httpclient.InferenceServerClient(url)
        try:
            for step in range(steps):
                flags = {"sequence_start": step == 0, "sequence_end": step == steps - 1}
                answer = _call(client, "seq_controls", step + 1, 1000 + index, **flags)
                results[index].append(answer)
        finally:
            client.close()

    threads = [threading.Thread(target=one, args=(i,)) for i in range(count)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(WAIT_S)
    return results


def _extra(module: Any, name: str, datatype: str, value: np.ndarray) -> Any:
    tensor = module.InferInput(name, list(value.shape), datatype)
    tensor.set_data_from_numpy(value)
    return tensor


def scenario(http_url: str, grpc_url: str, *, idle_wait_s: float = 2.6) -> dict[str, Any]:
    """Run every step against one server; the transcript, keyed by step name."""
    http = httpclient.InferenceServerClient(http_url)
    grpc = grpcclient.InferenceServerClient(grpc_url)
    steps: dict[str, Callable[[], Any]] = {
        "http accumulate": lambda: [
            _call(http, "seq_accumulate", 5, 101, sequence_start=True),
            _call(http, "seq_accumulate", 3, 101),
            _call(http, "seq_accumulate", 2, 101),
            _call(http, "seq_accumulate", 1, 101, sequence_end=True),
        ],
        "grpc accumulate, start on an open sequence": lambda: [
            _call(grpc, "seq_accumulate", 4, 102, sequence_start=True),
            _call(grpc, "seq_accumulate", 4, 102),
            _call(grpc, "seq_accumulate", 7, 102, sequence_start=True),
            _call(grpc, "seq_accumulate", 1, 102, sequence_end=True),
        ],
        "grpc controls": lambda: [
            _call(grpc, "seq_controls", 5, 201, sequence_start=True),
            _call(grpc, "seq_controls", 6, 201),
            _call(grpc, "seq_controls", 7, 201, sequence_end=True),
            _call(grpc, "seq_controls", 9, 202, sequence_start=True, sequence_end=True),
        ],
        "grpc stream, two sequences interleaved": lambda: _stream(
            grpc_url,
            [
                (1, 301, {"sequence_start": True}),
                (10, 302, {"sequence_start": True}),
                (2, 301, {}),
                (20, 302, {}),
                (3, 301, {"sequence_end": True}),
                (30, 302, {"sequence_end": True}),
            ],
        ),
        "http string ids": lambda: [
            _call(http, "seq_string", 1, "alpha", sequence_start=True),
            _call(http, "seq_string", 2, "alpha"),
            _call(http, "seq_string", 3, "alpha", sequence_end=True),
        ],
        "grpc string ids": lambda: [
            _call(grpc, "seq_string", 5, "beta", sequence_start=True),
            _call(grpc, "seq_string", 6, "beta", sequence_end=True),
        ],
        "integer ids on a model without a CORRID control": lambda: [
            _call(http, "seq_string", 1, 77, sequence_start=True, sequence_end=True),
        ],
        "largest uint64 ids": lambda: [
            _call(http, "seq_controls", 1, 2**63 + 5, sequence_start=True, sequence_end=True),
            _call(http, "seq_controls", 2, 2**64 - 1, sequence_start=True, sequence_end=True),
        ],
        "string CORRID control": lambda: [
            _call(http, "seq_corrid", 1, "delta", sequence_start=True),
            _call(grpc, "seq_corrid", 2, "delta", sequence_end=True),
        ],
        "integer id on a string CORRID model": lambda: _call(
            grpc, "seq_corrid", 1, 401, sequence_start=True, sequence_end=True
        ),
        "eight sequences at once": lambda: _concurrent(http_url, 8, 5),
        "unknown sequence": lambda: _call(http, "seq_accumulate", 1, 555),
        "sequence after its end": lambda: _call(grpc, "seq_accumulate", 1, 101),
        "no sequence id": lambda: _call(http, "seq_accumulate", 1),
        "no sequence id, grpc": lambda: _call(grpc, "seq_controls", 1),
        "batch of two": lambda: _call(http, "seq_accumulate", 1, 103, rows=2, sequence_start=True),
        "client sends a control input": lambda: _call(
            http,
            "seq_controls",
            1,
            104,
            sequence_start=True,
            extra=[_extra(httpclient, "START", "FP32", np.ones((1, 1), np.float32))],
        ),
        "client sends a state input": lambda: _call(
            grpc,
            "seq_accumulate",
            1,
            105,
            sequence_start=True,
            extra=[_extra(grpcclient, "ACC_IN", "INT32", np.ones((1, 1), np.int32))],
        ),
        "string id on a uint64 CORRID model": lambda: _call(
            http, "seq_controls", 1, "gamma", sequence_start=True, sequence_end=True
        ),
        "expired sequence": lambda: _expired(http, idle_wait_s),
        "still serving": lambda: [
            _call(http, "seq_accumulate", 2, 106, sequence_start=True),
            _call(grpc, "seq_accumulate", 2, 106, sequence_end=True),
        ],
    }
    try:
        return {name: step() for name, step in steps.items()}
    finally:
        http.close()
        grpc.close()


def _expired(client: Any, idle_wait_s: float) -> list[Answer]:
    first = _call(client, "seq_accumulate", 1, 107, sequence_start=True)
    time.sleep(idle_wait_s)  # seq_accumulate releases a sequence idle for 2 s
    return [first, _call(client, "seq_accumulate", 1, 107)]
