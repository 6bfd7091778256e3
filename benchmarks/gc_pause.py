"""How long a full garbage collection takes in a server's process, before and after gc.freeze.

    python benchmarks/gc_pause.py      # seconds

Imports what ``headrace serve`` imports with ONNX and torch models (torch, onnxruntime, grpc,
granian/aiohttp, the server's modules), then times ``gc.collect(generation)`` for each
generation, five times each, then freezes the heap (``headrace.server.heap.refreeze``) and
times a full collection again. Output: a table and ``results/gc_pause.json`` with the machine.
"""

from __future__ import annotations

import gc
import json
import statistics
import time
from datetime import datetime, timezone
from pathlib import Path

HERE = Path(__file__).resolve().parent
REPEATS = 5


def _timed(generation: int) -> float:
    start = time.perf_counter()
    gc.collect(generation)
    return (time.perf_counter() - start) * 1e3


def main() -> None:
    import onnxruntime  # noqa: F401
    import torch  # noqa: F401
    import tritonclient.grpc  # noqa: F401

    import headrace.server.app  # noqa: F401  (both doors, the core, the registry)
    from headrace.bench.machine import machine_info
    from headrace.server.heap import refreeze

    objects = len(gc.get_objects())
    before = {g: [_timed(g) for _ in range(REPEATS)] for g in (0, 1, 2)}
    refreeze()
    after = [_timed(2) for _ in range(REPEATS)]
    result = {
        "benchmark": "gc_pause",
        "date": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "machine": machine_info(),
        "tracked_objects": objects,
        "frozen_objects": gc.get_freeze_count(),
        "collect_ms": {str(g): [round(t, 3) for t in ts] for g, ts in before.items()},
        "full_collect_after_freeze_ms": [round(t, 3) for t in after],
    }
    out = HERE / "results" / "gc_pause.json"
    out.write_text(json.dumps(result, indent=1) + "\n")
    print(f"{objects} tracked objects")
    for g, ts in before.items():
        print(f"gc.collect({g}): median {statistics.median(ts):8.3f} ms  (runs {ts[0]:.3f}…)")
    print(f"gc.collect(2) after freeze: median {statistics.median(after):8.3f} ms")
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
