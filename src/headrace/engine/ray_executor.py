"""Model instances placed as Ray actors behind the instance pool (a placement builder).

    frontend ── InstancePool ──┬─► RayInstance ─ ─ object store ─ ─► actor (node A): instance
                               └─► RayInstance ─ ─ object store ─ ─► actor (node B): instance

:class:`RayExecutor` places each planned instance as one actor (an
:class:`~headrace.engine.ray_workers.InstanceWorker` that builds its backend and its N-way
pipeline where Ray put it) and gives the pool a :class:`RayInstance` for it, which the pool
drives like a local instance (:mod:`headrace.engine.executor`): ``depth`` batches in flight,
requests shipped as numpy through Ray's object store, the actor's own stage timings back for
the statistics. The actor is an async actor, so the ``depth`` batches really are in its
pipeline at once (one hides the round trip of the other), and the pipeline is only ever fed
from the actor's one event loop thread.

Failure: actors are made with ``max_restarts`` (Ray restarts a dead one, rebuilding its
backend, on its node or another) and ``max_task_retries=0`` (a batch is never run twice). Each
:class:`RayInstance` keeps one ``watch`` call pending on its actor; when that call, or a batch,
fails with the actor's death, the instance is *down*: the batches it had in flight fail with
:class:`~headrace.errors.Unavailable` naming the model, new batches to it fail at once the same
way (the pool sends them to live instances first), and it probes the actor until Ray has
restarted it, then serves again. Decoupled models answer through their requests' sinks, which
cannot leave this process, so they are refused here (the server keeps them local instead).
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
import threading
import time
import uuid
from collections.abc import Awaitable, Callable, Sequence
from concurrent.futures import Future
from typing import TYPE_CHECKING, Any

from headrace.backends.base import BackendContext, BackendFactory
from headrace.engine.instance import Request, TimedRequests
from headrace.engine.ray_frontends import FrontendMarker, used_names
from headrace.engine.ray_workers import WorkerInfo, _check_needs, _RayInstanceWorker, connect_ray
from headrace.errors import (
    HeadraceError,
    InternalError,
    InvalidInput,
    ModelExecutionError,
    Unavailable,
    Unsupported,
)
from headrace.types import WorkItem

if TYPE_CHECKING:
    from headrace.engine.placement import InstanceSpec, PlacementOptions

__all__ = ["RayExecutor", "RayInstance", "portable_request"]

_log = logging.getLogger(__name__)

_PROBE_FIRST_S = 0.2
_PROBE_MAX_S = 5.0
"""A down instance probes its actor after 0.2 s, doubling up to every 5 s until it answers."""


class _ServingWorker(_RayInstanceWorker):
    """The actor body for serving: batches awaited on the actor's event loop (an async actor,
    so several are in the pipeline at once), a call that stays pending while the actor lives,
    and the node it runs on."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        self._closed: asyncio.Event | None = None
        super().__init__(*args, **kwargs)

    async def run_requests_async(self, requests: Sequence[WorkItem]) -> TimedRequests:
        return await asyncio.wrap_future(self._live().submit_requests_timed(requests))

    async def call_async(self, fn: Callable[..., Awaitable[Any]], *args: Any) -> Any:
        """``await fn(instance, *args)`` on the actor's event loop: a caller's coroutine next to
        the instance (the sequence batcher of a model shared by several frontends runs so)."""
        return await fn(self._live(), *args)

    async def watch(self) -> None:
        """Returns when the instance is closed; fails (in the caller) when the actor dies."""
        if self._closed is None:
            self._closed = asyncio.Event()
        await self._closed.wait()

    def describe(self) -> WorkerInfo:
        import ray

        node = ray.get_runtime_context().get_node_id()
        return dataclasses.replace(super().describe(), node=node)

    def close(self) -> None:
        super().close()
        if self._closed is not None:
            self._closed.set()


