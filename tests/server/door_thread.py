"""A :class:`ServerApp` on its own loop in a background thread, for tests that drive it with
the synchronous ``tritonclient`` (the security tests: restricted APIs, TLS, slow clients)."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Awaitable, Callable, Iterator
from contextlib import contextmanager
from typing import Any

from headrace.server.app import FrontendOptions, ServerApp
from headrace.server.core import InferenceServer

__all__ = ["serving"]

TIMEOUT_S = 60.0


@contextmanager
def serving(
    options: FrontendOptions,
    setup: Callable[[InferenceServer], Awaitable[None]] | None = None,
    /,
    **core: Any,
) -> Iterator[ServerApp]:
    """Start a ``ServerApp`` with ``options`` on a thread's loop, its core built with
    ``core`` (``setup`` runs on it once started); stop it when the block ends."""
    loop = asyncio.new_event_loop()
    thread = threading.Thread(target=loop.run_forever, name="door-thread", daemon=True)
    thread.start()

    async def start() -> ServerApp:
        app = ServerApp(InferenceServer(**core), options)
        await app.start()
        if setup is not None:
            await setup(app.core)
        return app

    try:
        app = asyncio.run_coroutine_threadsafe(start(), loop).result(TIMEOUT_S)
        try:
            yield app
        finally:
            asyncio.run_coroutine_threadsafe(app.stop(), loop).result(TIMEOUT_S)
    finally:
        loop.call_soon_threadsafe(loop.stop)
        thread.join(TIMEOUT_S)
        loop.close()
