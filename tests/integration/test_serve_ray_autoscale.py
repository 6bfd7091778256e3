"""``headrace serve --ray-placement-timeout``: a load waits for the cluster to grow, then gives up.

A ``ray.cluster_utils.Cluster`` whose one worker node has one (simulated) GPU; model ``gpu``
asks for two ``KIND_GPU`` instances of a whole GPU each, so its second actor waits for a GPU no
node has free, as KubeRay's autoscaler sees it. While the load waits the model is LOADING and
not ready; a second GPU node joins (what the autoscaler would add) and the load completes. A
model needing more GPUs than the cluster has fails once the timeout is spent, with an error
naming the model and the GPUs missing, and leaves no actor behind. With ``--ray-share``, a
frontend that gives up leaves the actors another frontend still waits for.

Run inside a private network namespace (Ray listens on every interface):
    unshare -n sh -c 'ip link set lo up && HEADRACE_RAY_TESTS=1 RAY_USAGE_STATS_ENABLED=0 \
        exec python -m pytest -m ray tests/integration/test_serve_ray_autoscale.py -q'
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from typing import Any

import numpy as np
import pytest
from ray_serving import ray_cluster
from serve_process import ServeProcess, start_server

pytestmark = pytest.mark.ray

NAMESPACE = "headrace-autoscale"
PLACEMENT_TIMEOUT_S = 45
WAIT_S = 90.0  # bound of each wait in the test

_MODEL_PY = """\
import triton_python_backend_utils as pb_utils


class TritonPythonModel:
    def execute(self, requests):
        responses = []
        for request in requests:
            x = pb_utils.get_input_tensor_by_name(request, "INPUT0").as_numpy()
            responses.append(pb_utils.InferenceResponse([pb_utils.Tensor("OUTPUT0", x + 1)]))
        return responses
