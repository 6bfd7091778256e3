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
