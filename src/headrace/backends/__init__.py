"""Backends: one module per way of executing a model (see ``base.Backend`` for the contract)."""

from __future__ import annotations

from headrace.backends.base import Backend, BackendContext
from headrace.config import ModelConfig

__all__ = ["Backend", "BackendContext", "backend_class_for", "load_backend"]


def backend_class_for(config: ModelConfig) -> type[Backend]:
    """The backend class a configuration's ``backend``/``platform`` names (imported lazily)."""
    raise NotImplementedError


def load_backend(context: BackendContext) -> Backend:
    """Construct and load the backend for ``context.config``."""
    return backend_class_for(context.config)(context)
