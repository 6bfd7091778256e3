"""The resource log: GPU and CPU utilisation every 0.25 s, to CSV, from its own process.

Columns, as the saturation studies write them: ``Timestamp, GPU Util (%), GPU Mem (%),
CPU Util (%), RAM Util (%)``. ``Timestamp`` is Unix time in seconds (``time.time()``), the
clock a study's JSON uses for its points, so a log and a study share one timeline.

Sources, each used when present: NVIDIA GPUs through ``nvidia-ml-py`` (``pynvml``), AMD GPUs
through ``amdsmi``, CPU and RAM through ``psutil``. Without a GPU source the GPU columns stay
empty and :func:`gpu_source` says why; a study records that beside the CSV path.

The monitor runs as a separate process (``headrace bench monitor`` or
``python -m headrace.bench.monitor``) so that sampling never takes the GIL from the work it
watches; :func:`run_alongside` starts one for the length of a ``with`` block.
"""

from __future__ import annotations

import argparse
import csv
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any, TextIO

from headrace.errors import InvalidInput, Unavailable, require

__all__ = [
    "COLUMNS",
    "DEFAULT_INTERVAL_S",
    "GpuSampler",
    "MonitorRun",
    "gpu_source",
    "main",
    "run_alongside",
    "run_monitor",
]

COLUMNS = ("Timestamp", "GPU Util (%)", "GPU Mem (%)", "CPU Util (%)", "RAM Util (%)")
DEFAULT_INTERVAL_S = 0.25
_STOP_TIMEOUT_S = 10.0
_START_TIMEOUT_S = 60.0
_POLL_S = 0.05  # each wait on the starting child, between two looks at its file

GpuReading = tuple[float, float]  # utilisation %, memory used %


@dataclass
class GpuSampler:
    """Reads one GPU; ``source`` is ``nvml`` or ``amdsmi``; ``close`` releases the library."""

    source: str
    read: Callable[[], GpuReading]
    close: Callable[[], None]


def gpu_source(index: int = 0) -> tuple[GpuSampler | None, str]:
    """The first working GPU sampler (NVML, then amdsmi) and a sentence saying what was found."""
    reasons = []
    for opener in (_nvml_sampler, _amdsmi_sampler):
        sampler, reason = opener(index)
        if sampler is not None:
            return sampler, reason
        reasons.append(reason)
    return None, "GPU columns empty: " + "; ".join(reasons)


def _nvml_sampler(index: int) -> tuple[GpuSampler | None, str]:
    try:
        import pynvml
    except ImportError:
        return None, "nvidia-ml-py is not installed"
    try:
        pynvml.nvmlInit()
        handle = pynvml.nvmlDeviceGetHandleByIndex(index)
    except Exception as exc:  # no driver, no device: NVML's own exception classes
        return None, f"NVML found no NVIDIA GPU {index} ({exc})"

    def read() -> GpuReading:
        rates = pynvml.nvmlDeviceGetUtilizationRates(handle)
        memory = pynvml.nvmlDeviceGetMemoryInfo(handle)
        return float(rates.gpu), 100.0 * memory.used / memory.total

    return GpuSampler("nvml", read, pynvml.nvmlShutdown), f"NVIDIA GPU {index} through NVML"


def _amdsmi_sampler(index: int) -> tuple[GpuSampler | None, str]:
    try:
        import amdsmi
    except ImportError:
        return None, "amdsmi is not installed"
    try:
        amdsmi.amdsmi_init()
        handle = amdsmi.amdsmi_get_processor_handles()[index]
    except Exception as exc:  # no ROCm driver, or fewer GPUs than the index
        return None, f"amdsmi found no AMD GPU {index} ({exc})"
    vram = amdsmi.AmdSmiMemoryType.VRAM

    def read() -> GpuReading:
        activity = amdsmi.amdsmi_get_gpu_activity(handle)
        used = amdsmi.amdsmi_get_gpu_memory_usage(handle, vram)
        total = amdsmi.amdsmi_get_gpu_memory_total(handle, vram)
        return float(activity["gfx_activity"]), 100.0 * used / total

    return GpuSampler("amdsmi", read, amdsmi.amdsmi_shut_down), f"AMD GPU {index} through amdsmi"


