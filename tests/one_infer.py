"""One inference through unmodified ``tritonclient``, answered or refused, as a string the
tests compare (shared by the queue-bound tests, in-process and side by side with Triton)."""

from __future__ import annotations

import numpy as np
import tritonclient.grpc as grpcclient
import tritonclient.http as httpclient
from tritonclient.utils import InferenceServerException

__all__ = ["infer_or_refusal"]


def infer_or_refusal(protocol: str, url: str, model: str, input_name: str) -> str:
    """Send one FP32 ``[1, 1]`` input; "ok", or the refusal as ``status: message``."""
    module = httpclient if protocol == "http" else grpcclient
    client = module.InferenceServerClient(url)
    tensor = module.InferInput(input_name, [1, 1], "FP32")
    tensor.set_data_from_numpy(np.ones((1, 1), np.float32))
    try:
        client.infer(model, [tensor])
        return "ok"
    except InferenceServerException as exc:
        return f"{exc.status()}: {exc.message()}"
    finally:
        client.close()
