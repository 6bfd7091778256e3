"""The pipeline study's simulated host preprocessing: sleep, spin or decode, per batch.

What overlaps with compute depends on what the host stage does with the CPU and the GIL:

- ``sleep`` takes the time without using a core or the GIL (I/O, or work done elsewhere);
  it is what the study measured first, the most favourable case for overlap.
- ``spin`` is pure Python busy for the time asked (a wall-clock deadline): it uses a core
  and holds the GIL, as Python-level preprocessing does, so other Python threads (the
  driver, the other slots' stages) only run at the interpreter's switch interval.
- ``decode`` is real work that releases the GIL: zlib-inflating a generated payload and
  converting its bytes to FP32 with numpy. The payload is sized once, on the spot, so that
  one decode takes about the time asked on an idle core; on a busy machine it takes longer,
  as real decoding would.
"""

from __future__ import annotations

import time
import zlib
from collections.abc import Callable

import numpy as np

from headrace.engine.pipeline import Preprocess, Requests
from headrace.errors import InvalidInput

__all__ = ["PREPROCESS_KINDS", "Decoder", "cpu_stage", "spin"]

PREPROCESS_KINDS = ("sleep", "spin", "decode")

_CHUNK = 1 << 20  # bytes decoded to measure the rate


def spin(seconds: float) -> int:
    """Busy Python loop until ``seconds`` have passed; returns the iterations (never zero)."""
    deadline = time.perf_counter() + seconds
    turns = 1
    while time.perf_counter() < deadline:
        turns += 1
    return turns


class Decoder:
    """One zlib payload whose decode (inflate + uint8 -> FP32) takes about ``seconds``.

    ``rate`` (raw bytes decoded per second) is measured here unless given.
    """

    def __init__(self, seconds: float, *, seed: int = 0, rate: float | None = None) -> None:
        if rate is None:  # best of 3 decodes of 1 MiB
            rate = _CHUNK / self._time(zlib.compress(self._raw(_CHUNK, seed), 1))
        size = max(4096, int(rate * seconds))
        self.raw_bytes = size
        self.payload = zlib.compress(self._raw(size, seed), 1)

    @staticmethod
    def _raw(size: int, seed: int) -> bytes:
        # Low-entropy bytes (16 levels): compressible, like images or sensor data.
        return np.random.default_rng(seed).integers(0, 16, size, dtype=np.uint8).tobytes()

    @staticmethod
    def _time(payload: bytes) -> float:
        best = float("inf")
        for _ in range(3):
            start = time.perf_counter()
            _decode(payload)
            best = min(best, time.perf_counter() - start)
        return max(best, 1e-6)

    def __call__(self) -> np.ndarray:
        return _decode(self.payload)


def _decode(payload: bytes) -> np.ndarray:
    data = zlib.decompress(payload)
    return np.frombuffer(data, dtype=np.uint8).astype(np.float32)


def cpu_stage(kind: str, delay_ms: float) -> Preprocess | None:
    """Preprocessing of ``kind`` taking about ``delay_ms`` per batch; None for no delay.

    The batch itself passes through unchanged: the stage stands for work whose result the
    model does not need here, so every kind feeds the model the same inputs.
    """
    if kind not in PREPROCESS_KINDS:
        raise InvalidInput(f"--preprocess {kind!r} is not one of {', '.join(PREPROCESS_KINDS)}")
    if delay_ms <= 0:
        return None
    seconds = delay_ms / 1000.0
    work: Callable[[], object]
    if kind == "sleep":
        work = lambda: time.sleep(seconds)  # noqa: E731
    elif kind == "spin":
        work = lambda: spin(seconds)  # noqa: E731
    else:
        work = Decoder(seconds)

    def preprocess(requests: Requests) -> Requests:
        work()
        return requests

    return preprocess