class RayInstance:
    """One placed instance living in a Ray actor, driven by the instance pool.

    Batches travel as numpy through Ray's object store; each request keeps its id, sequence
    fields and parameters, but not its response sink, which cannot leave this process. While
    :attr:`alive` is False (its actor died and Ray is restarting it) batches fail at once with
    :class:`~headrace.errors.Unavailable`; nothing runs on the caller's thread.
    """

    def __init__(
        self,
        actor: Any,
        name: str,
        depth: int,
        ray: Any,
        *,
        model: str = "",
        node: str = "",
        owned: bool = True,
        released: Callable[[], None] | None = None,
    ) -> None:
        self.name = name
        self.model = model or name
        self.node = node
        self.owned = owned
        """Whether closing ends the actor; a shared one (``--ray-share``) outlives this frontend."""
        self._released = released
        self._actor = actor
        self._depth = depth
        self._ray = ray
        self._lock = threading.Lock()
        self._alive = True
        self._closing = False
        self._timer: threading.Timer | None = None
        self._watch()

    @property
    def depth(self) -> int:
        return self._depth

    @property
    def can_run_now(self) -> bool:
        return False

    @property
    def alive(self) -> bool:
        """False from the moment its actor is seen dead until the restarted actor answers."""
        return self._alive

    def submit_requests_timed(self, requests: Sequence[Request]) -> Future[TimedRequests]:
        if not self._alive:
            failed: Future[TimedRequests] = Future()
            failed.set_exception(self._down_error())
            return failed
        payload = [portable_request(request) for request in requests]
        ref = self._actor.run_requests_async.remote(payload)
        return self._translated(ref.future())

    def run_requests_now(self, requests: Sequence[Request]) -> TimedRequests:
        raise Unavailable(f"model instance '{self.name}' runs in a Ray actor")

    def call(self, fn: Callable[..., Awaitable[Any]], *args: Any) -> Future[Any]:
        """``await fn(instance, *args)`` inside the actor; its result, or its error as itself
        (the actor's death as Unavailable naming the model)."""
        if not self._alive:
            failed: Future[Any] = Future()
            failed.set_exception(self._down_error())
            return failed
        return self._translated(self._actor.call_async.remote(fn, *args).future())

    def close(self, *, drain: bool = True) -> None:
        """Close the actor's instance (draining it), then end the actor; a shared actor is
        left to the other frontends."""
        with self._lock:
            self._closing = True
            if self._timer is not None:
                self._timer.cancel()
        if not self.owned:
            if self._released is not None:  # this frontend no longer uses it
                self._released()
            return  # other frontends serve through it
        try:
            self._ray.get(self._actor.close.remote())
        except Exception:  # noqa: S110 - an actor that died has nothing left to close
            pass
        self._ray.kill(self._actor, no_restart=True)

    # -- failure ------------------------------------------------------------------------------

    def _down_error(self) -> Unavailable:
        return Unavailable(
            f"model '{self.model}' instance '{self.name}' is unavailable: its Ray actor died "
            "and Ray is restarting it"
        )

    def _watch(self) -> None:
        self._actor.watch.remote().future().add_done_callback(self._watched)

    def _watched(self, done: Future[Any]) -> None:
        error = done.exception()
        if error is not None and isinstance(error, self._ray.exceptions.RayActorError):
            self._lost()
        elif error is not None and not self._closing:
            _log.warning("watching model instance '%s' failed: %s", self.name, error)

    def _lost(self) -> None:
        with self._lock:
            if not self._alive or self._closing:
                return
            self._alive = False
        _log.warning(
            "model '%s' instance '%s': its Ray actor died; waiting for Ray to restart it",
            self.model,
            self.name,
        )
        self._probe_later(_PROBE_FIRST_S)

    def _probe_later(self, delay: float) -> None:
        with self._lock:
            if self._closing:
                return
            self._timer = threading.Timer(delay, self._probe, (delay,))
            self._timer.daemon = True
            self._timer.start()

    def _probe(self, delay: float) -> None:
        def answered(done: Future[Any]) -> None:
            if done.exception() is not None:
                self._probe_later(min(delay * 2, _PROBE_MAX_S))
                return
            info: WorkerInfo = done.result()
            with self._lock:
                if self._closing:
                    return
                self.node, self._alive = info.node, True
            _log.warning(
                "model '%s' instance '%s' is back: its Ray actor was restarted",
                self.model,
                self.name,
            )
            self._watch()

        try:
            self._actor.describe.remote().future().add_done_callback(answered)
        except Exception:  # the handle refused the call outright: try again later
            self._probe_later(min(delay * 2, _PROBE_MAX_S))

    def _translated(self, source: Future[Any]) -> Future[Any]:
        """``source`` with an actor's headrace error re-raised as itself; an actor's death as
        :class:`Unavailable` naming the model (and the instance marked down)."""
        target: Future[Any] = Future()

        def done(finished: Future[Any]) -> None:
            error = finished.exception()
            if error is None:
                target.set_result(finished.result())
                return
            cause = getattr(error, "cause", None)
            if isinstance(cause, HeadraceError):
                target.set_exception(cause)
            elif isinstance(error, self._ray.exceptions.RayActorError):
                self._lost()
                target.set_exception(self._down_error())
            else:
                target.set_exception(
                    ModelExecutionError(
                        f"model '{self.model}' instance '{self.name}' failed in its Ray actor: "
                        f"{error}"
                    )
                )

        source.add_done_callback(done)
        return target


