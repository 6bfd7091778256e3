"""A running sum kept by the model itself, per correlation id, driven by control inputs.

START resets the sum, END forgets it; each instance has its own sums, so a sequence whose
requests reached two instances would lose count. CONTROLS echoes [START, END, READY] as the
server set them, CORRID_OUT the correlation id.
"""

import numpy as np
import triton_python_backend_utils as pb_utils


def _input(request, name):
    return pb_utils.get_input_tensor_by_name(request, name).as_numpy().reshape(-1)


class TritonPythonModel:
    def initialize(self, args):
        self.sums = {}

    def execute(self, requests):
        responses = []
        for request in requests:
            value = int(_input(request, "INPUT")[0])
            start = float(_input(request, "START")[0])
            end = float(_input(request, "END")[0])
            ready = float(_input(request, "READY")[0])
            corrid = int(_input(request, "CORRID")[0])
            total = value if start else self.sums.get(corrid, 0) + value
            if end:
                self.sums.pop(corrid, None)
            else:
                self.sums[corrid] = total
            outputs = [
                pb_utils.Tensor("OUTPUT", np.array([[total]], np.int32)),
                pb_utils.Tensor("CONTROLS", np.array([[start, end, ready]], np.float32)),
                pb_utils.Tensor("CORRID_OUT", np.array([[corrid]], np.uint64)),
            ]
            responses.append(pb_utils.InferenceResponse(output_tensors=outputs))
        return responses
