"""``headrace serve --ray-share``: two frontends survive the loss of an actor they share.

A ``ray.cluster_utils.Cluster`` with four worker nodes of one CPU each; two ``headrace serve``
frontends with ``--ray-namespace`` and ``--ray-share`` serve ``slow`` (two instances, a fixed
cost per batch), ``single`` and ``seq_accumulate`` (one instance each) through the same four
detached actors. Killing
one of ``slow``'s actors under load through both frontends fails only the requests it had in
flight, each with UNAVAILABLE naming the model; both frontends go on through the other actor
and use the killed one again once Ray has restarted it; a sequence whose actor was killed must
START again, whichever frontend its next request enters. Removing the node of ``single``'s
actor makes the model not ready on both frontends until a node joins and Ray restarts it there.
``headrace ray-actors`` lists the shared actors with the frontends using each, and removes them
once no frontend runs.

Run inside a private network namespace (Ray listens on every interface):
    unshare -n sh -c 'ip link set lo up && HEADRACE_RAY_TESTS=1 RAY_USAGE_STATS_ENABLED=0 \
        exec python -m pytest -m ray tests/integration/test_serve_ray_shared_recovery.py -q'
"""

from __future__ import annotations

import shutil
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from ray_serving import WAIT_S, RayTestCluster, infer, ray_cluster, wait_for, write_models
from serve_process import ServeProcess, start_server

pytestmark = pytest.mark.ray

SEQUENCES = Path(__file__).resolve().parent.parent / "data" / "python_models" / "seq_accumulate"

NAMESPACE = "headrace-recovery"
LOAD_S = 60.0  # bound of each load loop


@pytest.fixture(scope="module")
def cluster() -> Iterator[RayTestCluster]:
    with ray_cluster(NAMESPACE, [{"num_cpus": 1}] * 4) as made:
        yield made


