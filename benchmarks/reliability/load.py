"""Open- and closed-loop load with unmodified tritonclient (asyncio), and RSS sampling.

Every request's outcome is one :class:`Outcome`: answered, refused (HTTP 503 / gRPC
UNAVAILABLE), another error, or no answer by the deadline. Loops are bounded in time and
count and talk to 127.0.0.1 only.
"""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

import numpy as np

__all__ = [
    "Outcome",
    "RssSampler",
    "closed_loop",
    "collect",
    "make_sender",
    "one",
    "open_loop",
    "percentile",
    "tree_rss_mb",
]

REFUSED = ("503", "StatusCode.UNAVAILABLE")
"""How tritonclient reports 503 / UNAVAILABLE."""


@dataclass
class Outcome:
    kind: str
    """``ok``, ``refused``, ``error`` or ``lost`` (no answer by the deadline)."""
    latency_ms: float
    message: str = ""
    value: float | None = None


Sender = Callable[[float], Awaitable[float]]


async def make_sender(
    protocol: str, url: str, model: str, batched: bool = False
) -> tuple[Sender, Callable[[], Any]]:
    """An async ``send(value) -> echoed value`` over ``protocol`` and its ``close``; the
    input is FP32 ``[1]``, or ``[1, 1]`` for a ``batched`` model (``max_batch_size`` > 0)."""
    shape = [1, 1] if batched else [1]
    if protocol == "http":
        import tritonclient.http.aio as client_module
    else:
        import tritonclient.grpc.aio as client_module  # type: ignore[no-redef]
    client = client_module.InferenceServerClient(url)

    async def send(value: float) -> float:
        x = client_module.InferInput("X", shape, "FP32")
        x.set_data_from_numpy(np.full(shape, value, np.float32))
        result = await client.infer(model, [x])
        return float(result.as_numpy("Y").reshape(-1)[0])

    return send, client.close


async def one(send: Sender, value: float) -> Outcome:
    """Send ``value``; how it ended and how long it took."""
    from tritonclient.utils import InferenceServerException

    start = time.perf_counter()
    try:
        echoed = await send(value)
    except InferenceServerException as exc:
        kind = "refused" if str(exc.status()) in REFUSED else "error"
        return Outcome(
            kind, (time.perf_counter() - start) * 1e3, f"{exc.status()}: {exc.message()}"
        )
    except Exception as exc:  # a dropped connection is a result to report, not a crash
        return Outcome("error", (time.perf_counter() - start) * 1e3, f"{type(exc).__name__}: {exc}")
    kind = "ok" if echoed == value else "error"
    return Outcome(
        kind, (time.perf_counter() - start) * 1e3, "" if kind == "ok" else "wrong answer", echoed
    )


async def collect(tasks: list[asyncio.Task[Outcome]], answer_s: float) -> list[Outcome]:
    """The tasks' outcomes; those unanswered ``answer_s`` from now are cancelled, ``lost``."""
    done, pending = await asyncio.wait(tasks, timeout=answer_s) if tasks else (set(), set())
    for task in pending:
        task.cancel()
    return [t.result() if t in done else Outcome("lost", answer_s * 1e3) for t in tasks]


async def open_loop(
    send: Sender, rate: float, seconds: float, max_requests: int, answer_s: float, value: float
) -> tuple[list[Outcome], float]:
    """``rate`` requests per second for ``seconds`` (at most ``max_requests``), each sent on
    schedule whatever the answers; returns the outcomes and the seconds sending took."""
    loop = asyncio.get_running_loop()
    count = min(int(rate * seconds), max_requests)
    start = loop.time()
    tasks: list[asyncio.Task[Outcome]] = []
    for index in range(count):
        delay = start + index / rate - loop.time()
        if delay > 0:
            await asyncio.sleep(delay)
        tasks.append(asyncio.create_task(one(send, value)))
    sending = loop.time() - start
    return await collect(tasks, answer_s), sending


async def closed_loop(
    send: Sender, concurrency: int, seconds: float, max_requests: int, value: float
) -> tuple[list[Outcome], float]:
    """``concurrency`` clients, each sending its next request when the last is answered."""
    outcomes: list[Outcome] = []
    deadline = time.perf_counter() + seconds
    start = time.perf_counter()

    async def client() -> None:
        while time.perf_counter() < deadline and len(outcomes) < max_requests:
            outcomes.append(await one(send, value))

    await asyncio.gather(*(client() for _ in range(concurrency)))
    return outcomes, time.perf_counter() - start


def percentile(values: list[float], q: float) -> float | None:
    """The ``q`` quantile (0-1) of ``values``, None when empty."""
    if not values:
        return None
    if len(values) == 1:
        return values[0]
    return float(np.quantile(np.asarray(values), q))


class RssSampler:
    """Samples the resident memory of a process tree every ``period_s`` on a thread."""

    def __init__(self, pid: int, period_s: float = 0.2) -> None:
        self.pid = pid
        self.period_s = period_s
        self.samples: list[tuple[float, float]] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="rss", daemon=True)
        self._start = 0.0

    def __enter__(self) -> RssSampler:
        self._start = time.monotonic()
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()
        self.samples.append((round(time.monotonic() - self._start, 2), tree_rss_mb(self.pid)))

    def _run(self) -> None:
        while True:
            self.samples.append((round(time.monotonic() - self._start, 2), tree_rss_mb(self.pid)))
            if self._stop.wait(self.period_s):
                return


def tree_rss_mb(pid: int) -> float:
    """Resident memory of ``pid`` and its children, in MiB (0 once it has gone)."""
    import psutil

    try:
        root = psutil.Process(pid)
        processes = [root, *root.children(recursive=True)]
    except psutil.NoSuchProcess:
        return 0.0
    total = 0
    for process in processes:
        try:
            total += process.memory_info().rss
        except psutil.NoSuchProcess:
            continue
    return round(total / 2**20, 1)
