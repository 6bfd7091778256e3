"""Identity as a Triton python-backend model.py: each request's INPUT0 comes back as OUTPUT0.

Copied unchanged into the benchmark repository, where both ``headrace serve`` and NVIDIA
Triton load it; it measures what serving costs when the model costs nothing.
"""

import triton_python_backend_utils as pb_utils


class TritonPythonModel:
    def execute(self, requests):
        responses = []
        for request in requests:
            data = pb_utils.get_input_tensor_by_name(request, "INPUT0").as_numpy()
            output = pb_utils.Tensor("OUTPUT0", data)
            responses.append(pb_utils.InferenceResponse(output_tensors=[output]))
        return responses
