"""The Ray runner gives the local runner's output, on a local Ray and on a two-node cluster.

Run inside a private network namespace (see .ci/run):
    unshare -n sh -c 'ip link set lo up && HEADRACE_RAY_TESTS=1 RAY_USAGE_STATS_ENABLED=0 \
        exec python -m pytest -m ray tests/batch -q'
"""

from __future__ import annotations

import numpy as np
import pytest
from batch_models import features, mlp_repository

from headrace.batch.dataset import DataSpec
from headrace.batch.job import Job, JobOptions
from headrace.batch.local import run_local
from headrace.batch.ray_runner import run_ray
from headrace.batch.results import load_results
from headrace.repository.resolve import ModelSource

pytestmark = pytest.mark.ray


@pytest.fixture(scope="module")
def job_parts(tmp_path_factory):
    root = tmp_path_factory.mktemp("ray")
    model, _ = mlp_repository(root)
    np.save(root / "x.npy", features(1200, seed=11))
    return model, str(root / "x.npy"), root


def _job(model: str, data: str, out: str) -> Job:
    options = JobOptions(batch_size=64, shard_size=200, instances=2, progress=False)
    return Job(ModelSource(model), DataSpec(data), out, options)


def _same(a: str, b: str) -> None:
    left, right = load_results(a), load_results(b)
    assert np.array_equal(left.row_ids, np.arange(1200))
    assert np.array_equal(left.row_ids, right.row_ids)
    np.testing.assert_allclose(left.outputs["y"], right.outputs["y"], rtol=1e-6, atol=1e-7)


def test_ray_runner_equals_local_runner(job_parts) -> None:
    ray = pytest.importorskip("ray")
    model, data, root = job_parts
    run_local(_job(model, data, str(root / "local")))
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
    try:
        summary = run_ray(_job(model, data, str(root / "ray")))
        assert (summary.shards_written, summary.rows) == (6, 1200)
        assert run_ray(_job(model, data, str(root / "ray"))).shards_skipped == 6
    finally:
        ray.shutdown()
    _same(str(root / "ray"), str(root / "local"))


def test_two_node_cluster(job_parts) -> None:
    ray = pytest.importorskip("ray")
    from ray.cluster_utils import Cluster

    model, data, root = job_parts
    if not (root / "local").exists():
        run_local(_job(model, data, str(root / "local")))
    cluster = Cluster(
        initialize_head=True, head_node_args={"num_cpus": 1, "include_dashboard": False}
    )
    cluster.add_node(num_cpus=1)
    try:
        ray.init(address=cluster.address, log_to_driver=False)
        assert len([n for n in ray.nodes() if n["Alive"]]) == 2
        run_ray(_job(model, data, str(root / "cluster")))
    finally:
        ray.shutdown()
        cluster.shutdown()
    _same(str(root / "cluster"), str(root / "local"))
