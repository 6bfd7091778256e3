"""What the Ray serving tests share: a python model with a fixed cost per batch that answers
with its process id (so a test knows which actor served it), its repository, and one infer."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import numpy as np

WAIT_S = 90.0  # bound of each wait for the cluster to settle

MODEL_PY = """\
import os
import time

import numpy as np
import triton_python_backend_utils as pb_utils


class TritonPythonModel:
    def execute(self, requests):
        time.sleep(0.02)  # a fixed cost per batch, so requests are in flight when it dies
        responses = []
        for request in requests:
            x = pb_utils.get_input_tensor_by_name(request, "INPUT0").as_numpy()
            pid = np.full((x.shape[0], 1), os.getpid(), np.int64)
            outputs = [pb_utils.Tensor("OUTPUT0", x * 2), pb_utils.Tensor("PID", pid)]
            responses.append(pb_utils.InferenceResponse(output_tensors=outputs))
        return responses
"""

CONFIG = """\
name: "{name}"
backend: "python"
max_batch_size: 8
input {{ name: "INPUT0" data_type: TYPE_FP32 dims: [ 4 ] }}
output {{ name: "OUTPUT0" data_type: TYPE_FP32 dims: [ 4 ] }}
output {{ name: "PID" data_type: TYPE_INT64 dims: [ 1 ] }}
instance_group [ {{ count: {count} kind: KIND_CPU }} ]
dynamic_batching {{ }}
"""


def write_models(root: Path) -> Path:
    """``slow`` (two instances) and ``single`` (one) under ``root``."""
    for name, count in (("slow", 2), ("single", 1)):
        (root / name / "1").mkdir(parents=True)
        (root / name / "config.pbtxt").write_text(CONFIG.format(name=name, count=count))
        (root / name / "1" / "model.py").write_text(MODEL_PY)
    return root


def infer(client: Any, module: Any, model: str, x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """OUTPUT0 and PID of one request through ``module``'s (tritonclient http or grpc) client."""
    inputs = [module.InferInput("INPUT0", list(x.shape), "FP32")]
    inputs[0].set_data_from_numpy(x)
    outputs = [module.InferRequestedOutput("OUTPUT0"), module.InferRequestedOutput("PID")]
    result = client.infer(model, inputs, outputs=outputs)
    return result.as_numpy("OUTPUT0"), result.as_numpy("PID")


def wait_for(what: str, check: Any) -> None:
    deadline = time.monotonic() + WAIT_S
    while not check():
        if time.monotonic() > deadline:
            raise AssertionError(f"{what} not within {WAIT_S}s")
        time.sleep(0.1)