@pytest.fixture(scope="module")
def frontends(
    cluster: RayTestCluster, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[list[ServeProcess]]:
    root = tmp_path_factory.mktemp("serve_ray_recovery")
    repository = root / "repo"
    write_models(repository)
    shutil.copytree(SEQUENCES, repository / SEQUENCES.name)
    args = ["--ray-address", cluster.cluster.address, "--ray-namespace", NAMESPACE, "--ray-share"]
    started: list[ServeProcess] = []
    try:
        for name in ("a", "b"):
            (root / name).mkdir()
            started.append(start_server(repository, Path(root / name), args))
        yield started
    finally:
        for process in started:
            assert process.stop() == 0, process.log_tail()


class LoadLoop:
    """``clients`` threads per frontend sending to ``model`` until stopped (or ``LOAD_S``, or
    5000 requests each), recording by frontend the successes (time, actor pid) and errors."""

    def __init__(self, servers: list[ServeProcess], model: str, clients: int = 2) -> None:
        self.model, self.clients = model, clients * len(servers)
        self.ok: list[tuple[int, float, int]] = []
        self.errors: list[tuple[int, str, str]] = []
        self._stop = threading.Event()
        self._lock = threading.Lock()
        self._threads = [
            threading.Thread(target=self._run, args=(index, server))
            for index, server in enumerate(servers)
            for _ in range(clients)
        ]

    def __enter__(self) -> LoadLoop:
        for thread in self._threads:
            thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        for thread in self._threads:
            thread.join(LOAD_S + 10)

    def wait_ok(self, count: int, since: float, pid: int | None = None) -> None:
        """Until each frontend has ``count`` successes after ``since`` (from actor ``pid``)."""
        deadline = time.monotonic() + LOAD_S
        while not all(self._count(front, since, pid) >= count for front in (0, 1)):
            if time.monotonic() > deadline:
                raise AssertionError(
                    f"{count} successes per frontend after {since} (pid {pid}) not reached in "
                    f"{LOAD_S}s: {len(self.ok)} ok, errors {self.errors[-3:]}"
                )
            self._stop.wait(0.05)

    def _count(self, front: int, since: float, pid: int | None) -> int:
        with self._lock:
            return sum(1 for f, t, p in self.ok if f == front and t > since and pid in (None, p))

    def _run(self, front: int, server: ServeProcess) -> None:
        import tritonclient.http as httpclient
        from tritonclient.utils import InferenceServerException

        client = httpclient.InferenceServerClient(server.http_url, network_timeout=60)
        x = np.ones((1, 4), np.float32)
        deadline = time.monotonic() + LOAD_S
        try:
            for _ in range(5000):
                if self._stop.is_set() or time.monotonic() > deadline:
                    return
                try:
                    _, pid = infer(client, httpclient, self.model, x)
                    with self._lock:
                        self.ok.append((front, time.monotonic(), int(pid.ravel()[0])))
                except InferenceServerException as exc:
                    with self._lock:
                        self.errors.append((front, str(exc.status()), exc.message()))
        finally:
            client.close()


def test_killing_a_shared_actor_fails_only_its_requests_and_both_frontends_resume(
    cluster: RayTestCluster, frontends: list[ServeProcess]
) -> None:
    actors = cluster.actors("slow")
    assert len(actors) == 2 and all("@" in name for name in actors)  # shared: one set
    victim = next(iter(actors.values()))
    with LoadLoop(frontends, "slow") as load:
        load.wait_ok(20, since=0.0, pid=cluster.pid_of(victim))  # both use the victim
        killed_at = time.monotonic()
        cluster.ray.kill(victim, no_restart=False)  # Ray restarts it
        load.wait_ok(20, since=killed_at)  # the other actor keeps both serving
        wait_for("the killed actor's restart", lambda: cluster.answers(victim))
        load.wait_ok(10, since=killed_at, pid=cluster.pid_of(victim))  # both use it again
    print(f"slow: {len(load.ok)} ok, {len(load.errors)} failed: {load.errors[:1]}")
    assert len(load.errors) <= load.clients, load.errors
    for _, status, message in load.errors:
        assert status == "503", (status, message)
        assert "model 'slow' instance" in message and "Ray actor died" in message, message
    assert set(cluster.actors("slow")) == set(actors)  # the same actors, one restarted


def test_readiness_follows_a_shared_actor_on_both_frontends(
    cluster: RayTestCluster, frontends: list[ServeProcess]
) -> None:
    import tritonclient.http as httpclient
    from tritonclient.utils import InferenceServerException

    (actor,) = cluster.actors("single").values()
    clients = [httpclient.InferenceServerClient(f.http_url) for f in frontends]
    x = np.ones((1, 4), np.float32)
    try:
        assert all(client.is_model_ready("single") for client in clients)
        cluster.cluster.remove_node(cluster.node_of(actor))  # no CPU left: it stays down
        for client in clients:
            wait_for("'single' not ready", lambda c=client: not c.is_model_ready("single"))
            with pytest.raises(InferenceServerException) as caught:
                infer(client, httpclient, "single", x)
            assert caught.value.status() == "503"
            assert "model 'single' instance 'single_0_0' is unavailable" in caught.value.message()
            assert client.is_model_ready("slow")
        cluster.cluster.add_node(num_cpus=1)
        for client in clients:
            wait_for("'single' ready again", lambda c=client: c.is_model_ready("single"))
            out, _ = infer(client, httpclient, "single", x)
            np.testing.assert_array_equal(out, x * 2)
    finally:
        for client in clients:
            client.close()


def _step(client: Any, module: Any, value: int, sequence: int, start: bool) -> int:
    inputs = [module.InferInput("INPUT", [1, 1], "INT32")]
    inputs[0].set_data_from_numpy(np.array([[value]], np.int32))
    result = client.infer("seq_accumulate", inputs, sequence_id=sequence, sequence_start=start)
    return int(result.as_numpy("OUTPUT").ravel()[0])


def test_a_sequence_on_a_killed_shared_actor_must_start_again_on_either_frontend(
    cluster: RayTestCluster, frontends: list[ServeProcess]
) -> None:
    import tritonclient.grpc as grpcclient
    import tritonclient.http as httpclient
    from tritonclient.utils import InferenceServerException

    (actor,) = cluster.actors("seq_accumulate").values()
    a = httpclient.InferenceServerClient(frontends[0].http_url)
    b = grpcclient.InferenceServerClient(frontends[1].grpc_url)
    try:
        assert _step(a, httpclient, 5, 7, True) == 5
        assert _step(b, grpcclient, 3, 7, False) == 8  # the state lives in the actor
        cluster.ray.kill(actor, no_restart=False)  # its sequences' state is gone
        wait_for("the actor's restart", lambda: cluster.answers(actor))
        wait_for("ready on both", lambda: a.is_model_ready("seq_accumulate") and b.is_model_ready("seq_accumulate"))  # fmt: skip
        for client, module in ((a, httpclient), (b, grpcclient)):
            with pytest.raises(InferenceServerException) as caught:
                _step(client, module, 1, 7, False)
            assert caught.value.status() in ("400", "StatusCode.INVALID_ARGUMENT")
            assert caught.value.message() == (
                "inference request for sequence 7 to model 'seq_accumulate' must specify the "
                "START flag on the first request of the sequence"
            )
        assert _step(b, grpcclient, 2, 8, True) == 2  # a new sequence: either frontend
        assert _step(a, httpclient, 4, 8, False) == 6
    finally:
        a.close()
        b.close()


def _ray_actors(cluster: RayTestCluster, *flags: str) -> subprocess.CompletedProcess[str]:
    """``headrace ray-actors`` as an operator runs it, from its own process."""
    command = [sys.executable, "-c", "import sys; from headrace.cli import main; sys.exit(main())"]
    address = ["--ray-address", cluster.cluster.address, "--ray-namespace", NAMESPACE]
    return subprocess.run(
        [*command, "ray-actors", *address, *flags],
        capture_output=True,
        text=True,
        timeout=WAIT_S,
        check=False,
    )


def _rows(listing: str) -> dict[tuple[str, str], list[str]]:
    """The table's rows by (model, instance)."""
    header, *lines = listing.strip().splitlines()
    assert header.split() == [
        "MODEL", "VERSION", "INSTANCE", "CONFIG", "NODE", "STATE", "FRONTENDS"
    ], header  # fmt: skip
    rows = [line.split() for line in lines if not line.startswith(("removed", "kept"))]
    return {(row[0], row[2]): row for row in rows}


def test_ray_actors_lists_the_shared_actors_and_removes_them_once_stale(
    cluster: RayTestCluster, frontends: list[ServeProcess]
) -> None:
    listed = _ray_actors(cluster)
    assert listed.returncode == 0, listed.stderr
    rows = _rows(listed.stdout)
    assert set(rows) == {
        ("slow", "slow_0_0"),
        ("slow", "slow_0_1"),
        ("single", "single_0_0"),
        ("seq_accumulate", "seq_accumulate_0_0"),
    }
    nodes = {node.node_id[:12] for node in cluster.cluster.worker_nodes}
    for (model, instance), row in rows.items():
        name = f"{model}/1/{instance}@{row[3]}"
        assert name in cluster.actors(model), (name, listed.stdout)
        assert row[1] == "1" and row[4] in nodes and row[5] == "ALIVE", row
        assert row[6] == "2", row  # both frontends serve through it
    # one frontend gone: the other still uses every actor, so none is removed
    assert frontends[1].stop() == 0, frontends[1].log_tail()
    wait_for("one frontend left", lambda: all(r[6] == "1" for r in _rows(_ray_actors(cluster).stdout).values()))  # fmt: skip
    kept = _ray_actors(cluster, "--remove", "slow")
    assert kept.returncode == 1, kept.stdout
    assert kept.stderr.count("1 running frontend(s) serve through it") == 2, kept.stderr
    stale = _ray_actors(cluster, "--remove-stale")
    assert stale.returncode == 0 and "removed" not in stale.stdout, stale.stdout
    assert len(cluster.actors("slow")) == 2
    # no frontend left: every shared actor is stale; --remove takes one model, --remove-stale the rest
    assert frontends[0].stop() == 0, frontends[0].log_tail()
    wait_for("no frontend left", lambda: all(r[6] == "0" for r in _rows(_ray_actors(cluster).stdout).values()))  # fmt: skip
    digest = rows[("single", "single_0_0")][3]
    removed = _ray_actors(cluster, "--remove", f"single@{digest}")
    assert removed.returncode == 0, removed.stderr
    assert f"removed single/1/single_0_0@{digest}" in removed.stdout
    assert not cluster.actors("single") and len(cluster.actors("slow")) == 2
    removed = _ray_actors(cluster, "--remove-stale")
    assert removed.returncode == 0 and removed.stdout.count("removed slow/1/") == 2, removed.stdout
    assert removed.stdout.count("removed seq_accumulate/1/") == 1, removed.stdout
    wait_for("the actors' removal", lambda: not cluster.actors("slow"))
    assert _rows(_ray_actors(cluster).stdout) == {}
