"""One client script for the response-cache models, run against headrace and NVIDIA Triton.

:func:`cache_repository` writes two Triton python-backend models that enable
``response_cache``: ``cached_add_sub`` (FP32 sum and difference, batched) and
``cached_bytes`` (a BYTES identity, unbatched). :func:`scenario` drives a server with
unmodified tritonclient over HTTP (binary and JSON tensors) and gRPC, a fixed sequence of
requests whose hits and misses are the same under both servers' keys, and returns every
answer (output names, datatypes, shapes, values) and the models' statistics.
"""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Any

import numpy as np
import tritonclient.grpc as grpcclient
import tritonclient.http as httpclient

__all__ = ["ADD_SUB", "BYTES", "answer", "cache_repository", "infer", "scenario"]

ADD_SUB = "cached_add_sub"
BYTES = "cached_bytes"
MODELS = Path(__file__).resolve().parent.parent / "data" / "python_models"

_ADD_SUB_CONFIG = """\
name: "cached_add_sub"
backend: "python"
max_batch_size: 8
input [
  { name: "INPUT0" data_type: TYPE_FP32 dims: [ -1 ] },
  { name: "INPUT1" data_type: TYPE_FP32 dims: [ -1 ] }
]
output [
  { name: "OUTPUT0" data_type: TYPE_FP32 dims: [ -1 ] },
  { name: "OUTPUT1" data_type: TYPE_FP32 dims: [ -1 ] }
]
instance_group [ { kind: KIND_CPU } ]
response_cache { enable: true }
"""


def cache_repository(target: Path) -> Path:
    """A repository at ``target`` with the two cached models."""
    (target / ADD_SUB / "1").mkdir(parents=True)
    (target / ADD_SUB / "config.pbtxt").write_text(_ADD_SUB_CONFIG)
    shutil.copy(MODELS / "add_sub" / "1" / "model.py", target / ADD_SUB / "1" / "model.py")
    shutil.copytree(MODELS / "bytes_identity", target / BYTES)
    config = (target / BYTES / "config.pbtxt").read_text().replace("bytes_identity", BYTES)
    (target / BYTES / "config.pbtxt").write_text(config + "response_cache { enable: true }\n")
    return target


def infer(
    http_url: str,
    grpc_url: str,
    a: np.ndarray,
    b: np.ndarray,
    *,
    door: str = "http",
    outputs: list[str] | None = None,
) -> dict[str, Any]:
    """One ``cached_add_sub`` request over ``door`` (http, http-json or grpc), answered."""
    if door == "grpc":
        client: Any = grpcclient.InferenceServerClient(grpc_url)
        module: Any = grpcclient
    else:
        client = httpclient.InferenceServerClient(http_url)
        module = httpclient
    binary = door != "http-json"
    try:
        tensors = []
        for name, value in (("INPUT0", a), ("INPUT1", b)):
            tensor = module.InferInput(name, list(value.shape), "FP32")
            if door == "grpc":
                tensor.set_data_from_numpy(value)
            else:
                tensor.set_data_from_numpy(value, binary_data=binary)
            tensors.append(tensor)
        requested = None
        if outputs is not None:
            requested = [
                module.InferRequestedOutput(n)
                if door == "grpc"
                else module.InferRequestedOutput(n, binary_data=binary)
                for n in outputs
            ]
        return answer(client.infer(ADD_SUB, tensors, outputs=requested), door)
    finally:
        client.close()


def answer(result: Any, door: str) -> dict[str, Any]:
    """Each output's datatype, shape and values, in the order the response lists them."""
    response = result.get_response()
    listed = response.outputs if door == "grpc" else response["outputs"]
    found = {}
    for output in listed:
        name = output.name if door == "grpc" else output["name"]
        datatype = output.datatype if door == "grpc" else output["datatype"]
        value = result.as_numpy(name)
        values = [v.decode() if isinstance(v, bytes) else v for v in value.reshape(-1).tolist()]
        found[name] = {"datatype": datatype, "shape": list(value.shape), "values": values}
    return found


def _bytes(http_url: str, words: list[bytes]) -> dict[str, Any]:
    client = httpclient.InferenceServerClient(http_url)
    try:
        tensor = httpclient.InferInput("IN", [len(words)], "BYTES")
        tensor.set_data_from_numpy(np.array(words, dtype=object))
        return answer(client.infer(BYTES, [tensor]), "http")
    finally:
        client.close()


def statistics(http_url: str) -> dict[str, dict[str, int]]:
    """Per model: counts of the statistics fields a cache changes."""
    client = httpclient.InferenceServerClient(http_url)
    try:
        stats = client.get_inference_statistics()["model_stats"]
    finally:
        client.close()
    counts = {}
    for model in stats:
        infer_stats = model["inference_stats"]
        counts[model["name"]] = {
            "inference_count": int(model["inference_count"]),
            "execution_count": int(model["execution_count"]),
            **{
                f"{field}.count": int(infer_stats[field]["count"])
                for field in ("success", "fail", "queue", "cache_hit", "cache_miss")
            },
        }
    return counts


def scenario(http_url: str, grpc_url: str) -> dict[str, Any]:
    """The same requests in the same order; hits and misses agree under Triton's key too."""
    a = np.array([[1, 2, 3, 4]], np.float32)
    b = np.ones((1, 4), np.float32)
    steps: dict[str, Any] = {}
    steps["miss"] = infer(http_url, grpc_url, a, b)
    steps["hit"] = infer(http_url, grpc_url, a, b)
    steps["hit, grpc"] = infer(http_url, grpc_url, a, b, door="grpc")
    steps["hit, json"] = infer(http_url, grpc_url, a, b, door="http-json")
    steps["other input misses"] = infer(http_url, grpc_url, a, b * 2)
    steps["other input hits"] = infer(http_url, grpc_url, a, b * 2, door="grpc")
    steps["batch of two misses"] = infer(http_url, grpc_url, np.vstack([a, a]), np.vstack([b, b]))
    steps["bytes miss"] = _bytes(http_url, [b"one", b"two"])
    steps["bytes hit"] = _bytes(http_url, [b"one", b"two"])
    steps["statistics"] = statistics(http_url)
    return steps
