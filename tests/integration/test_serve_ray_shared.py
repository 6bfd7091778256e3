"""``headrace serve --ray-share``: two frontends drive the same actors; sequences keep their state.

A ``ray.cluster_utils.Cluster`` with two worker nodes of one CPU each; two ``headrace serve``
frontends with ``--ray-namespace`` and ``--ray-share`` serve ``seq_accumulate`` (implicit
state: each answer is the running sum of its sequence) with two instances. The frontends find
the same two actors; the requests of each sequence alternate between the frontends and the
sums still carry over, because the sequence batcher runs in the actor its correlation id
routes to; unloading the model from one frontend leaves the other serving.

Run inside a private network namespace (Ray listens on every interface):
    unshare -n sh -c 'ip link set lo up && HEADRACE_RAY_TESTS=1 RAY_USAGE_STATS_ENABLED=0 \
        exec python -m pytest -m ray tests/integration/test_serve_ray_shared.py -q'
"""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from ray_serving import ray_cluster
from serve_process import ServeProcess, start_server

pytestmark = pytest.mark.ray

NAMESPACE = "headrace-shared"
MODELS = Path(__file__).resolve().parent.parent / "data" / "python_models"
MODEL = "seq_accumulate"


@pytest.fixture(scope="module")
def cluster() -> Iterator[Any]:
    nodes = [{"num_cpus": 1, "resources": {f"node{i}": 1}} for i in (1, 2)]
    with ray_cluster(NAMESPACE, nodes) as made:
        yield made.cluster


@pytest.fixture(scope="module")
def frontends(
    cluster: Any, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[list[ServeProcess]]:
    root = tmp_path_factory.mktemp("serve_ray_shared")
    repository = root / "repo"
    shutil.copytree(MODELS / MODEL, repository / MODEL)
    config = repository / MODEL / "config.pbtxt"
    config.write_text(config.read_text().replace("count: 1 kind", "count: 2 kind"))
    args = [
        "--ray-address",
        cluster.address,
        "--ray-namespace",
        NAMESPACE,
        "--ray-share",
        "--model-control-mode",
        "explicit",
        "--load-model",
        MODEL,
    ]
    started: list[ServeProcess] = []
    try:
        for name in ("a", "b"):
            (root / name).mkdir()
            started.append(start_server(repository, root / name, args))
        yield started
    finally:
        for process in started:
            assert process.stop() == 0, process.log_tail()


def _instance_actors(ray: Any) -> list[str]:
    """The namespace's instance actors (not the frontends' markers, headrace-frontend/ID)."""
    return sorted(
        entry["name"]
        for entry in ray.util.list_named_actors(all_namespaces=True)
        if entry["namespace"] == NAMESPACE and not entry["name"].startswith("headrace-frontend/")
    )


def _send(client: Any, module: Any, value: int, sequence: int, start: bool, end: bool) -> int:
    inputs = [module.InferInput("INPUT", [1, 1], "INT32")]
    inputs[0].set_data_from_numpy(np.array([[value]], np.int32))
    result = client.infer(
        MODEL, inputs, sequence_id=sequence, sequence_start=start, sequence_end=end
    )
    return int(result.as_numpy("OUTPUT").ravel()[0])


def test_two_frontends_share_two_actors_and_each_sequences_state(
    frontends: list[ServeProcess],
) -> None:
    import ray
    import tritonclient.grpc as grpcclient
    import tritonclient.http as httpclient

    names = _instance_actors(ray)
    assert len(names) == 2 and all(n.startswith(f"{MODEL}/1/") and "@" in n for n in names)
    a = httpclient.InferenceServerClient(frontends[0].http_url)
    b = grpcclient.InferenceServerClient(frontends[1].grpc_url)
    clients = [(a, httpclient), (b, grpcclient)]
    values = [5, 3, 2, 1]
    try:
        for sequence in range(1, 7):  # ids over both instances (id mod 2)
            sums = []
            for step, value in enumerate(values):
                client, module = clients[(sequence + step) % 2]  # alternate the frontends
                end = step == len(values) - 1
                sums.append(_send(client, module, value, sequence, step == 0, end))
            assert sums == [5, 8, 10, 11], (sequence, sums)
        # one frontend unloads the model; the other goes on with an open sequence
        _send(a, httpclient, 4, 42, True, False)
        a.unload_model(MODEL)
        assert not a.is_model_ready(MODEL)
        assert _send(b, grpcclient, 6, 42, False, True) == 10
        a.load_model(MODEL)  # finds the same actors again
        assert _send(a, httpclient, 7, 43, True, True) == 7
        assert _instance_actors(ray) == names
    finally:
        a.close()
        b.close()
