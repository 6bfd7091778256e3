"""How a scheduler reaches other loaded models: a small router, not the server.

An ensemble's steps and (later) a python model's BLS requests run on other models' schedulers,
each with its own batcher and instances. The server's model registry implements this protocol;
a scheduler built by :func:`~headrace.scheduling.make_scheduler` is handed it and resolves a
model per request, so a reloaded model's new version is used from the next request on.
"""

from __future__ import annotations

from typing import Protocol

from headrace.config import ModelConfig
from headrace.scheduling.base import Scheduler
from headrace.types import TensorSpec

__all__ = ["NoRouter", "Route", "Router"]


class Route(Protocol):
    """One serving model version as another scheduler sees it."""

    name: str
    version: int

    @property
    def config(self) -> ModelConfig: ...

    @property
    def scheduler(self) -> Scheduler: ...

    @property
    def inputs(self) -> list[TensorSpec]: ...

    @property
    def outputs(self) -> list[TensorSpec]: ...


class Router(Protocol):
    """Resolves a model name (and version, "" for the newest serving one) to its route.

    Raises :class:`~headrace.errors.ModelNotFound` or :class:`~headrace.errors.ModelNotReady`.
    """

    def route(self, name: str, version: str = "") -> Route: ...


class NoRouter:
    """The router of a scheduler built outside a server: no other model is reachable."""

    def route(self, name: str, version: str = "") -> Route:
        from headrace.errors import ModelNotFound

        raise ModelNotFound(f"unknown model '{name}': no other models are loaded here")
