"""Instances as Ray actors: an actor's pipeline gives a local instance's outputs.

The actors here load a real repository model with the generic factory
(``headrace.backends.load_backend`` and the model's ``BackendContext``). The tests marked
``ray`` start a local Ray; run them inside a private network namespace:
    unshare -n sh -c 'ip link set lo up && HEADRACE_RAY_TESTS=1 RAY_USAGE_STATS_ENABLED=0 \
        exec python -m pytest -m ray tests/engine -q'
The others exercise the same worker class without Ray.
"""

from __future__ import annotations

import os
import sys

import numpy as np
import pytest

from fixtures_models import MLP
from headrace.backends import load_backend
from headrace.backends.base import BackendContext
from headrace.engine.instance import ModelInstance
from headrace.engine.ray_workers import InstanceWorker, connect_ray
from headrace.errors import HeadraceError, InvalidInput, MissingDependency, Unavailable
from headrace.repository.resolve import ModelSource, resolve_model


@pytest.fixture(scope="module")
def mlp_context(tmp_path_factory: pytest.TempPathFactory) -> BackendContext:
    from headrace.repository import ModelRepository

    root = tmp_path_factory.mktemp("workers")
    repo = ModelRepository(str(root / "repo"))
    entry = repo.add("mlp", max_batch_size=16)
    entry.export_version(MLP().eval(), input_shapes={"x": (None, 64)}, output_names=["y"])
    model = resolve_model(ModelSource(os.path.join(str(root / "repo"), "mlp")), 16)
    return model.context("cpu", "mlp")


def _batches(count: int, seed: int = 0) -> list[dict[str, np.ndarray]]:
    rng = np.random.default_rng(seed)
    return [{"x": rng.standard_normal((16, 64)).astype(np.float32)} for _ in range(count)]


def _local_outputs(context: BackendContext, batches):  # type: ignore[no-untyped-def]
    instance = ModelInstance(load_backend(context), num_buffers=1)
    try:
        return [instance.execute(batch) for batch in batches]
    finally:
        instance.close()


def _buffers_and_outputs(instance: ModelInstance, batch: dict[str, np.ndarray]):  # type: ignore[no-untyped-def]
    return instance.num_buffers, instance.submit(batch).result()


def test_worker_class_without_ray_matches_a_local_instance(mlp_context: BackendContext) -> None:
    batches = _batches(3)
    worker = InstanceWorker(load_backend, mlp_context, num_buffers=2)
    try:
        got = [worker.execute(batch) for batch in batches]
        info = worker.describe()
        assert (info.index, info.device, info.pid) == (0, "cpu", os.getpid())
    finally:
        worker.close()
    for mine, theirs in zip(got, _local_outputs(mlp_context, batches)):
        np.testing.assert_array_equal(mine["y"], theirs["y"])
    with pytest.raises(Unavailable, match="worker 0 is closed"):
        worker.execute(batches[0])


def test_apply_runs_the_callers_function_with_the_instance(mlp_context: BackendContext) -> None:
    batch = _batches(1)[0]
    worker = InstanceWorker(load_backend, mlp_context, num_buffers=2)
    try:
        assert worker.apply(getattr, "num_buffers") == 2
        buffers, submitted = worker.apply(_buffers_and_outputs, batch)
        assert buffers == 2
        worker.configure(3)
        assert worker.apply(getattr, "num_buffers") == 3
        assert worker.apply(getattr, "name") == "mlp"
    finally:
        worker.close()
    np.testing.assert_array_equal(submitted["y"], _local_outputs(mlp_context, [batch])[0]["y"])
    with pytest.raises(Unavailable, match="closed"):
        worker.apply(getattr, "num_buffers")


def test_the_worker_builds_its_backend_from_its_context(mlp_context: BackendContext) -> None:
    seen: list[BackendContext] = []

    def factory(context: BackendContext):  # type: ignore[no-untyped-def]
        seen.append(context)
        return load_backend(context)

    worker = InstanceWorker(factory, mlp_context, num_buffers=1)
    worker.configure(2)
    worker.close()
    assert seen == [mlp_context, mlp_context]


def test_missing_ray_names_the_extra(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "ray", None)
    with pytest.raises(MissingDependency, match="ray"):
        connect_ray()


# --- on a local Ray (two CPUs) -------------------------------------------------------------


@pytest.mark.ray
def test_two_cpu_actors_match_a_local_instance(ray_cpus, mlp_context: BackendContext) -> None:  # type: ignore[no-untyped-def]
    from headrace.engine.ray_workers import RayWorkerPool

    batches = _batches(6, seed=3)
    with RayWorkerPool(2, load_backend, mlp_context, num_buffers=2) as pool:
        assert len({info.pid for info in pool.info}) == 2
        assert [(info.index, info.device) for info in pool.info] == [(0, "cpu"), (1, "cpu")]
        got = pool.map(batches)
        one = pool.execute(batches[1], worker=1)
    expected = _local_outputs(mlp_context, batches)
    for mine, theirs in zip(got, expected):
        np.testing.assert_array_equal(mine["y"], theirs["y"])
    np.testing.assert_array_equal(one["y"], expected[1]["y"])


