"""``headrace serve --ray-address``: instances as Ray actors on a simulated 3-node cluster.

One ``ray.cluster_utils.Cluster``: a head with no CPU and three worker nodes with one CPU each
(and a custom resource naming it), so the three actors (model ``slow``: two instances,
``single``: one) land one per node. A real ``headrace serve`` joins it as a frontend and
unmodified ``tritonclient`` (HTTP and gRPC) talks to that. The failure tests kill an actor and
remove a node under a bounded load loop: only the requests in flight fail, each with one
UNAVAILABLE message naming the model, and service resumes without restarting the server.

Run inside a private network namespace (Ray listens on every interface):
    unshare -n sh -c 'ip link set lo up && HEADRACE_RAY_TESTS=1 RAY_USAGE_STATS_ENABLED=0 \
        exec python -m pytest -m ray tests/integration/test_serve_ray.py -q'
"""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Iterator
from typing import Any

import numpy as np
import pytest
from ray_serving import RayTestCluster, infer, wait_for, write_models
from serve_process import ServeProcess, start_server

pytestmark = pytest.mark.ray

NAMESPACE = "headrace-test"
LOAD_S = 30.0  # bound of each load loop


class Cluster(RayTestCluster):
    """Three worker nodes of one CPU, each with a resource naming it (``node1``…)."""

    def __init__(self) -> None:
        self.added = 3
        nodes = [{"num_cpus": 1, "resources": {f"node{i}": 1}} for i in range(1, 4)]
        super().__init__(NAMESPACE, nodes)

    def add_node(self) -> Any:
        self.added += 1
        return self.cluster.add_node(num_cpus=1, resources={f"node{self.added}": 1})


@pytest.fixture(scope="module")
def cluster() -> Iterator[Cluster]:
    made = Cluster()
    try:
        yield made
    finally:
        made.shutdown()


@pytest.fixture(scope="module")
def server(cluster: Cluster, tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServeProcess]:
    root = tmp_path_factory.mktemp("serve_ray")
    repository = write_models(root / "repo")
    args = ["--ray-address", cluster.cluster.address, "--ray-namespace", NAMESPACE]
    process = start_server(repository, root, args)
    try:
        yield process
    finally:
        assert process.stop() == 0, process.log_tail()


def test_serves_through_actors_on_three_nodes(cluster: Cluster, server: ServeProcess) -> None:
    import tritonclient.grpc as grpcclient
    import tritonclient.http as httpclient

    slow, single = cluster.actors("slow"), cluster.actors("single")
    assert len(slow) == 2 and len(single) == 1
    nodes = {cluster.node_of(actor).node_id for actor in (*slow.values(), *single.values())}
    assert len(nodes) == 3  # one actor per node
    x = np.arange(8, dtype=np.float32).reshape(2, 4)
    pids: set[int] = set()
    http = httpclient.InferenceServerClient(server.http_url, concurrency=4)
    grpc = grpcclient.InferenceServerClient(server.grpc_url)
    try:
        for client, module in ((http, httpclient), (grpc, grpcclient)):
            assert client.is_model_ready("slow") and client.is_model_ready("single")
            for _ in range(20):
                out, pid = infer(client, module, "slow", x)
                np.testing.assert_array_equal(out, x * 2)
                pids.update(int(p) for p in pid.ravel())
        assert os.getpid() not in pids and len(pids) >= 1
        # concurrent requests spread over both actors of "slow"
        requests = [
            http.async_infer("slow", _http_inputs(httpclient, x), outputs=None) for _ in range(32)
        ]
        for request in requests:
            pids.update(int(p) for p in request.get_result().as_numpy("PID").ravel())
        assert len(pids) == 2
        stats = http.get_inference_statistics("slow")["model_stats"][0]
        assert int(stats["inference_stats"]["success"]["count"]) == 72
        assert int(stats["execution_count"]) >= 1
        assert int(stats["inference_stats"]["compute_infer"]["ns"]) > 0
    finally:
        http.close()
        grpc.close()


def _http_inputs(module: Any, x: np.ndarray) -> list[Any]:
    inputs = [module.InferInput("INPUT0", list(x.shape), "FP32")]
    inputs[0].set_data_from_numpy(x)
    return inputs


