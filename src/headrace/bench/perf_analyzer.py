"""Drive NVIDIA's ``perf_analyzer`` and read its CSV, server-side breakdown included.

perf_analyzer is the load generator every Triton-compatible server is judged with, so the
serving benchmarks use it as the one client for all systems. It is a separate C++ tool (this
project installs it with ``../shared/tools/perf-analyzer``); :func:`locate` finds it.

The CSV (``-f FILE``) has one row per load level. Its server columns (queue, compute
input/infer/output) come from the server's statistics endpoint, so a server that reports them
wrongly shows up here. Times in the CSV are microseconds; :class:`PerfRow` keeps them so.
"""

from __future__ import annotations

import csv
import io
import os
import shutil
import signal
import subprocess
import tempfile
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from headrace.errors import InternalError, InvalidConfig, InvalidInput, Unavailable

__all__ = [
    "PerfAnalyzerFailed",
    "PerfLoad",
    "PerfRow",
    "UnstableMeasurement",
    "locate",
    "parse_csv",
    "perf_analyzer_args",
    "run_perf_analyzer",
]

ENV_VAR = "HEADRACE_PERF_ANALYZER"
_TOOL_RELATIVE = Path("shared") / "tools" / "perf-analyzer"
_UNSTABLE_MARK = "Failed to obtain stable measurement"

#: CSV header -> PerfRow field; perf_analyzer 2.x names, times in microseconds.
_COLUMNS = {
    "Concurrency": "concurrency",
    "Request Rate": "request_rate",
    "Inferences/Second": "throughput",
    "Client Send": "client_send_us",
    "Network+Server Send/Recv": "network_us",
    "Server Queue": "server_queue_us",
    "Server Compute Input": "server_compute_input_us",
    "Server Compute Infer": "server_compute_infer_us",
    "Server Compute Output": "server_compute_output_us",
    "Client Recv": "client_recv_us",
    "p50 latency": "p50_us",
    "p90 latency": "p90_us",
    "p95 latency": "p95_us",
    "p99 latency": "p99_us",
    "Avg latency": "avg_us",
}


class PerfAnalyzerFailed(InternalError):
    """perf_analyzer exited non-zero (request errors, unreachable server, bad flags)."""


class UnstableMeasurement(PerfAnalyzerFailed):
    """No stable window within ``max_trials``: the load level has no result."""


@dataclass(frozen=True)
class PerfRow:
    """One load level of a perf_analyzer CSV; latencies and breakdown in microseconds."""

    throughput: float
    concurrency: float = 0.0
    request_rate: float = 0.0
    client_send_us: float = 0.0
    network_us: float = 0.0
    server_queue_us: float = 0.0
    server_compute_input_us: float = 0.0
    server_compute_infer_us: float = 0.0
    server_compute_output_us: float = 0.0
    client_recv_us: float = 0.0
    p50_us: float = 0.0
    p90_us: float = 0.0
    p95_us: float = 0.0
    p99_us: float = 0.0
    avg_us: float = 0.0
    extra: Mapping[str, float] = field(default_factory=dict)


@dataclass(frozen=True)
class PerfLoad:
    """One perf_analyzer run: a model, a server, a protocol and one concurrency level.

    ``stability_percent`` and ``max_trials`` bound the run: at most ``max_trials`` windows of
    ``measurement_ms`` each, after which an unstable level raises :class:`UnstableMeasurement`.
    """

    model: str
    url: str
    protocol: str = "grpc"
    concurrency: int = 1
    shapes: Mapping[str, Sequence[int]] = field(default_factory=dict)
    measurement_ms: int = 2000
    max_trials: int = 6
    stability_percent: float = 30.0
    batch_size: int = 1
    streaming: bool = False
    """gRPC ``ModelStreamInfer`` instead of unary calls (perf_analyzer ``--streaming``)."""

    def __post_init__(self) -> None:
        if self.protocol not in ("grpc", "http"):
            raise InvalidConfig(f"protocol must be 'grpc' or 'http', got {self.protocol!r}")
        if self.streaming and self.protocol != "grpc":
            raise InvalidConfig("streaming loads need protocol 'grpc'")
        for label in ("concurrency", "measurement_ms", "max_trials", "batch_size"):
            if getattr(self, label) < 1:
                raise InvalidConfig(f"{label} must be >= 1, got {getattr(self, label)}")

    def bound_s(self) -> float:
        """The longest this load should take (every trial window plus start-up slack)."""
        return self.max_trials * self.measurement_ms / 1000.0 * 1.5 + 30.0


def locate(explicit: str | os.PathLike[str] | None = None) -> str:
    """The perf_analyzer to run: ``explicit``, ``$HEADRACE_PERF_ANALYZER``, the project's
    ``../shared/tools/perf-analyzer`` (searched upwards from here and from the working
    directory), or ``perf_analyzer`` on PATH."""
    candidates: list[Path] = []
    for given in (explicit, os.environ.get(ENV_VAR)):
        if given:
            path = Path(given)
            if not (path.is_file() and os.access(path, os.X_OK)):
                raise Unavailable(f"perf_analyzer {str(path)!r} is not an executable file")
            return str(path)
    for start in (Path.cwd(), Path(__file__).resolve()):
        candidates.extend(parent / _TOOL_RELATIVE for parent in (start, *start.parents))
    for candidate in candidates:
        if candidate.is_file() and os.access(candidate, os.X_OK):
            return str(candidate)
    on_path = shutil.which("perf_analyzer")
    if on_path:
        return on_path
    raise Unavailable(
        f"perf_analyzer not found: set {ENV_VAR}, install it as ../shared/tools/perf-analyzer "
        "or put perf_analyzer on PATH"
    )


