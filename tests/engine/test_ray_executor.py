"""RayInstance's failure handling, on a fake Ray (the real one: tests/integration/test_serve_ray.py).

An actor that dies fails the batches it had in flight with one Unavailable naming the model,
the instance is down (new batches fail at once) until the restarted actor answers a probe,
and then it serves again.
"""

from __future__ import annotations

import threading
import time
from concurrent.futures import Future
from types import SimpleNamespace
from typing import Any

import pytest

from headrace.engine.ray_executor import RayInstance
from headrace.engine.ray_workers import WorkerInfo
from headrace.errors import Unavailable


class ActorError(Exception):
    """Stands for ``ray.exceptions.RayActorError``."""


class _Method:
    def __init__(self, call: Any) -> None:
        self._call = call

    def remote(self, *args: Any) -> Any:
        future = self._call(*args)
        return SimpleNamespace(future=lambda: future)


class FakeActor:
    """Batches and ``watch`` stay pending until answered or the actor dies; ``describe``
    answers while the actor is up."""

    def __init__(self) -> None:
        self.up = True
        self.pending: list[Future[Any]] = []
        self.described = threading.Event()
        self.run_requests_async = _Method(self._pending)
        self.watch = _Method(self._pending)
        self.describe = _Method(self._describe)
        self.close = _Method(lambda: _done(None))

    def _pending(self, *args: Any) -> Future[Any]:
        future: Future[Any] = Future()
        if not self.up:
            future.set_exception(ActorError("restarting"))
        else:
            self.pending.append(future)
        return future

    def _describe(self) -> Future[Any]:
        self.described.set()
        if not self.up:
            future: Future[Any] = Future()
            future.set_exception(ActorError("restarting"))
            return future
        return _done(WorkerInfo(0, "cpu", "host", 1, node="n2"))

    def die(self) -> None:
        self.up = False
        pending, self.pending = self.pending, []
        for future in pending:
            future.set_exception(ActorError("The actor died unexpectedly"))


def _done(value: Any) -> Future[Any]:
    future: Future[Any] = Future()
    future.set_result(value)
    return future


def _wait(check: Any) -> None:
    deadline = time.monotonic() + 10
    while not check():
        assert time.monotonic() < deadline
        threading.Event().wait(0.01)


@pytest.fixture
def fake_ray() -> Any:
    return SimpleNamespace(
        exceptions=SimpleNamespace(RayActorError=ActorError),
        get=lambda ref, timeout=None: ref.future().result(),
        kill=lambda actor, no_restart=True: None,
    )


def test_a_dead_actor_fails_its_batches_then_serves_again_once_restarted(fake_ray: Any) -> None:
    actor = FakeActor()
    instance = RayInstance(actor, "mlp_0_0", 2, fake_ray, model="mlp", node="n1")
    try:
        first = instance.submit_requests_timed([{}])
        assert instance.alive and not first.done()
        actor.die()
        with pytest.raises(Unavailable) as caught:
            first.result(timeout=5)
        assert caught.value.message == (
            "model 'mlp' instance 'mlp_0_0' is unavailable: its Ray actor died and Ray is "
            "restarting it"
        )
        assert not instance.alive
        with pytest.raises(Unavailable, match="model 'mlp' instance 'mlp_0_0'"):
            instance.submit_requests_timed([{}]).result(timeout=5)  # at once, not sent
        assert actor.pending == []
        actor.described.clear()
        _wait(actor.described.is_set)  # probing while Ray restarts it
        assert not instance.alive
        actor.up = True  # restarted
        _wait(lambda: instance.alive)
        assert instance.node == "n2"
        second = instance.submit_requests_timed([{}])
        actor.pending[-1].set_result("outputs")
        assert second.result(timeout=5) == "outputs"
    finally:
        instance.close()


def test_a_closed_instance_does_not_count_its_end_as_a_death(fake_ray: Any) -> None:
    actor = FakeActor()
    instance = RayInstance(actor, "mlp_0_0", 2, fake_ray, model="mlp")
    instance.close()
    actor.die()  # the watch call ends when the actor is killed
    assert instance.alive


# -- on a local Ray with two logical GPUs ----------------------------------------------------


def _negate(x: Any) -> Any:
    return {"y": -x}


def _negating_backend(context: Any) -> Any:
    """A backend that never touches CUDA, so GPU placement runs on a CPU-only machine."""
    from headrace.backends.callable import CallableBackend

    return CallableBackend(
        _negate, context.config, device=context.device, instance_name=context.instance_name
    )


async def _where(instance: Any) -> tuple[str, str]:
    import os

    return instance.name, os.environ.get("CUDA_VISIBLE_DEVICES", "")


@pytest.mark.ray
def test_gpu_instances_take_their_share_of_a_cluster_gpu() -> None:
    """KIND_GPU instances as actors with a fraction of a (logical) GPU each, seen as cuda:0."""
    import sys

    import numpy as np
    from google.protobuf import text_format
    from tritonclient.grpc import model_config_pb2

    from headrace.backends.base import BackendContext
    from headrace.engine.placement import PlacementOptions, place_instances
    from headrace.engine.ray_executor import RayExecutor

    ray = pytest.importorskip("ray")
    cloudpickle = pytest.importorskip("ray.cloudpickle")
    cloudpickle.register_pickle_by_value(sys.modules[__name__])  # the factory travels
    config = text_format.Parse(
        """name: "neg" max_batch_size: 8
        input [ { name: "x" data_type: TYPE_FP32 dims: [ 4 ] } ]
        output [ { name: "y" data_type: TYPE_FP32 dims: [ 4 ] } ]
        instance_group [ { count: 2 kind: KIND_GPU } ]""",
        model_config_pb2.ModelConfig(),
    )
    base = BackendContext(model_name="neg", version=1, model_dir="", version_dir="", config=config)
    ray.init(num_cpus=8, num_gpus=2, include_dashboard=False, log_to_driver=False)
    try:
        executor = RayExecutor(num_gpus=0.5)
        gpus = executor.cluster_gpus()
        assert gpus == (0, 1)  # count 2 per GPU: four instances, half a GPU each
        options = PlacementOptions(num_buffers=2)
        instances = place_instances(base, _negating_backend, options, gpus=gpus, builder=executor)
        try:
            seen = [instance.call(_where).result(timeout=60) for instance in instances]
            assert [name for name, _ in seen] == [
                "neg_0_0_cuda0",
                "neg_0_1_cuda0",
                "neg_0_0_cuda1",
                "neg_0_1_cuda1",
            ]
            visible = [devices for _, devices in seen]
            assert sorted(visible) == ["0", "0", "1", "1"]  # two actors per GPU
            batch = [{"x": np.ones((2, 4), np.float32)}]
            timed = instances[0].submit_requests_timed(batch).result(timeout=60)
            np.testing.assert_array_equal(timed.results[0]["y"], -np.ones((2, 4)))
            with pytest.raises(
                Unavailable,
                match="6 Ray instances of model 'neg' need 3 GPU in all, the cluster has 2",
            ):
                place_instances(base, _negating_backend, options, gpus=(0, 1, 2), builder=executor)
        finally:
            for instance in instances:
                instance.close()
    finally:
        ray.shutdown()
