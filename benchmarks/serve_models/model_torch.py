"""A torch network as a Triton python-backend model.py, batching every request it is handed.

The network is named by the config parameter ``net`` and built by ``nets.py`` (copied next to
this file) with the weights in ``weights.pt``. ``execute`` concatenates the inputs of all the
requests the dynamic batcher gave it, runs the network once and splits the output back, as a
python-backend model has to for batching to pay off.
"""

import importlib.util
import json
import os
import sys

import numpy as np
import torch
import triton_python_backend_utils as pb_utils


def _load_nets(directory):
    name = "headrace_bench_nets"
    if name not in sys.modules:
        path = os.path.join(directory, "nets.py")
        spec = importlib.util.spec_from_file_location(name, path)
        if spec is None or spec.loader is None:
            raise ImportError(f"cannot load the network definitions from {path!r}")
        module = importlib.util.module_from_spec(spec)
        sys.modules[name] = module
        spec.loader.exec_module(module)
    return sys.modules[name]


class TritonPythonModel:
    def initialize(self, args):
        config = json.loads(args["model_config"])
        net = config["parameters"]["net"]["string_value"]
        directory = os.path.join(args["model_repository"], args["model_version"])
        self.net = _load_nets(directory).build(net)
        weights = torch.load(os.path.join(directory, "weights.pt"), weights_only=True)
        self.net.load_state_dict(weights)

    def execute(self, requests):
        arrays = [pb_utils.get_input_tensor_by_name(r, "INPUT0").as_numpy() for r in requests]
        with torch.inference_mode():
            result = self.net(torch.from_numpy(np.concatenate(arrays))).numpy()
        responses = []
        start = 0
        for array in arrays:
            part = result[start : start + len(array)]
            start += len(array)
            output = pb_utils.Tensor("OUTPUT0", part)
            responses.append(pb_utils.InferenceResponse(output_tensors=[output]))
        return responses