@pytest.mark.ray
def test_pool_apply_runs_in_every_actor_in_worker_order(
    ray_cpus, mlp_context: BackendContext
) -> None:  # type: ignore[no-untyped-def]
    from headrace.engine.ray_workers import RayWorkerPool

    def buffers_and_outputs(instance, batch):  # type: ignore[no-untyped-def]
        return instance.num_buffers, instance.submit(batch).result()  # pickled by value

    batch = _batches(1)[0]
    with RayWorkerPool(2, load_backend, mlp_context, num_buffers=1) as pool:
        assert pool.apply(getattr, "name") == ["mlp_0", "mlp_1"]
        pool.configure(3)
        got = pool.apply(buffers_and_outputs, batch)
    expected = _local_outputs(mlp_context, [batch])[0]["y"]
    assert [buffers for buffers, _ in got] == [3, 3]
    for _, outputs in got:
        np.testing.assert_array_equal(outputs["y"], expected)


@pytest.mark.ray
def test_pool_refuses_what_the_cluster_lacks_and_maps_worker_errors(
    ray_cpus, mlp_context: BackendContext
) -> None:  # type: ignore[no-untyped-def]
    from headrace.engine.ray_workers import RayWorkerPool

    with pytest.raises(Unavailable, match="3 Ray workers need 3 CPU in all, the cluster has 2"):
        RayWorkerPool(3, load_backend, mlp_context)
    with pytest.raises(Unavailable, match="need 1 GPU"):
        RayWorkerPool(1, load_backend, mlp_context, num_gpus_per_worker=1.0)
    with RayWorkerPool(1, load_backend, mlp_context) as pool:
        with pytest.raises(HeadraceError):
            pool.execute({"x": np.zeros((8, 5), np.float32)})
        with pytest.raises(InvalidInput, match="worker 4 out of range"):
            pool.execute(_batches(1)[0], worker=4)


def test_the_context_travels_to_an_actor_through_cloudpickle(mlp_context: BackendContext) -> None:
    import pickle

    from headrace.backends.base import ShippedContext

    cloudpickle = pytest.importorskip("ray.cloudpickle")
    shipped = pickle.loads(cloudpickle.dumps(ShippedContext.of(mlp_context)))
    assert shipped.unpack() == mlp_context


@pytest.mark.ray
def test_placed_ray_instances_serve_through_the_instance_pool(
    ray_cpus, mlp_context: BackendContext
) -> None:  # type: ignore[no-untyped-def]
    """Ray actors as an executor behind the pool: a scheduler drives them as local instances."""
    import asyncio

    from headrace.engine.placement import PlacementOptions, place_instances
    from headrace.engine.ray_executor import RayExecutor
    from headrace.scheduling import DefaultScheduler, InstancePool

    options = PlacementOptions(count=2, device="cpu", num_buffers=2)
    instances = place_instances(mlp_context, load_backend, options, builder=RayExecutor())
    assert [i.name for i in instances] == ["mlp_0_0", "mlp_0_1"]
    assert [(i.depth, i.can_run_now) for i in instances] == [(2, False), (2, False)]
    pool = InstancePool(instances, run_now_below_us=500)
    scheduler = DefaultScheduler(pool, name="mlp", max_batch_size=16)
    batches = _batches(8, seed=5)

    async def main() -> list[dict[str, np.ndarray]]:
        return await asyncio.gather(*(scheduler.schedule(batch) for batch in batches))

    try:
        got = asyncio.run(asyncio.wait_for(main(), 120))
        bad = asyncio.run(asyncio.wait_for(pool.run([{"x": np.zeros((2, 5), np.float32)}]), 60))
    finally:
        pool.close()
    for mine, theirs in zip(got, _local_outputs(mlp_context, batches)):
        np.testing.assert_array_equal(mine["y"], theirs["y"])
    assert isinstance(bad[0], HeadraceError)  # the actor's error, as itself


@pytest.mark.ray
def test_ray_placement_refuses_what_it_cannot_serve(ray_cpus, mlp_context: BackendContext) -> None:  # type: ignore[no-untyped-def]
    import dataclasses

    from headrace.engine.placement import PlacementOptions, place_instances
    from headrace.engine.ray_executor import RayExecutor
    from headrace.errors import Unsupported

    with pytest.raises(Unavailable, match="3 Ray instances of model 'mlp' need 3 CPU"):
        place_instances(mlp_context, load_backend, PlacementOptions(count=3), builder=RayExecutor())
    config = type(mlp_context.config)()
    config.CopyFrom(mlp_context.config)
    config.model_transaction_policy.decoupled = True
    decoupled = dataclasses.replace(mlp_context, config=config)
    with pytest.raises(Unsupported, match="decoupled"):
        place_instances(decoupled, load_backend, PlacementOptions(count=1), builder=RayExecutor())
