"""A small closed-loop load: ``concurrency`` async tritonclient HTTP requests kept in flight.

``bench tune`` uses it when perf_analyzer is not installed. It is deliberately one function
with one result type, so it can be swapped for ``bench load``'s generator later. Every run is
bounded twice: by ``duration_s`` (after ``warmup_s``) and by ``max_requests``.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Mapping
from dataclasses import dataclass

import numpy as np

from headrace.errors import Unavailable

__all__ = ["ClientResult", "run_closed_loop"]


@dataclass(frozen=True)
class ClientResult:
    """What the client saw in the measured stretch (warm-up excluded)."""

    throughput: float  # inferences/s
    p50_ms: float
    p99_ms: float
    requests: int
    errors: int
    first_error: str = ""


def run_closed_loop(
    url: str,
    model: str,
    inputs: Mapping[str, np.ndarray],
    datatypes: Mapping[str, str],
    *,
    concurrency: int,
    duration_s: float = 2.0,
    warmup_s: float = 0.5,
    max_requests: int = 200_000,
) -> ClientResult:
    """Keep ``concurrency`` requests of ``inputs`` in flight for ``warmup_s + duration_s``."""
    return asyncio.run(
        _run(url, model, inputs, datatypes, concurrency, duration_s, warmup_s, max_requests)
    )


async def _run(
    url: str,
    model: str,
    inputs: Mapping[str, np.ndarray],
    datatypes: Mapping[str, str],
    concurrency: int,
    duration_s: float,
    warmup_s: float,
    max_requests: int,
) -> ClientResult:
    try:
        import tritonclient.http.aio as aioclient
    except ImportError as exc:
        raise Unavailable("bench tune's client needs tritonclient[http]") from exc
    batch = next(iter(inputs.values())).shape[0] if inputs else 1
    client = aioclient.InferenceServerClient(url, conn_limit=max(concurrency, 1) * 2)
    tensors = []
    for name, array in inputs.items():
        tensor = aioclient.InferInput(name, list(array.shape), datatypes[name])
        tensor.set_data_from_numpy(array)
        tensors.append(tensor)
    start = time.monotonic()
    measure_from = start + warmup_s
    stop = measure_from + duration_s
    latencies: list[float] = []
    errors: list[str] = []
    sent = 0

    async def slot() -> None:
        nonlocal sent
        while time.monotonic() < stop and sent < max_requests:
            sent += 1
            began = time.monotonic()
            try:
                await client.infer(model, tensors)
            except Exception as exc:  # recorded, the load goes on
                errors.append(str(exc))
                continue
            if began >= measure_from:
                latencies.append(time.monotonic() - began)

    try:
        await asyncio.gather(*(slot() for _ in range(concurrency)))
    finally:
        await client.close()
    measured_s = max(min(time.monotonic(), stop) - measure_from, 1e-9)
    ms = np.sort(np.asarray(latencies)) * 1e3 if latencies else np.asarray([np.nan])
    return ClientResult(
        throughput=len(latencies) * batch / measured_s,
        p50_ms=float(np.percentile(ms, 50)),
        p99_ms=float(np.percentile(ms, 99)),
        requests=len(latencies),
        errors=len(errors),
        first_error=errors[0] if errors else "",
    )
