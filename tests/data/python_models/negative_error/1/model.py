"""Square roots; a request holding a negative value gets an error response of its own."""

import numpy as np
import triton_python_backend_utils as pb_utils


class TritonPythonModel:
    def execute(self, requests):
        responses = []
        for request in requests:
            x = pb_utils.get_input_tensor_by_name(request, "X").as_numpy()
            if (x < 0).any():
                error = pb_utils.TritonError(f"negative value {x.min()} in input X")
                responses.append(pb_utils.InferenceResponse(error=error))
            elif (x > 1e6).any():
                error = pb_utils.TritonError(
                    f"value {x.max()} is too large", pb_utils.TritonError.INVALID_ARG
                )
                responses.append(pb_utils.InferenceResponse(error=error))
            else:
                sqrt = pb_utils.Tensor("SQRT", np.sqrt(x))
                responses.append(pb_utils.InferenceResponse(output_tensors=[sqrt]))
        return responses
