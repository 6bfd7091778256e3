"""A decoupled model: for input n it sends three responses (n, n + 1, n + 2), then the final
flag on its own. With the request parameter ``in_thread`` it answers from a thread of its own
after ``execute`` has returned, as streaming models do. A negative n gets an error response."""

import json
import threading

import numpy as np
import triton_python_backend_utils as pb_utils


class TritonPythonModel:
    def initialize(self, args):
        config = json.loads(args["model_config"])
        if not pb_utils.using_decoupled_model_transaction_policy(config):
            raise pb_utils.TritonModelException("repeat_decoupled must be decoupled")
        self.threads = []

    def execute(self, requests):
        for request in requests:
            sender = request.get_response_sender()
            n = int(pb_utils.get_input_tensor_by_name(request, "IN").as_numpy()[0])
            if json.loads(request.parameters()).get("in_thread"):
                thread = threading.Thread(target=self.answer, args=(sender, n))
                thread.start()
                self.threads.append(thread)
            else:
                self.answer(sender, n)
        return None

    def answer(self, sender, n):
        if n < 0:
            error = pb_utils.TritonError(f"negative input {n}")
            sender.send(pb_utils.InferenceResponse(error=error))
            sender.send(flags=pb_utils.TRITONSERVER_RESPONSE_COMPLETE_FINAL)
            return
        for step in range(3):
            out = pb_utils.Tensor("OUT", np.array([n + step], dtype=np.int32))
            sender.send(pb_utils.InferenceResponse(output_tensors=[out]))
        sender.send(flags=pb_utils.TRITONSERVER_RESPONSE_COMPLETE_FINAL)

    def finalize(self):
        for thread in self.threads:
            thread.join()