def run_monitor(
    out: TextIO,
    *,
    interval_s: float = DEFAULT_INTERVAL_S,
    stop: threading.Event,
    duration_s: float = 0.0,
    gpu: GpuSampler | None = None,
    max_rows: int = 0,
) -> int:
    """Write the header, then one row every ``interval_s`` until ``stop`` is set, ``duration_s``
    (0: no limit) has passed, or ``max_rows`` (0: no limit) rows are written; the row count."""
    if interval_s <= 0:
        raise InvalidInput(f"--interval must be positive, got {interval_s}")
    psutil = require("psutil", "bench")
    writer = csv.writer(out)
    writer.writerow(COLUMNS)
    out.flush()
    psutil.cpu_percent(interval=None)  # the first reading only starts psutil's window
    start = time.monotonic()
    end = start + duration_s if duration_s > 0 else float("inf")
    rows = 0
    next_tick = start
    while not stop.is_set() and (max_rows <= 0 or rows < max_rows):
        next_tick += interval_s
        if stop.wait(max(0.0, min(next_tick, end) - time.monotonic())) or time.monotonic() >= end:
            break
        gpu_util, gpu_mem = _gpu_cells(gpu)
        writer.writerow(
            (
                f"{time.time():.3f}",
                gpu_util,
                gpu_mem,
                f"{psutil.cpu_percent(interval=None):.1f}",
                f"{psutil.virtual_memory().percent:.1f}",
            )
        )
        out.flush()  # a log read while the study runs is complete up to its last row
        rows += 1
    return rows


def _gpu_cells(gpu: GpuSampler | None) -> tuple[str, str]:
    if gpu is None:
        return "", ""
    try:
        util, memory = gpu.read()
    except Exception:  # a reading that fails (device reset, driver hiccup) is an empty cell
        return "", ""
    return f"{util:.1f}", f"{memory:.1f}"


@dataclass(frozen=True)
class MonitorRun:
    """What a study records about the log that ran beside it."""

    csv: str
    interval_s: float
    gpu: str
    """Which GPU source filled the GPU columns, or why they are empty."""

    def as_dict(self) -> dict[str, Any]:
        return {"csv": self.csv, "interval_s": self.interval_s, "gpu": self.gpu}


@contextmanager
def run_alongside(
    path: str, *, interval_s: float = DEFAULT_INTERVAL_S, gpu_index: int = 0
) -> Iterator[MonitorRun]:
    """Log to ``path`` from a child process for the length of the ``with`` block.

    The child is stopped with SIGTERM (it finishes its row and closes the file) and waited
    for; a child that ignores it is killed after a bounded wait.
    """
    sampler, description = gpu_source(gpu_index)
    if sampler is not None:
        sampler.close()
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    command = [
        sys.executable,
        "-m",
        "headrace.bench.monitor",
        "--out",
        path,
        "--interval",
        str(interval_s),
        "--gpu",
        str(gpu_index),
        "--quiet",
    ]
    if os.path.exists(path):
        os.remove(path)  # readiness below is "the header is there"
    child = subprocess.Popen(command)  # noqa: S603 - our own interpreter and module
    try:
        _wait_for_header(child, path)
        yield MonitorRun(path, interval_s, description)
    finally:
        child.send_signal(signal.SIGTERM)
        try:
            child.wait(timeout=_STOP_TIMEOUT_S)
        except subprocess.TimeoutExpired:
            child.kill()
            child.wait()


def _wait_for_header(child: subprocess.Popen[bytes], path: str) -> None:
    """Return once the child has written its header, so the log covers the whole study."""
    deadline = time.monotonic() + _START_TIMEOUT_S
    while not (os.path.exists(path) and os.path.getsize(path) > 0):
        try:
            code = child.wait(timeout=_POLL_S)
        except subprocess.TimeoutExpired:
            code = None
        if code is not None:
            raise Unavailable(f"the resource monitor exited with {code} before writing {path}")
        if time.monotonic() > deadline:
            raise Unavailable(f"the resource monitor did not start {path} in {_START_TIMEOUT_S}s")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--out", required=True, help="CSV file to write (required)")
    parser.add_argument(
        "--interval",
        type=float,
        default=DEFAULT_INTERVAL_S,
        help=f"seconds between rows (default {DEFAULT_INTERVAL_S})",
    )
    parser.add_argument(
        "--duration",
        type=float,
        default=0.0,
        help="stop after this many seconds; 0 = until SIGTERM or Ctrl-C (default 0)",
    )
    parser.add_argument("--gpu", type=int, default=0, help="GPU index to log (default 0)")
    parser.add_argument(
        "--quiet", action="store_true", help="do not print the GPU source (default: print it)"
    )


def run_command(args: argparse.Namespace) -> int:
    """Log until stopped; SIGTERM and Ctrl-C end the log cleanly."""
    stop = threading.Event()
    for signum in (signal.SIGTERM, signal.SIGINT):
        signal.signal(signum, lambda *_: stop.set())
    sampler, description = gpu_source(args.gpu)
    if not args.quiet:
        print(description, file=sys.stderr)
    os.makedirs(os.path.dirname(os.path.abspath(args.out)), exist_ok=True)
    try:
        with open(args.out, "w", newline="", encoding="utf-8") as out:
            rows = run_monitor(
                out, interval_s=args.interval, stop=stop, duration_s=args.duration, gpu=sampler
            )
    finally:
        if sampler is not None:
            sampler.close()
    if not args.quiet:
        print(f"monitor: {rows} rows in {args.out}", file=sys.stderr)
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m headrace.bench.monitor")
    add_arguments(parser)
    return run_command(parser.parse_args(argv))


if __name__ == "__main__":
    sys.exit(main())
