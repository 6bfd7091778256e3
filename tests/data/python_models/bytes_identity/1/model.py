"""Returns its BYTES input unchanged (object arrays of bytes in, object arrays out)."""

import numpy as np
import triton_python_backend_utils as pb_utils


class TritonPythonModel:
    def execute(self, requests):
        responses = []
        for request in requests:
            data = pb_utils.get_input_tensor_by_name(request, "IN").as_numpy()
            out = np.array([bytes(item) for item in data.reshape(-1)], dtype=np.object_)
            out = pb_utils.Tensor("OUT", out.reshape(data.shape))
            responses.append(pb_utils.InferenceResponse([out]))
        return responses
