"""What the Ray serving tests share: a simulated cluster with the test's own Ray driver, a
python model with a fixed cost per batch that answers with its process id (so a test knows
which actor served it), its repository, and one infer."""

from __future__ import annotations

import time
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import numpy as np

WAIT_S = 90.0  # bound of each wait for the cluster to settle


class RayTestCluster:
    """A ``ray.cluster_utils.Cluster`` whose head has no CPU (nothing is placed there), the
    worker ``nodes`` (``add_node`` keyword arguments), and this test's Ray driver on it in
    ``namespace``."""

    def __init__(self, namespace: str, nodes: Sequence[Mapping[str, Any]]) -> None:
        import pytest

        self.ray = pytest.importorskip("ray")
        from ray.cluster_utils import Cluster

        self.namespace = namespace
        self.cluster = Cluster(
            initialize_head=True, head_node_args={"num_cpus": 0, "include_dashboard": False}
        )
        for node in nodes:
            self.cluster.add_node(**node)
        self.cluster.wait_for_nodes()
        self.ray.init(address=self.cluster.address, namespace=namespace, log_to_driver=False)

    def actors(self, model: str) -> dict[str, Any]:
        """The model's named actors in this namespace, by name."""
        names = self.ray.util.list_named_actors(all_namespaces=True)
        return {
            entry["name"]: self.ray.get_actor(entry["name"], namespace=entry["namespace"])
            for entry in names
            if entry["namespace"] == self.namespace and entry["name"].startswith(f"{model}/")
        }

    def pid_of(self, actor: Any) -> int:
        return int(self.ray.get(actor.describe.remote(), timeout=WAIT_S).pid)

    def node_of(self, actor: Any) -> Any:
        node_id = self.ray.get(actor.describe.remote(), timeout=WAIT_S).node
        for node in self.cluster.worker_nodes:
            if node.node_id == node_id:
                return node
        raise AssertionError(f"actor's node {node_id} is not a worker node")

    def answers(self, actor: Any) -> bool:
        """Whether the actor answers within 5 s (alive, not restarting)."""
        try:
            self.ray.get(actor.describe.remote(), timeout=5)
        except Exception:
            return False
        return True

    def shutdown(self) -> None:
        self.ray.shutdown()
        self.cluster.shutdown()


@contextmanager
def ray_cluster(namespace: str, nodes: Sequence[Mapping[str, Any]]) -> Iterator[Any]:
    """A :class:`RayTestCluster` for a module's tests, shut down on the way out."""
    made = RayTestCluster(namespace, nodes)
    try:
        yield made
    finally:
        made.shutdown()


MODEL_PY = """\
import os
import time

import numpy as np
import triton_python_backend_utils as pb_utils


class TritonPythonModel:
    def execute(self, requests):
        time.sleep(0.02)  # a fixed cost per batch, so requests are in flight when it dies
        responses = []
        for request in requests:
            x = pb_utils.get_input_tensor_by_name(request, "INPUT0").as_numpy()
            pid = np.full((x.shape[0], 1), os.getpid(), np.int64)
            outputs = [pb_utils.Tensor("OUTPUT0", x * 2), pb_utils.Tensor("PID", pid)]
            responses.append(pb_utils.InferenceResponse(output_tensors=outputs))
        return responses
"""

CONFIG = """\
name: "{name}"
backend: "python"
max_batch_size: 8
input {{ name: "INPUT0" data_type: TYPE_FP32 dims: [ 4 ] }}
output {{ name: "OUTPUT0" data_type: TYPE_FP32 dims: [ 4 ] }}
output {{ name: "PID" data_type: TYPE_INT64 dims: [ 1 ] }}
instance_group [ {{ count: {count} kind: KIND_CPU }} ]
dynamic_batching {{ }}
"""


def write_models(root: Path) -> Path:
    """``slow`` (two instances) and ``single`` (one) under ``root``."""
    for name, count in (("slow", 2), ("single", 1)):
        (root / name / "1").mkdir(parents=True)
        (root / name / "config.pbtxt").write_text(CONFIG.format(name=name, count=count))
        (root / name / "1" / "model.py").write_text(MODEL_PY)
    return root


def infer(client: Any, module: Any, model: str, x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """OUTPUT0 and PID of one request through ``module``'s (tritonclient http or grpc) client."""
    inputs = [module.InferInput("INPUT0", list(x.shape), "FP32")]
    inputs[0].set_data_from_numpy(x)
    outputs = [module.InferRequestedOutput("OUTPUT0"), module.InferRequestedOutput("PID")]
    result = client.infer(model, inputs, outputs=outputs)
    return result.as_numpy("OUTPUT0"), result.as_numpy("PID")


def wait_for(what: str, check: Any) -> None:
    deadline = time.monotonic() + WAIT_S
    while not check():
        if time.monotonic() > deadline:
            raise AssertionError(f"{what} not within {WAIT_S}s")
        time.sleep(0.1)
