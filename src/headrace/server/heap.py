"""Keep the garbage collector's full passes short in a long-running server.

Loaded models bring hundreds of thousands of long-lived objects (torch, onnxruntime, the
models' own modules), and CPython's oldest-generation collection walks every one of them:
72-77 ms on this project's 2-core machine with torch and onnxruntime imported
(``benchmarks/gc_pause.py``), a pause that every request in flight waits through. Once the models are loaded nothing that exists is
garbage for long, so :func:`refreeze` collects once and moves what is left into the permanent
generation (``gc.freeze``), which later collections skip: they then walk only what was made
since. Unfreezing first, on each change, lets an unloaded model's cycles be freed.
"""

from __future__ import annotations

import gc
import logging
import time

__all__ = ["refreeze"]

_log = logging.getLogger(__name__)


def refreeze() -> None:
    """Collect everything once, then keep what survives out of later collections."""
    start = time.perf_counter()
    gc.unfreeze()
    gc.collect()
    gc.freeze()
    _log.debug(
        "froze %d long-lived objects out of garbage collection in %.0f ms",
        gc.get_freeze_count(),
        (time.perf_counter() - start) * 1e3,
    )
