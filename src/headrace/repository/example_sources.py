"""Source text of the Triton python-backend models in the examples repository.

They are written the way Triton's python-backend documentation writes models (``import
triton_python_backend_utils as pb_utils``, ``class TritonPythonModel``), so the same files run
unchanged under Triton and under headrace.
"""

from __future__ import annotations

__all__ = ["ADD_SUB_MODEL", "IDENTITY_MODEL"]

#: OUTPUT0 = INPUT0 + INPUT1 and OUTPUT1 = INPUT0 - INPUT1, in the dtypes the config declares.
ADD_SUB_MODEL = '''\
"""Sum and difference of two tensors (a Triton python-backend model)."""

import json

import numpy as np
import triton_python_backend_utils as pb_utils


class TritonPythonModel:
    def initialize(self, args):
        config = json.loads(args["model_config"])
        self.dtypes = {}
        for name in ("OUTPUT0", "OUTPUT1"):
            output = pb_utils.get_output_config_by_name(config, name)
            self.dtypes[name] = pb_utils.triton_string_to_numpy(output["data_type"])

    def execute(self, requests):
        responses = []
        for request in requests:
            a = pb_utils.get_input_tensor_by_name(request, "INPUT0").as_numpy()
            b = pb_utils.get_input_tensor_by_name(request, "INPUT1").as_numpy()
            total = pb_utils.Tensor("OUTPUT0", (a + b).astype(self.dtypes["OUTPUT0"]))
            diff = pb_utils.Tensor("OUTPUT1", (a - b).astype(self.dtypes["OUTPUT1"]))
            responses.append(pb_utils.InferenceResponse(output_tensors=[total, diff]))
        return responses

    def finalize(self):
        pass
'''

#: OUTPUT0 = INPUT0 for BYTES (or any) tensors.
IDENTITY_MODEL = '''\
"""Return the input unchanged (a Triton python-backend model)."""

import triton_python_backend_utils as pb_utils


class TritonPythonModel:
    def execute(self, requests):
        responses = []
        for request in requests:
            data = pb_utils.get_input_tensor_by_name(request, "INPUT0").as_numpy()
            output = pb_utils.Tensor("OUTPUT0", data)
            responses.append(pb_utils.InferenceResponse(output_tensors=[output]))
        return responses
'''
