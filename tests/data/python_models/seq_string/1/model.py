"""A sum that starts from a file (initial_state/hundred holds int32 100), for string or
integer correlation ids: OUTPUT = ACC_OUT = ACC_IN + INPUT; ID is the request's
``correlation_id()`` as text. No batching (max_batch_size 0): one sequence slot per instance.
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
            ident = np.array([str(request.correlation_id()).encode()], dtype=np.object_)
            outputs = [
                pb_utils.Tensor("OUTPUT", total),
                pb_utils.Tensor("ACC_OUT", total),
                pb_utils.Tensor("ID", ident),
            ]
            responses.append(pb_utils.InferenceResponse(output_tensors=outputs))
        return responses
