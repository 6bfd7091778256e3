"""One scenario of calls over unmodified ``tritonclient`` (HTTP and gRPC), for the restricted
API tests against headrace and, side by side, against Triton: every call's answer is ``ok`` or
``STATUS: message``, so two servers' answers compare as dictionaries."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import numpy as np
import tritonclient.grpc as grpcclient
import tritonclient.http as httpclient
from tritonclient.utils import InferenceServerException

__all__ = ["MODEL", "answers", "write_repository"]

MODEL = "add_sub"
_MODELS = Path(__file__).resolve().parent.parent / "data" / "python_models"


def write_repository(target: Path) -> Path:
    """A repository with Triton's add_sub python model (both servers can serve it)."""
    import shutil

    shutil.copytree(_MODELS / MODEL, target / MODEL)
    return target


def _inputs(module: Any) -> list[Any]:
    inputs = []
    for name in ("INPUT0", "INPUT1"):
        tensor = module.InferInput(name, [4], "FP32")
        tensor.set_data_from_numpy(np.arange(4, dtype=np.float32))
        inputs.append(tensor)
    return inputs


def _calls(
    client: Any, module: Any, headers: Mapping[str, str] | None
) -> dict[str, Callable[[], Any]]:
    h = dict(headers) if headers else None
    return {
        "live": lambda: client.is_server_live(headers=h),
        "model_ready": lambda: client.is_model_ready(MODEL, headers=h),
        "server_metadata": lambda: client.get_server_metadata(headers=h),
        "model_metadata": lambda: client.get_model_metadata(MODEL, headers=h),
        "model_config": lambda: client.get_model_config(MODEL, headers=h),
        "infer": lambda: client.infer(MODEL, _inputs(module), headers=h),
        "statistics": lambda: client.get_inference_statistics(MODEL, headers=h),
        "repository_index": lambda: client.get_model_repository_index(headers=h),
        "load": lambda: client.load_model(MODEL, headers=h),
        "shm_status": lambda: client.get_system_shared_memory_status(headers=h),
    }


def _answer(call: Callable[[], Any]) -> str:
    try:
        call()
    except InferenceServerException as exc:
        return f"{exc.status()}: {exc.message()}"
    return "ok"


def answers(
    http_url: str,
    grpc_url: str,
    http_headers: Mapping[str, str] | None = None,
    grpc_headers: Mapping[str, str] | None = None,
) -> dict[str, str]:
    """``http.CALL`` and ``grpc.CALL`` for each call, answered ``ok`` or ``STATUS: message``."""
    out: dict[str, str] = {}
    http = httpclient.InferenceServerClient(http_url)
    grpc = grpcclient.InferenceServerClient(grpc_url)
    try:
        for name, call in _calls(http, httpclient, http_headers).items():
            out[f"http.{name}"] = _answer(call)
        for name, call in _calls(grpc, grpcclient, grpc_headers).items():
            out[f"grpc.{name}"] = _answer(call)
    finally:
        http.close()
        grpc.close()
    return out