class LoadLoop:
    """``clients`` threads sending requests to ``model`` until stopped (or ``LOAD_S``, or
    ``max_requests`` each), recording successes and errors with the time they came back."""

    def __init__(self, server: ServeProcess, model: str, clients: int = 4) -> None:
        self.server, self.model, self.clients = server, model, clients
        self.ok: list[float] = []
        self.errors: list[tuple[float, str, str]] = []
        self._stop = threading.Event()
        self._lock = threading.Lock()
        self._threads = [threading.Thread(target=self._run) for _ in range(clients)]

    def __enter__(self) -> LoadLoop:
        for thread in self._threads:
            thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        for thread in self._threads:
            thread.join(LOAD_S + 10)

    def wait_ok(self, count: int, since: float) -> None:
        deadline = time.monotonic() + LOAD_S
        while sum(1 for t in list(self.ok) if t > since) < count:
            if time.monotonic() > deadline:
                raise AssertionError(
                    f"{count} successes after the fault not reached in {LOAD_S}s: "
                    f"{len(self.ok)} ok, errors {self.errors[-3:]}"
                )
            self._stop.wait(0.05)

    def _run(self) -> None:
        import tritonclient.http as httpclient
        from tritonclient.utils import InferenceServerException

        client = httpclient.InferenceServerClient(self.server.http_url, network_timeout=60)
        x = np.ones((1, 4), np.float32)
        deadline = time.monotonic() + LOAD_S
        try:
            for _ in range(5000):
                if self._stop.is_set() or time.monotonic() > deadline:
                    return
                try:
                    infer(client, httpclient, self.model, x)
                    with self._lock:
                        self.ok.append(time.monotonic())
                except InferenceServerException as exc:
                    with self._lock:
                        self.errors.append((time.monotonic(), str(exc.status()), exc.message()))
        finally:
            client.close()


def _check_failures(load: LoadLoop, model: str) -> None:
    """Each client lost at most the request it had in flight, with one clear 503."""
    print(f"{model}: {len(load.ok)} ok, {len(load.errors)} failed: {load.errors[:1]}")
    assert len(load.errors) <= load.clients, load.errors
    for _, status, message in load.errors:
        assert status == "503", (status, message)
        assert f"model '{model}' instance" in message and "Ray actor died" in message, message


def test_killing_an_actor_mid_load_fails_only_its_requests(
    cluster: Cluster, server: ServeProcess
) -> None:
    (name, victim), *_ = cluster.actors("slow").items()
    with LoadLoop(server, "slow") as load:
        load.wait_ok(20, since=0.0)
        killed_at = time.monotonic()
        cluster.ray.kill(victim, no_restart=False)  # Ray restarts it
        load.wait_ok(40, since=killed_at)  # the other instance keeps serving
        wait_for("the killed actor's restart", lambda: cluster.answers(victim))
        load.wait_ok(40, since=time.monotonic())
    _check_failures(load, "slow")
    assert name in cluster.actors("slow")  # the same actor, restarted


def test_removing_a_node_mid_load_then_adding_one_resumes(
    cluster: Cluster, server: ServeProcess
) -> None:
    import tritonclient.http as httpclient

    actors = list(cluster.actors("slow").values())
    node = cluster.node_of(actors[0])
    with LoadLoop(server, "slow") as load:
        load.wait_ok(20, since=0.0)
        removed_at = time.monotonic()
        cluster.cluster.remove_node(node)  # no CPU left for it elsewhere: it stays down
        load.wait_ok(40, since=removed_at)
        cluster.add_node()
        wait_for("the actor's restart on the new node", lambda: cluster.answers(actors[0]))
        load.wait_ok(40, since=time.monotonic())
    _check_failures(load, "slow")
    client = httpclient.InferenceServerClient(server.http_url)
    try:
        assert client.is_model_ready("slow")
    finally:
        client.close()


def test_readiness_is_false_while_no_instance_is_alive(
    cluster: Cluster, server: ServeProcess
) -> None:
    import tritonclient.grpc as grpcclient
    import tritonclient.http as httpclient
    from tritonclient.utils import InferenceServerException

    (actor,) = cluster.actors("single").values()
    client = httpclient.InferenceServerClient(server.http_url)
    grpc = grpcclient.InferenceServerClient(server.grpc_url)
    x = np.ones((1, 4), np.float32)
    try:
        cluster.cluster.remove_node(cluster.node_of(actor))
        wait_for("model 'single' not ready", lambda: not client.is_model_ready("single"))
        assert client.is_model_ready("slow")
        with pytest.raises(InferenceServerException) as caught:
            infer(client, httpclient, "single", x)
        assert caught.value.status() == "503"
        assert "model 'single' instance 'single_0_0' is unavailable" in caught.value.message()
        with pytest.raises(InferenceServerException) as caught:
            infer(grpc, grpcclient, "single", x)
        assert caught.value.status() == "StatusCode.UNAVAILABLE"
        assert "model 'single' instance 'single_0_0' is unavailable" in caught.value.message()
        assert not grpc.is_model_ready("single")
        cluster.add_node()
        wait_for("model 'single' ready again", lambda: client.is_model_ready("single"))
        out, _ = infer(client, httpclient, "single", x)
        np.testing.assert_array_equal(out, x * 2)
    finally:
        client.close()
        grpc.close()
