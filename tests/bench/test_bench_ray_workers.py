"""Scale-out bench: timed runs inside instances and actors, the repository factory, the study.

The tests marked ``ray`` start a local Ray; run them inside a private network namespace:
    unshare -n sh -c 'ip link set lo up && HEADRACE_RAY_TESTS=1 RAY_USAGE_STATS_ENABLED=0 \
        exec python -m pytest -m ray tests/bench -q'
The others exercise the same functions and the study without Ray.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest

from fixtures_models import MLP
from headrace.bench.pipeline import PipelineStudyConfig
from headrace.bench.ray_workers import RepositoryBackend, RunSpec, synthetic_batch, timed_run
from headrace.bench.scaleout import MatmulFactory, ScaleoutConfig, run_scaleout, worker_counts
from headrace.bench.workload import matmul_context
from headrace.engine.instance import ModelInstance
from headrace.engine.ray_workers import InstanceWorker
from headrace.errors import InvalidInput

FACTORY = MatmulFactory(depth=3, seed=5)
CONTEXT = matmul_context((3, 16), 8, "cpu")
TINY = PipelineStudyConfig(
    batch_size=8,
    input_shape=(16,),
    depth=2,
    num_iterations=12,
    warmup_iterations=2,
    num_buffers=(1, 3),
    cpu_delays_ms=(0.0,),
    device="cpu",
)


def _local_outputs(factory, context, batches):  # type: ignore[no-untyped-def]
    instance = ModelInstance(factory(context), num_buffers=1)
    try:
        return [instance.execute(batch) for batch in batches]
    finally:
        instance.close()


@pytest.fixture(scope="module")
def mlp_path(tmp_path_factory: pytest.TempPathFactory) -> str:
    from headrace.repository import ModelRepository

    root = tmp_path_factory.mktemp("scaleout")
    repo = ModelRepository(str(root / "repo"))
    entry = repo.add("mlp", max_batch_size=16)
    entry.export_version(MLP().eval(), input_shapes={"x": (None, 64)}, output_names=["y"])
    return os.path.join(str(root / "repo"), "mlp")


def test_timed_run_inside_a_worker_counts_batches_and_stages() -> None:
    worker = InstanceWorker(FACTORY, CONTEXT, num_buffers=2)
    try:
        spec = RunSpec(num_iterations=5, batch_size=8, warmup_iterations=1)
        result = worker.apply(timed_run, spec, 3)
    finally:
        worker.close()
    assert (result.worker, result.device, result.batches, result.num_buffers) == (3, "cpu", 5, 2)
    assert result.batches_per_s == pytest.approx(5 / result.elapsed_s)
    assert result.items_per_s == pytest.approx(40 / result.elapsed_s)
    assert result.stage_mean_ms["compute"] > 0


def test_timed_run_refuses_a_bad_spec() -> None:
    instance = ModelInstance(FACTORY(CONTEXT), num_buffers=1)
    try:
        with pytest.raises(InvalidInput, match="invalid num_iterations 0"):
            timed_run(instance, RunSpec(num_iterations=0))
    finally:
        instance.close()


def test_repository_factory_loads_the_model_in_the_worker(mlp_path: str) -> None:
    factory = RepositoryBackend(mlp_path, batch_size=16)
    context = factory.context()
    assert (context.model_name, context.version, context.config.max_batch_size) == ("mlp", 1, 16)
    batch = {"x": np.random.default_rng(2).standard_normal((16, 64)).astype(np.float32)}
    worker = InstanceWorker(factory, context)
    try:
        got = worker.execute(batch)["y"]
        assert worker.apply(lambda instance: instance.backend.context.instance_name) == "mlp"
    finally:
        worker.close()
    np.testing.assert_array_equal(got, _local_outputs(factory, context, [batch])[0]["y"])


def test_synthetic_batch_follows_the_config_and_refuses_variable_dims() -> None:
    config = FACTORY(CONTEXT).context.config
    batch = synthetic_batch(config, 4, seed=1)
    assert batch["x"].shape == (4, 3, 16) and batch["x"].dtype == np.float32
    config = type(config)()
    config.CopyFrom(CONTEXT.config)
    config.input[0].dims[0] = -1
    with pytest.raises(InvalidInput, match=r"input 'x' has variable dims \[-1, 16\]"):
        synthetic_batch(config, 4, seed=1)


def test_worker_counts_double_up_to_the_requested_count() -> None:
    assert worker_counts(1) == (1,)
    assert worker_counts(2) == (1, 2)
    assert worker_counts(6) == (1, 2, 4, 6)
    assert worker_counts(8) == (1, 2, 4, 8)
    with pytest.raises(InvalidInput, match="got 0"):
        worker_counts(0)


def test_threads_scaleout_fills_every_case_and_ratio() -> None:
    results = run_scaleout(ScaleoutConfig(pipeline=TINY, workers=(1, 2)))
    assert [(r.workers, r.num_buffers) for r in results] == [(1, 1), (1, 3), (2, 1), (2, 3)]
    for case in results:
        assert case.batches == 12 * case.workers and case.batches_per_s > 0
    one, two = results[0], results[2]
    assert one.scaling_efficiency == 1.0 and one.speedup_vs_one_buffer == 1.0
    assert two.scaling_efficiency == pytest.approx(two.batches_per_s / (2 * one.batches_per_s))
    assert results[1].speedup_vs_one_buffer == pytest.approx(
        results[1].batches_per_s / one.batches_per_s
    )


def test_scaleout_refuses_an_unknown_backend() -> None:
    with pytest.raises(InvalidInput, match="unknown backend 'mpi'"):
        run_scaleout(ScaleoutConfig(pipeline=TINY, backend="mpi"))


def test_command_line_scaleout_writes_the_table_json(tmp_path: Path) -> None:
    import json

    from headrace.cli import main

    out = tmp_path / "scaleout.json"
    argv = ["bench", "pipeline", "--scaleout", "--num-workers=2", "--batch-size=4"]
    argv += ["--input-shape=8", "--num-iterations=3", "--warmup-iterations=0"]
    argv += ["--num-buffers=1,2", "--cpu-delay-ms=0", "--device=cpu", f"--out={out}"]
    assert main(argv) == 0
    document = json.loads(out.read_text())
    assert document["study"] == "pipeline_scaleout" and document["machine"]["cpu_count"]
    assert document["config"]["backend"] == "threads"
    assert [(r["workers"], r["num_buffers"]) for r in document["results"]] == [
        (1, 1),
        (1, 2),
        (2, 1),
        (2, 2),
    ]


# --- on a local Ray (two CPUs) -------------------------------------------------------------


@pytest.mark.ray
def test_actors_load_a_repository_model(ray_cpus, mlp_path: str) -> None:  # type: ignore[no-untyped-def]
    from headrace.engine.ray_workers import RayWorkerPool

    factory = RepositoryBackend(mlp_path, batch_size=16)
    context = factory.context()
    rng = np.random.default_rng(4)
    batches = [{"x": rng.standard_normal((16, 64)).astype(np.float32)} for _ in range(4)]
    with RayWorkerPool(2, factory, context, num_buffers=2) as pool:
        got = pool.map(batches)
    for mine, theirs in zip(got, _local_outputs(factory, context, batches)):
        np.testing.assert_array_equal(mine["y"], theirs["y"])


@pytest.mark.ray
def test_run_pool_gives_sane_per_worker_results(ray_cpus) -> None:  # type: ignore[no-untyped-def]
    from headrace.bench.ray_workers import run_pool
    from headrace.engine.ray_workers import RayWorkerPool

    with RayWorkerPool(2, FACTORY, CONTEXT, num_buffers=1) as pool:
        spec = RunSpec(num_iterations=10, batch_size=8, warmup_iterations=2)
        first = run_pool(pool, spec)
        pool.configure(3)
        second = run_pool(pool, spec)
    assert [w.worker for w in first.workers] == [0, 1]
    assert [w.num_buffers for w in first.workers + second.workers] == [1, 1, 3, 3]
    for run in (first, second):
        assert run.batches == 20
        assert run.batches_per_s == pytest.approx(20 / run.elapsed_s)
        for worker in run.workers:
            assert 0 < worker.elapsed_s <= run.elapsed_s
            assert worker.batches_per_s == pytest.approx(10 / worker.elapsed_s)
            assert worker.stage_mean_ms["compute"] > 0


@pytest.mark.ray
def test_ray_scaleout_study(ray_cpus) -> None:  # type: ignore[no-untyped-def]
    results = run_scaleout(ScaleoutConfig(pipeline=TINY, workers=(1, 2), backend="ray"))
    assert [(r.workers, r.num_buffers) for r in results] == [(1, 1), (1, 3), (2, 1), (2, 3)]
    for case in results:
        assert len(case.per_worker_batches_per_s) == case.workers == len(case.devices)
        assert case.batches == 12 * case.workers
        assert case.scaling_efficiency > 0 and case.speedup_vs_one_buffer > 0
    assert results[0].scaling_efficiency == 1.0