class RayExecutor:
    """Places instances as Ray actors, one each (a placement builder).

    A CPU instance takes one CPU; a GPU instance takes ``num_gpus`` of a GPU (fractions
    share one) and sees it as ``cuda:0``. Actors are spread over the nodes, restarted by Ray
    up to ``max_restarts`` times (-1: always), never retry a batch, and are named
    ``MODEL/VERSION/INSTANCE#ID`` in ``namespace`` ("" : the frontend's own). ``shared``
    actors are named ``MODEL/VERSION/INSTANCE@CONFIG-DIGEST`` instead, detached, and found
    rather than made when they exist: every frontend of the namespace serving the same
    configuration drives the same actors, and none ends them when it closes. With
    ``placement_timeout_s`` 0 the cluster must hold what every instance needs, or placement is
    refused at once (Ray would wait for the resources forever); above 0 the actors are made
    anyway and the load waits that long for all of them to be scheduled and loaded (pending
    actors are what an autoscaler such as KubeRay's adds nodes for), then fails naming the
    resources still missing.
    """

    def __init__(
        self,
        *,
        address: str = "",
        num_gpus: float = 1.0,
        max_restarts: int = -1,
        namespace: str = "",
        shared: bool = False,
        placement_timeout_s: float = 0.0,
    ) -> None:
        if num_gpus <= 0:
            raise InvalidInput(f"GPUs per Ray GPU instance must be positive, got {num_gpus}")
        if max_restarts < -1:
            raise InvalidInput(f"Ray max_restarts must be -1 or more, got {max_restarts}")
        self.address = address
        self.num_gpus = num_gpus
        self.max_restarts = max_restarts
        self.namespace = namespace
        self.shared = shared
        if not placement_timeout_s >= 0:
            raise InvalidInput(
                f"Ray placement timeout must be 0 or more, got {placement_timeout_s}"
            )
        self.placement_timeout_s = placement_timeout_s
        if shared and not namespace:
            raise InvalidInput("shared Ray instances need a namespace (--ray-namespace)")

    def cluster_gpus(self) -> tuple[int, ...]:
        """The cluster's GPUs as placement counts them (``KIND_GPU`` groups: count per GPU)."""
        ray = connect_ray(self.address)
        return tuple(range(int(ray.cluster_resources().get("GPU", 0.0))))

    def __call__(
        self,
        specs: Sequence[InstanceSpec],
        factory: BackendFactory,
        base: BackendContext,
        options: PlacementOptions,
    ) -> list[RayInstance]:
        if base.config.model_transaction_policy.decoupled:
            raise Unsupported(
                f"model '{base.model_name}' is decoupled; its responses go through each "
                "request's sink, which cannot reach a Ray actor, so it is not placed on Ray"
            )
        ray = connect_ray(self.address)
        if self.placement_timeout_s <= 0:  # fail fast: Ray would wait for them forever
            _check_needs(
                ray, self._needs(specs), f"{len(specs)} Ray instances of model '{base.model_name}'"
            )
        remote = ray.remote(_ServingWorker)
        names = [self._name(spec, base) for spec in specs]
        if self.shared:  # before they exist, so `headrace ray-actors` never sees them stale
            FrontendMarker.use(ray, self.namespace, names)
        actors: list[Any] = []
        try:
            for index, (spec, name) in enumerate(zip(specs, names)):
                actors.append(self._start(remote, index, spec, name, factory, base, options))
            # loaded (in parallel), or the first error raised here
            infos = self._loaded(ray, actors, specs, base)
        except BaseException as exc:
            if self.shared:  # another frontend may serve through them, or wait for them too
                actors = self._unused(ray, actors, names)
            for actor in actors:
                ray.kill(actor, no_restart=True)
            if not isinstance(exc, ray.exceptions.RayError):
                raise
            cause = _root_cause(exc)
            if isinstance(cause, HeadraceError):
                raise cause from exc
            raise InternalError(
                f"model '{base.model_name}' version {base.version} failed to load in its Ray "
                f"actor: {type(cause).__name__}: {cause}"
            ) from exc
        # a second batch in flight hides the object store round trip of the first
        depth = max(2, options.num_buffers)
        instances = []
        for spec, name, actor, info in zip(specs, names, actors, infos):
            _log.info(
                "model '%s' instance '%s' placed as a Ray actor on node %s (%s)",
                base.model_name,
                spec.name,
                info.node,
                info.device,
            )
            instances.append(
                RayInstance(
                    actor,
                    spec.name,
                    depth,
                    ray,
                    model=base.model_name,
                    node=info.node,
                    owned=not self.shared,
                    released=self._releaser(ray, name) if self.shared else None,
                )
            )
        return instances

    def _unused(self, ray: Any, actors: list[Any], names: list[str]) -> list[Any]:
        """The shared ``actors`` (named ``names``) no other running frontend uses, this one
        having given them up; none when that cannot be told (``headrace ray-actors`` can
        remove them later)."""
        try:
            FrontendMarker.drop_now(ray, self.namespace, names)
            used = used_names(ray, self.namespace)
        except Exception as exc:
            _log.warning("cannot tell whether other frontends use %s, left running: %s", names, exc)
            return []
        return [actor for actor, name in zip(actors, names) if name not in used]

    def _needs(self, specs: Sequence[InstanceSpec]) -> dict[str, float]:
        gpus = sum(1 for spec in specs if spec.kind == "gpu")
        return {"CPU": float(len(specs)), "GPU": gpus * self.num_gpus}

    def _loaded(
        self, ray: Any, actors: Sequence[Any], specs: Sequence[InstanceSpec], base: BackendContext
    ) -> list[WorkerInfo]:
        """Each actor's description once it has loaded; with a placement timeout, an error
        naming what the actors not placed by then still wait for."""
        refs = [actor.describe.remote() for actor in actors]
        if self.placement_timeout_s <= 0:
            return list(ray.get(refs))
        deadline = time.monotonic() + self.placement_timeout_s
        waiting = list(refs)
        while waiting:
            left = deadline - time.monotonic()
            if left <= 0:
                break
            ready, waiting = ray.wait(waiting, num_returns=1, timeout=left)
            ray.get(ready)  # an actor that failed to load fails the load now
        if not waiting:
            return list(ray.get(refs))
        late = [spec for spec, ref in zip(specs, refs) if ref in waiting]
        raise Unavailable(
            f"model '{base.model_name}' version {base.version}: {len(late)} of {len(specs)} "
            f"Ray actors were not scheduled and loaded within --ray-placement-timeout "
            f"{self.placement_timeout_s:g}s; they need {_amounts(self._needs(late))}, the "
            f"cluster has {_amounts(ray.available_resources(), self._needs(late))} free"
        )

    def _name(self, spec: InstanceSpec, base: BackendContext) -> str:
        """``MODEL/VERSION/INSTANCE@CONFIG-DIGEST`` when shared (one for every frontend of
        the namespace), else ``MODEL/VERSION/INSTANCE#ID``."""
        prefix = f"{base.model_name}/{base.version}/{spec.name}"
        return f"{prefix}@{_digest(base)}" if self.shared else f"{prefix}#{uuid.uuid4().hex[:8]}"

    def _releaser(self, ray: Any, name: str) -> Callable[[], None]:
        return lambda: FrontendMarker.drop(ray, self.namespace, name)

    def _start(
        self,
        remote: Any,
        index: int,
        spec: InstanceSpec,
        name: str,
        factory: BackendFactory,
        base: BackendContext,
        options: PlacementOptions,
    ) -> Any:
        """Create one instance's actor (it loads its backend in the background)."""
        from headrace.backends.base import ShippedContext

        on_gpu = spec.kind == "gpu"
        context = dataclasses.replace(
            base, device="cuda:0" if on_gpu else "cpu", instance_name=spec.name
        )
        actor_options: dict[str, Any] = {
            "num_cpus": 1,
            "num_gpus": self.num_gpus if on_gpu else 0,
            "max_restarts": self.max_restarts,
            "max_task_retries": 0,
            "scheduling_strategy": "SPREAD",
            "name": name,
        }
        if self.shared:  # one actor per instance for every frontend of the namespace
            actor_options["get_if_exists"] = True
            actor_options["lifetime"] = "detached"
        if self.namespace:
            actor_options["namespace"] = self.namespace
        return remote.options(**actor_options).remote(
            factory,
            ShippedContext.of(context),
            index=index,
            num_buffers=options.num_buffers,
            pin_memory=options.pin_memory,
        )


