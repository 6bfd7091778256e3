"""A decoupled model that floods its client: for COUNT and SIZE it sends COUNT responses, each
INDEX (0, 1, …) and OUT (SIZE copies of INDEX), then the final flag, from a thread of its own
per request (so a request whose client stops reading holds only its thread). A send the server
gives up on (the client did not read in time) ends that request's thread."""

import threading

import numpy as np
import triton_python_backend_utils as pb_utils


class TritonPythonModel:
    def initialize(self, args):
        self.threads = []

    def execute(self, requests):
        for request in requests:
            count = int(pb_utils.get_input_tensor_by_name(request, "COUNT").as_numpy()[0])
            size = int(pb_utils.get_input_tensor_by_name(request, "SIZE").as_numpy()[0])
            sender = request.get_response_sender()
            thread = threading.Thread(target=self.flood, args=(sender, count, size), daemon=True)
            thread.start()
            self.threads.append(thread)
        return None

    def flood(self, sender, count, size):
        try:
            for index in range(count):
                outputs = [
                    pb_utils.Tensor("INDEX", np.array([index], dtype=np.int32)),
                    pb_utils.Tensor("OUT", np.full(size, index, dtype=np.int32)),
                ]
                sender.send(pb_utils.InferenceResponse(output_tensors=outputs))
            sender.send(flags=pb_utils.TRITONSERVER_RESPONSE_COMPLETE_FINAL)
        except pb_utils.TritonModelException:
            pass  # the server failed the request: its client was not reading

    def finalize(self):
        for thread in self.threads:
            thread.join(10)
