"""Which shared Ray actors the running frontends use, so the stale ones can be found.

Shared actors (``headrace serve --ray-share``) are detached and named
``MODEL/VERSION/INSTANCE@CONFIG-DIGEST``: they outlive every frontend, and a config change
makes new ones beside the old. Nothing in Ray says whether a frontend still drives one, so each
frontend that places shared actors keeps a *marker*: one small actor (no resources, on the
frontend's own node, not detached, so Ray ends it with the frontend's process) named
``headrace-frontend/ID`` in the namespace, holding the names of the shared actors it serves
through. :func:`list_actors` reads the markers; an actor no marker names is stale.
"""

from __future__ import annotations

import threading
import uuid
from dataclasses import dataclass
from typing import Any

__all__ = [
    "FRONTEND_PREFIX",
    "ActorEntry",
    "FrontendMarker",
    "list_actors",
    "parse_name",
    "used_names",
]

FRONTEND_PREFIX = "headrace-frontend/"
_ASK_S = 5.0
"""How long an actor or a marker has to answer before the listing says it did not."""


class _Marker:
    """The marker actor's body: the shared actor names one frontend uses, counted."""

    def __init__(self) -> None:
        self._names: dict[str, int] = {}

    def use(self, names: list[str]) -> None:
        for name in names:
            self._names[name] = self._names.get(name, 0) + 1

    def drop(self, name: str) -> None:
        left = self._names.get(name, 0) - 1
        if left > 0:
            self._names[name] = left
        else:
            self._names.pop(name, None)

    def names(self) -> list[str]:
        return sorted(self._names)


class FrontendMarker:
    """This process's marker in one namespace, made on first use (one per Ray connection)."""

    _lock = threading.Lock()
    _made: dict[tuple[str, str], Any] = {}

    @classmethod
    def use(cls, ray: Any, namespace: str, names: list[str]) -> None:
        """Record, before placing them, that this frontend serves through ``names``."""
        ray.get(cls._handle(ray, namespace).use.remote(names))

    @classmethod
    def drop(cls, ray: Any, namespace: str, name: str) -> None:
        """This frontend no longer serves through ``name`` (not waited for)."""
        cls._handle(ray, namespace).drop.remote(name)

    @classmethod
    def drop_now(cls, ray: Any, namespace: str, names: list[str]) -> None:
        """``drop`` each of ``names``, waited for (before asking who else uses them)."""
        handle = cls._handle(ray, namespace)
        ray.get([handle.drop.remote(name) for name in names])

    @classmethod
    def _handle(cls, ray: Any, namespace: str) -> Any:
        key = (namespace, ray.get_runtime_context().get_job_id())
        with cls._lock:
            handle = cls._made.get(key)
            if handle is None:
                options: dict[str, Any] = {
                    "name": f"{FRONTEND_PREFIX}{uuid.uuid4().hex[:12]}",
                    "namespace": namespace,
                    "num_cpus": 0,
                    "max_restarts": 0,
                }
                here = _this_node(ray)
                if here is not None:  # it must not die with another (instances') node
                    options["scheduling_strategy"] = here
                handle = ray.remote(_Marker).options(**options).remote()
                cls._made[key] = handle
            return handle


def _this_node(ray: Any) -> Any:
    """A strategy that keeps an actor on this process's node; None where Ray cannot say
    which that is (the marker then goes where Ray puts it)."""
    try:
        from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy

        return NodeAffinitySchedulingStrategy(ray.get_runtime_context().get_node_id(), soft=False)
    except Exception:
        return None


@dataclass(frozen=True)
class ActorEntry:
    """One instance actor of a namespace, as ``headrace ray-actors`` lists it."""

    name: str
    model: str
    version: str
    instance: str
    config: str
    """The config digest of a shared actor; "" for one owned by a single frontend."""
    node: str
    state: str
    users: int
    """How many running frontends serve through it (shared actors; owned ones: 1)."""

    @property
    def shared(self) -> bool:
        return bool(self.config)

    @property
    def stale(self) -> bool:
        """A shared actor no running frontend uses (an owned one ends with its frontend)."""
        return self.shared and self.users == 0


def parse_name(name: str) -> tuple[str, str, str, str] | None:
    """``MODEL/VERSION/INSTANCE@DIGEST`` (shared) or ``…#ID`` (owned) as (model, version,
    instance, digest or ""); None for a name headrace did not make."""
    model, _, rest = name.partition("/")
    version, _, instance = rest.partition("/")
    if not (model and version.isdigit() and instance):
        return None
    if "@" in instance:
        instance, _, digest = instance.rpartition("@")
        return model, version, instance, digest
    if "#" in instance:
        return model, version, instance.rpartition("#")[0], ""
    return None


def list_actors(ray: Any, namespace: str) -> list[ActorEntry]:
    """Every headrace instance actor of ``namespace``: where it runs, whether it answers, and
    how many running frontends use it."""
    named = [
        entry["name"]
        for entry in ray.util.list_named_actors(all_namespaces=True)
        if entry["namespace"] == namespace
    ]
    used = used_names(ray, namespace, named)
    parsed = [(n, p) for n in sorted(named) if (p := parse_name(n)) is not None]
    actors = [ray.get_actor(n, namespace=namespace) for n, _ in parsed]
    infos = _ask(ray, [actor.describe.remote() for actor in actors])
    entries = []
    for (name, (model, version, instance, digest)), info in zip(parsed, infos):
        entries.append(
            ActorEntry(
                name,
                model,
                version,
                instance,
                digest,
                node=getattr(info, "node", "") or "-",
                state="ALIVE" if info is not None else f"NOT ANSWERING in {_ASK_S:g}s",
                users=used.get(name, 0) if digest else 1,
            )
        )
    return entries


def used_names(ray: Any, namespace: str, named: list[str] | None = None) -> dict[str, int]:
    """The shared actor names the running frontends of ``namespace`` use, with how many use
    each (``named``: the namespace's actor names, when already listed)."""
    if named is None:
        named = [
            entry["name"]
            for entry in ray.util.list_named_actors(all_namespaces=True)
            if entry["namespace"] == namespace
        ]
    used: dict[str, int] = {}
    markers = [
        ray.get_actor(n, namespace=namespace) for n in named if n.startswith(FRONTEND_PREFIX)
    ]
    for names in _ask(ray, [m.names.remote() for m in markers]):
        for name in names or ():  # a marker that did not answer: its frontend is going
            used[name] = used.get(name, 0) + 1
    return used


def _ask(ray: Any, refs: list[Any]) -> list[Any]:
    """Each call's result, or None where it failed or did not answer in time."""
    if not refs:
        return []
    ready, _ = ray.wait(refs, num_returns=len(refs), timeout=_ASK_S)
    done = set(ready)
    results = []
    for ref in refs:
        try:
            results.append(ray.get(ref) if ref in done else None)
        except Exception:
            results.append(None)
    return results
