"""Answers each request with what the server told the model about it, as JSON."""

import json

import numpy as np
import triton_python_backend_utils as pb_utils


class TritonPythonModel:
    def execute(self, requests):
        responses = []
        for request in requests:
            flags = request.flags()
            meta = {
                "request_id": request.request_id(),
                "correlation_id": request.correlation_id(),
                "flags": flags,
                "start": bool(flags & pb_utils.TRITONSERVER_REQUEST_FLAG_SEQUENCE_START),
                "end": bool(flags & pb_utils.TRITONSERVER_REQUEST_FLAG_SEQUENCE_END),
                "parameters": json.loads(request.parameters()),
            }
            text = np.array([json.dumps(meta, sort_keys=True).encode()], dtype=object)
            responses.append(pb_utils.InferenceResponse([pb_utils.Tensor("META", text)]))
        return responses