def perf_analyzer_args(load: PerfLoad, csv_path: str | os.PathLike[str]) -> list[str]:
    """Command-line arguments (after the executable) for ``load``, writing ``csv_path``."""
    args = [
        "-m",
        load.model,
        "-u",
        load.url,
        "-i",
        load.protocol,
        "-b",
        str(load.batch_size),
        "--concurrency-range",
        str(load.concurrency),
        "--measurement-mode",
        "time_windows",
        "-p",
        str(load.measurement_ms),
        "-r",
        str(load.max_trials),
        "-s",
        f"{load.stability_percent:g}",
        "-f",
        os.fspath(csv_path),
    ]
    for name, dims in load.shapes.items():
        args += ["--shape", f"{name}:{','.join(str(int(d)) for d in dims)}"]
    if load.streaming:
        args.append("--streaming")
    return args


def parse_csv(text: str) -> list[PerfRow]:
    """Rows of a perf_analyzer ``-f`` CSV; unknown numeric columns land in ``extra``."""
    reader = csv.DictReader(io.StringIO(text))
    if not reader.fieldnames or "Inferences/Second" not in reader.fieldnames:
        raise InvalidInput(
            f"not a perf_analyzer CSV: header {reader.fieldnames!r} lacks 'Inferences/Second'"
        )
    rows = []
    for line_no, record in enumerate(reader, start=2):
        if not any((value or "").strip() for value in record.values()):
            continue  # perf_analyzer may end the table with a blank line
        known: dict[str, float] = {}
        extra: dict[str, float] = {}
        for column, raw in record.items():
            if column is None or raw is None or not raw.strip():
                continue
            try:
                value = float(raw)
            except ValueError as exc:
                if column in _COLUMNS:
                    raise InvalidInput(
                        f"perf_analyzer CSV line {line_no}: column {column!r} has {raw!r}, "
                        "expected a number"
                    ) from exc
                continue
            if column in _COLUMNS:
                known[_COLUMNS[column]] = value
            else:
                extra[column] = value
        rows.append(PerfRow(**known, extra=extra))  # type: ignore[arg-type]
    return rows


def run_perf_analyzer(
    load: PerfLoad, *, executable: str | None = None, timeout_s: float | None = None
) -> PerfRow:
    """Run one load level and return its row; raises on errors, instability or overrun.

    The process gets SIGTERM at the deadline (``timeout_s``, default :meth:`PerfLoad.bound_s`)
    and SIGKILL if it lingers, so a stuck server cannot hold the benchmark.
    """
    command = [executable or locate()]
    with tempfile.TemporaryDirectory(prefix="perf-analyzer-") as tmp:
        csv_path = Path(tmp) / "result.csv"
        command += perf_analyzer_args(load, csv_path)
        output = _run_bounded(command, timeout_s or load.bound_s())
        if output.returncode != 0:
            kind = UnstableMeasurement if _UNSTABLE_MARK in output.stdout else PerfAnalyzerFailed
            raise kind(
                f"perf_analyzer on {load.model!r} at {load.url} ({load.protocol}, concurrency "
                f"{load.concurrency}) exited {output.returncode}: {_tail(output.stdout)}"
            )
        if not csv_path.is_file():
            raise PerfAnalyzerFailed(f"perf_analyzer wrote no CSV: {_tail(output.stdout)}")
        rows = parse_csv(csv_path.read_text(encoding="utf-8"))
    if len(rows) != 1:
        raise PerfAnalyzerFailed(f"expected one CSV row for one load level, got {len(rows)}")
    return rows[0]


def _run_bounded(command: list[str], timeout_s: float) -> subprocess.CompletedProcess[str]:
    process = subprocess.Popen(
        command,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        start_new_session=True,
    )
    deadline = time.monotonic() + timeout_s
    try:
        stdout, _ = process.communicate(timeout=max(deadline - time.monotonic(), 0.1))
    except subprocess.TimeoutExpired:
        _stop(process)
        raise PerfAnalyzerFailed(
            f"perf_analyzer ran past {timeout_s:.0f} s and was stopped: {' '.join(command)}"
        ) from None
    except BaseException:
        _stop(process)
        raise
    return subprocess.CompletedProcess(command, process.returncode, stdout, "")


def _stop(process: subprocess.Popen[str], grace_s: float = 5.0) -> None:
    """SIGTERM the process group, SIGKILL it if it is still there after ``grace_s``."""
    for sig in (signal.SIGTERM, signal.SIGKILL):
        try:
            os.killpg(process.pid, sig)
        except ProcessLookupError:
            return
        try:
            process.communicate(timeout=grace_s)
            return
        except subprocess.TimeoutExpired:
            continue


def _tail(text: str, lines: int = 8) -> str:
    return " | ".join(line.strip() for line in text.strip().splitlines()[-lines:])
