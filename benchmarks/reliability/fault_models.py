"""A python-backend model that misbehaves on request, for the reliability tests and benchmarks.

``fault`` echoes its FP32 input ``X`` as ``Y``. The first value of each request says what to
do: ``v >= 0`` sleep ``v`` milliseconds, then answer; ``-1`` raise; ``-2`` hang (an hour);
``-3`` end the process at once (``os._exit``; in a worker process, ``--python-runtime
process``, that kills the worker, in-server it would kill the server). So one model serves
slow, failing, hung and dying requests, and a test picks by the value it sends.
"""

from __future__ import annotations

from pathlib import Path

__all__ = ["DELAY", "DIE", "HANG", "RAISE", "write_fault_model"]

RAISE, HANG, DIE = -1.0, -2.0, -3.0
DELAY = 0.0
"""Add the milliseconds to sleep to this (a value >= 0 is a delay)."""

MODEL_PY = """\
import os
import threading
import time

import numpy as np
import triton_python_backend_utils as pb_utils


class TritonPythonModel:
    def execute(self, requests):
        responses = []
        for request in requests:
            x = pb_utils.get_input_tensor_by_name(request, "X").as_numpy()
            code = float(x.reshape(-1)[0]) if x.size else 0.0
            if code == -1.0:
                raise ValueError("fault model asked to raise")
            if code == -2.0:
                threading.Event().wait(3600)
            if code == -3.0:
                os._exit(3)
            if code > 0:
                time.sleep(code / 1000.0)
            responses.append(pb_utils.InferenceResponse([pb_utils.Tensor("Y", x)]))
        return responses
"""

_CONFIG = """\
name: "{name}"
backend: "python"
max_batch_size: {max_batch_size}
input [ {{ name: "X" data_type: TYPE_FP32 dims: [ -1 ] }} ]
output [ {{ name: "Y" data_type: TYPE_FP32 dims: [ -1 ] }} ]
instance_group [ {{ kind: KIND_CPU count: {instances} }} ]
{extra}
"""


def write_fault_model(
    repository: Path,
    name: str = "fault",
    *,
    instances: int = 1,
    max_batch_size: int = 0,
    runtime: str = "",
    execution_timeout_ms: int = 0,
    max_queue_size: int | None = None,
    queue_timeout_us: int = 0,
) -> Path:
    """Write ``repository/name`` (config and ``1/model.py``); returns the model directory.

    ``max_queue_size`` (not None) or ``queue_timeout_us`` give it ``dynamic_batching`` with
    that ``default_queue_policy``; ``runtime`` sets ``HEADRACE_PYTHON_RUNTIME`` and
    ``execution_timeout_ms`` ``HEADRACE_EXECUTION_TIMEOUT_MS``.
    """
    extra: list[str] = []
    if max_queue_size is not None or queue_timeout_us:
        policy = [f"max_queue_size: {max_queue_size or 0}"]
        if queue_timeout_us:
            policy.append(f"default_timeout_microseconds: {queue_timeout_us}")
        extra.append(f"dynamic_batching {{ default_queue_policy {{ {' '.join(policy)} }} }}")
    parameters = {}
    if runtime:
        parameters["HEADRACE_PYTHON_RUNTIME"] = runtime
    if execution_timeout_ms:
        parameters["HEADRACE_EXECUTION_TIMEOUT_MS"] = str(execution_timeout_ms)
    for key, value in parameters.items():
        extra.append(f'parameters {{ key: "{key}" value {{ string_value: "{value}" }} }}')
    model_dir = repository / name
    (model_dir / "1").mkdir(parents=True, exist_ok=True)
    config = _CONFIG.format(
        name=name, max_batch_size=max_batch_size, instances=instances, extra="\n".join(extra)
    )
    (model_dir / "config.pbtxt").write_text(config, encoding="utf-8")
    (model_dir / "1" / "model.py").write_text(MODEL_PY, encoding="utf-8")
    return model_dir
