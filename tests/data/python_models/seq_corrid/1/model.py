"""String correlation ids as a TYPE_STRING CORRID control input: ID echoes that input,
OUTPUT echoes INPUT."""

import numpy as np
import triton_python_backend_utils as pb_utils


class TritonPythonModel:
    def execute(self, requests):
        responses = []
        for request in requests:
            value = pb_utils.get_input_tensor_by_name(request, "INPUT").as_numpy()
            corrid = pb_utils.get_input_tensor_by_name(request, "CORRID").as_numpy()
            ident = np.array(corrid.reshape(-1)[:1], dtype=np.object_).reshape(1, 1)
            outputs = [pb_utils.Tensor("OUTPUT", value), pb_utils.Tensor("ID", ident)]
            responses.append(pb_utils.InferenceResponse(output_tensors=outputs))
        return responses
