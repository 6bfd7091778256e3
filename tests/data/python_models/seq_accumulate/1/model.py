"""A running sum kept in Triton's implicit state: ACC_OUT = ACC_IN + INPUT, OUTPUT = ACC_OUT.

The model keeps nothing itself; the server feeds each sequence's state back as ACC_IN.
"""

import numpy as np
import triton_python_backend_utils as pb_utils


class TritonPythonModel:
    def execute(self, requests):
        responses = []
        for request in requests:
            value = pb_utils.get_input_tensor_by_name(request, "INPUT").as_numpy()
            state = pb_utils.get_input_tensor_by_name(request, "ACC_IN").as_numpy()
            total = (state.reshape(value.shape) + value).astype(np.int32)
            outputs = [pb_utils.Tensor("OUTPUT", total), pb_utils.Tensor("ACC_OUT", total)]
            responses.append(pb_utils.InferenceResponse(output_tensors=outputs))
        return responses
