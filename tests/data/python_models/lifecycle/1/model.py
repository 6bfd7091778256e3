"""Reports what the backend handed it: initialize args, request metadata, a module-level count.

finalize appends a line to the file named by the config parameter ``marker_file``.
"""

import json

import numpy as np
import triton_python_backend_utils as pb_utils

CALLS = 0


class TritonPythonModel:
    def initialize(self, args):
        self.args = args
        config = json.loads(args["model_config"])
        self.marker_file = config["parameters"]["marker_file"]["string_value"]

    def execute(self, requests):
        global CALLS
        CALLS += 1
        responses = []
        for request in requests:
            meta = {
                "request_id": request.request_id(),
                "correlation_id": request.correlation_id(),
                "flags": request.flags(),
                "start": bool(request.flags() & pb_utils.TRITONSERVER_REQUEST_FLAG_SEQUENCE_START),
                "end": bool(request.flags() & pb_utils.TRITONSERVER_REQUEST_FLAG_SEQUENCE_END),
                "parameters": json.loads(request.parameters()),
                "requested": request.requested_output_names(),
            }
            outputs = [
                pb_utils.Tensor("ARGS", np.array([json.dumps(self.args).encode()], dtype=object)),
                pb_utils.Tensor("CALLS", np.array([CALLS], dtype=np.int64)),
                pb_utils.Tensor("META", np.array([json.dumps(meta).encode()], dtype=object)),
            ]
            responses.append(pb_utils.InferenceResponse(output_tensors=outputs))
        return responses

    def finalize(self):
        with open(self.marker_file, "a") as marker:
            marker.write("finalized\n")
