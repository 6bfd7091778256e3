"""Reports the shapes the server handed it (X reshaped to [2, 3], S to a scalar per item) and
answers Y = 2 * X in its reshape's shape, [batch, 3, 2]."""

import numpy as np
import triton_python_backend_utils as pb_utils


class TritonPythonModel:
    def execute(self, requests):
        responses = []
        for request in requests:
            x = pb_utils.get_input_tensor_by_name(request, "X").as_numpy()
            s = pb_utils.get_input_tensor_by_name(request, "S").as_numpy()
            batch = x.shape[0]
            seen = np.array([*x.shape, -1, *s.shape], dtype=np.int64)
            y = (2 * x).reshape(batch, 3, 2).astype(np.float32)
            responses.append(
                pb_utils.InferenceResponse(
                    [
                        pb_utils.Tensor("Y", y),
                        pb_utils.Tensor("SEEN", np.tile(seen, (batch, 1))),
                    ]
                )
            )
        return responses