"""

_CONFIG = """\
name: "{name}"
backend: "python"
max_batch_size: 4
input {{ name: "INPUT0" data_type: TYPE_FP32 dims: [ 2 ] }}
output {{ name: "OUTPUT0" data_type: TYPE_FP32 dims: [ 2 ] }}
instance_group [ {{ count: {count} kind: KIND_GPU }} ]
"""


@pytest.fixture(scope="module")
def cluster() -> Iterator[Any]:
    with ray_cluster(NAMESPACE, [{"num_cpus": 4, "num_gpus": 1}]) as made:
        yield made.cluster


@pytest.fixture(scope="module")
def server(cluster: Any, tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServeProcess]:
    root = tmp_path_factory.mktemp("serve_ray_autoscale")
    repository = root / "repo"
    for name, count in (
        ("gpu", 2),
        ("gpu_more", 2),
        ("gpu_shared", 1),
    ):  # count per GPU the cluster has
        (repository / name / "1").mkdir(parents=True)
        (repository / name / "config.pbtxt").write_text(_CONFIG.format(name=name, count=count))
        (repository / name / "1" / "model.py").write_text(_MODEL_PY)
    process = start_server(repository, root, _args(cluster, PLACEMENT_TIMEOUT_S))
    try:
        yield process
    finally:
        assert process.stop() == 0, process.log_tail()


def _args(cluster: Any, timeout_s: float, *more: str) -> list[str]:
    return [
        "--ray-address",
        cluster.address,
        "--ray-namespace",
        NAMESPACE,
        "--ray-placement-timeout",
        str(timeout_s),
        "--model-control-mode",
        "explicit",
        *more,
    ]


def _actors(model: str) -> list[str]:
    import ray

    return [
        entry["name"]
        for entry in ray.util.list_named_actors(all_namespaces=True)
        if entry["namespace"] == NAMESPACE and entry["name"].startswith(f"{model}/")
    ]


def _state(client: Any, model: str) -> str:
    for entry in client.get_model_repository_index():
        if entry["name"] == model:
            return str(entry.get("state", ""))
    return ""


def _wait_for(what: str, check: Any) -> None:
    deadline = time.monotonic() + WAIT_S
    while not check():
        if time.monotonic() > deadline:
            raise AssertionError(f"{what} not within {WAIT_S}s")
        time.sleep(0.2)


class Load(threading.Thread):
    """``load_model`` in the background: it returns only once the load is over."""

    def __init__(self, server: ServeProcess, model: str) -> None:
        super().__init__()
        self.server, self.model = server, model
        self.error: Exception | None = None

    def run(self) -> None:
        import tritonclient.http as httpclient

        client = httpclient.InferenceServerClient(self.server.http_url, network_timeout=WAIT_S)
        try:
            client.load_model(self.model)
        except Exception as exc:  # the test reads it
            self.error = exc
        finally:
            client.close()


def test_a_load_waits_for_a_node_with_the_gpu_then_serves(
    cluster: Any, server: ServeProcess
) -> None:
    import tritonclient.http as httpclient

    client = httpclient.InferenceServerClient(server.http_url)
    load = Load(server, "gpu")
    load.start()
    try:
        # both actors are made; one waits for a GPU: the model is loading, not ready
        _wait_for("the model's two actors", lambda: len(_actors("gpu")) == 2)
        assert _state(client, "gpu") == "LOADING"
        assert not client.is_model_ready("gpu")
        cluster.add_node(num_cpus=1, num_gpus=1)  # what the autoscaler adds for it
        load.join(WAIT_S)
        assert not load.is_alive() and load.error is None, load.error
        assert client.is_model_ready("gpu")
        x = np.ones((1, 2), np.float32)
        inputs = [httpclient.InferInput("INPUT0", [1, 2], "FP32")]
        inputs[0].set_data_from_numpy(x)
        np.testing.assert_array_equal(client.infer("gpu", inputs).as_numpy("OUTPUT0"), x + 1)
    finally:
        load.join(WAIT_S)
        client.close()


def test_a_load_fails_naming_the_missing_gpus_when_the_timeout_is_spent(
    cluster: Any, server: ServeProcess
) -> None:
    import tritonclient.http as httpclient

    client = httpclient.InferenceServerClient(server.http_url)
    load = Load(server, "gpu_more")  # two GPUs now: four instances, and all GPUs are taken
    load.start()
    try:
        _wait_for("the model's actors", lambda: len(_actors("gpu_more")) == 4)
        assert not client.is_model_ready("gpu_more")
        load.join(PLACEMENT_TIMEOUT_S + WAIT_S)
        assert not load.is_alive() and load.error is not None
        message = str(load.error)
        assert "model 'gpu_more' version 1: 4 of 4 Ray actors" in message, message
        assert f"--ray-placement-timeout {PLACEMENT_TIMEOUT_S}s" in message, message
        assert "they need 4 CPU and 4 GPU, the cluster has" in message, message
        assert "and 0 GPU free" in message, message
        assert not client.is_model_ready("gpu_more")
        assert client.is_model_ready("gpu")  # the other model is untouched
        _wait_for("the waiting actors' removal", lambda: not _actors("gpu_more"))
    finally:
        load.join(WAIT_S)
        client.close()


def test_a_shared_frontend_giving_up_leaves_the_actors_another_waits_for(
    cluster: Any, server: ServeProcess
) -> None:
    import tritonclient.http as httpclient
    from tritonclient.utils import InferenceServerException

    root = server.repository.parent
    started: list[ServeProcess] = []
    try:
        for name, timeout_s in (("patient", WAIT_S), ("hasty", 5)):
            (root / name).mkdir()
            started.append(start_server(server.repository, root / name, _args(cluster, timeout_s, "--ray-share")))  # fmt: skip
        patient, hasty = started
        waiting = Load(patient, "gpu_shared")  # two GPUs, both taken: two actors wait
        waiting.start()
        _wait_for("the shared actors", lambda: len(_actors("gpu_shared")) == 2)
        giving_up = Load(hasty, "gpu_shared")  # the same two actors, found
        giving_up.start()
        giving_up.join(WAIT_S)
        assert giving_up.error is not None and "--ray-placement-timeout 5s" in str(giving_up.error)
        assert len(_actors("gpu_shared")) == 2 and waiting.is_alive()  # still waited for
        cluster.add_node(num_cpus=2, num_gpus=2)
        waiting.join(WAIT_S)
        assert not waiting.is_alive() and waiting.error is None, waiting.error
        # four GPUs now, so the hasty frontend plans four instances (KIND_GPU counts per GPU)
        # and waits for two more GPUs; giving up again, it ends only the two it alone uses
        client = httpclient.InferenceServerClient(hasty.http_url)
        try:
            with pytest.raises(InferenceServerException, match="2 of 4 Ray actors"):
                client.load_model("gpu_shared")
            assert not client.is_model_ready("gpu_shared")
        finally:
            client.close()
        _wait_for("the hasty frontend's own actors ended", lambda: len(_actors("gpu_shared")) == 2)
        client = httpclient.InferenceServerClient(patient.http_url)
        try:
            assert client.is_model_ready("gpu_shared")
            x = np.ones((1, 2), np.float32)
            inputs = [httpclient.InferInput("INPUT0", [1, 2], "FP32")]
            inputs[0].set_data_from_numpy(x)
            out = client.infer("gpu_shared", inputs).as_numpy("OUTPUT0")
            np.testing.assert_array_equal(out, x + 1)
        finally:
            client.close()
    finally:
        for process in started:
            assert process.stop() == 0, process.log_tail()