def _digest(base: BackendContext) -> str:
    """The model configuration's fingerprint: frontends share actors only for the same one."""
    import hashlib

    return hashlib.sha256(base.config.SerializeToString(deterministic=True)).hexdigest()[:12]


def _amounts(resources: dict[str, float], only: dict[str, float] | None = None) -> str:
    """``1 CPU and 2 GPU``: the amounts of ``only``'s resources (or all) that are needed."""
    names = [name for name, need in (only or resources).items() if need > 0]
    return " and ".join(f"{float(resources.get(name, 0.0)):g} {name}" for name in names)


def _root_cause(exc: BaseException) -> BaseException:
    """What an actor itself raised, under Ray's wrappers (ActorDiedError, RayTaskError)."""
    seen = 0
    while seen < 8 and isinstance(getattr(exc, "cause", None), BaseException):
        exc, seen = exc.cause, seen + 1  # type: ignore[attr-defined]
    return exc


def portable_request(request: Request) -> WorkItem:
    """A request as it can travel to an actor: its fields, without its sink."""
    if not isinstance(request, WorkItem):
        return WorkItem(dict(request))
    return WorkItem(
        dict(request.inputs),
        request_id=request.request_id,
        sequence_id=request.sequence_id,
        sequence_start=request.sequence_start,
        sequence_end=request.sequence_end,
        priority=request.priority,
        timeout_us=request.timeout_us,
        parameters=dict(request.parameters),
        requested_outputs=request.requested_outputs,
    )
