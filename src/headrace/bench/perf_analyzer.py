"""Drive NVIDIA's ``perf_analyzer`` and read its CSV, server-side breakdown included.

perf_analyzer is the load generator every Triton-compatible server is judged with, so the
serving benchmarks use it as the one client for all systems. It is a separate C++ tool (this
project installs it with ``../shared/tools/perf-analyzer``); :func:`locate` finds it.

A sequence model (``sequence_batching``) gets perf_analyzer's sequences: each concurrent slot
runs one sequence at a time, ``sequence_length`` requests long (give or take
``sequence_length_variation`` percent), START on the first and END on the last, with ids from
``sequence_id_range``. perf_analyzer sends integer ids only, so a model whose CORRID control
is TYPE_STRING cannot be driven by it. :func:`write_input_data` writes its JSON input data:
several streams of steps, and with ``expected`` outputs perf_analyzer checks every response.

The CSV (``-f FILE``) has one row per load level. Its server columns (queue, compute
input/infer/output) come from the server's statistics endpoint, so a server that reports them
wrongly shows up here. Times in the CSV are microseconds; :class:`PerfRow` keeps them so.
"""

from __future__ import annotations

import csv
import io
import json
import os
import shutil
import signal
import subprocess
import tempfile
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

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
    "write_input_data",
]

ENV_VAR = "HEADRACE_PERF_ANALYZER"
_TOOL_RELATIVE = Path("shared") / "tools" / "perf-analyzer"
_UNSTABLE_MARK = "Failed to obtain stable measurement"
_ERROR_MARK = " had error: "
"""How perf_analyzer reports a failed request ("Thread [3] had error: ..."); it exits 0 when
the failures came after its last measurement window (while it ends open sequences)."""
_INPUT_DATA_KINDS = ("zero", "random")
_MAX_SEQUENCE_ID = 2**31 - 1
"""The largest id perf_analyzer 2.51 reads in ``--sequence-id-range`` (it parses with stoi)."""

#: CSV header -> PerfRow field; perf_analyzer 2.x names, times in microseconds.
_COLUMNS = {
    "Concurrency": "concurrency",
    "Request Rate": "request_rate",
    "Inferences/Second": "throughput",
    "Response Throughput": "response_throughput",
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
    response_throughput: float | None = None
    """Responses per second of a decoupled model (None for others)."""
    extra: Mapping[str, float] = field(default_factory=dict)


@dataclass(frozen=True)
class PerfLoad:
    """One perf_analyzer run: a model, a server, a protocol and one concurrency level.

    ``stability_percent`` and ``max_trials`` bound the run: at most ``max_trials`` windows of
    ``measurement_ms`` each, after which an unstable level raises :class:`UnstableMeasurement`.
    The ``sequence_*`` settings matter only for sequence models; ``None`` leaves perf_analyzer's
    default (20 requests, 20 % variation, ids from 1 without bound).
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
    sync: bool = False
    """One thread per concurrent request, each waiting for its answer (``--sync``).
    perf_analyzer runs sequence models asynchronously otherwise, and when it stops it sends
    each open sequence's END request without waiting for the request in flight: over HTTP
    (several connections) the END can overtake it, a failed request that is the client's
    doing. Synchronous runs have no such race."""
    sequence_length: int | None = None
    """Requests per sequence (``--sequence-length``); with ``input_data`` from a file, the
    steps of its streams when None."""
    sequence_length_variation: float | None = None
    """How far, in percent, a sequence's length strays from ``sequence_length``
    (``--sequence-length-variation``)."""
    sequence_id_range: tuple[int, int | None] | None = None
    """Sequence ids ``start`` to ``end`` (excluded), ``--sequence-id-range``; both at most
    2**31 - 1, the most perf_analyzer 2.51 reads. ``end`` None goes up to that limit (a range
    given without an end makes 2.51 fail at random). perf_analyzer refuses a range smaller
    than the concurrency; one barely larger lets it send id 0 now and then (a slot that starts
    late and finds its next id taken falls back to its previous one, 0), which servers refuse
    as Triton does, so leave room."""
    request_rate: float | None = None
    """Open loop at this many requests per second (``--request-rate-range``) instead of
    ``concurrency`` requests in flight."""
    string_length: int | None = None
    """Characters of each random BYTES element (``--string-length``; perf_analyzer's 128)."""
    model_version: str = ""
    """``-x``; empty leaves the server's choice."""
    input_data: str | os.PathLike[str] | None = None
    """``"zero"``, ``"random"`` (perf_analyzer's default) or a JSON file or directory of
    values (``--input-data``); see :func:`write_input_data`."""

    def __post_init__(self) -> None:
        if self.protocol not in ("grpc", "http"):
            raise InvalidConfig(f"protocol must be 'grpc' or 'http', got {self.protocol!r}")
        if self.streaming and self.protocol != "grpc":
            raise InvalidConfig("streaming loads need protocol 'grpc'")
        if self.streaming and self.sync:
            raise InvalidConfig("streaming loads are asynchronous: sync=True cannot stream")
        for label in ("concurrency", "measurement_ms", "max_trials", "batch_size"):
            if getattr(self, label) < 1:
                raise InvalidConfig(f"{label} must be >= 1, got {getattr(self, label)}")
        if self.request_rate is not None and not self.request_rate > 0:
            raise InvalidConfig(f"--request-rate must be > 0, got {self.request_rate}")
        if self.string_length is not None and self.string_length < 1:
            raise InvalidConfig(f"--string-length must be >= 1, got {self.string_length}")
        if self.sequence_length is not None and self.sequence_length < 1:
            raise InvalidConfig(f"sequence_length must be >= 1, got {self.sequence_length}")
        variation = self.sequence_length_variation
        if variation is not None and not variation >= 0:
            raise InvalidConfig(f"sequence_length_variation is a percentage >= 0, got {variation}")
        if self.sequence_id_range is not None:
            self._check_id_range(*self.sequence_id_range)
        if self.input_data is not None and not os.fspath(self.input_data):
            raise InvalidConfig(
                "input_data must be 'zero', 'random' or a path, got an empty string"
            )

    def _check_id_range(self, start: int, end: int | None) -> None:
        shown = f"sequence_id_range {(start, end)!r}"
        if not 1 <= start < _MAX_SEQUENCE_ID:
            raise InvalidConfig(
                f"{shown} must start at an id from 1 to 2**31 - 2 (0 is no sequence; "
                "perf_analyzer reads no id past 2**31 - 1)"
            )
        last = _MAX_SEQUENCE_ID if end is None else end
        if not start < last <= _MAX_SEQUENCE_ID:
            raise InvalidConfig(f"{shown} must end after its start, at 2**31 - 1 at most")
        if last - start < self.concurrency:
            raise InvalidConfig(
                f"{shown} holds {last - start} ids, fewer than concurrency {self.concurrency}: "
                "concurrent sequences would share ids (perf_analyzer refuses it)"
            )

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
        *(
            ["--request-rate-range", f"{load.request_rate:g}"]
            if load.request_rate is not None
            else ["--concurrency-range", str(load.concurrency)]
        ),
        "--measurement-mode",
        "time_windows",
        "--verbose-csv",  # adds Avg latency (and the client's own split) to the CSV
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
    if load.model_version:
        args += ["-x", load.model_version]
    if load.string_length is not None:
        args += ["--string-length", str(load.string_length)]
    if load.input_data is not None:
        args += ["--input-data", os.fspath(load.input_data)]
    if load.sequence_length is not None:
        args += ["--sequence-length", str(load.sequence_length)]
    if load.sequence_length_variation is not None:
        args += ["--sequence-length-variation", f"{load.sequence_length_variation:g}"]
    if load.sequence_id_range is not None:
        start, end = load.sequence_id_range
        args += ["--sequence-id-range", f"{start}:{end if end is not None else _MAX_SEQUENCE_ID}"]
    if load.sync:
        args.append("--sync")
    if load.streaming:
        args.append("--streaming")
    return args


def write_input_data(
    path: str | os.PathLike[str],
    streams: Sequence[Sequence[Mapping[str, Any]]],
    expected: Sequence[Sequence[Mapping[str, Any]]] | None = None,
) -> Path:
    """Write perf_analyzer's JSON input data (``--input-data PATH``) and return ``PATH``.

    ``streams`` holds streams of steps, each step one request's inputs (name -> array of one
    request, no batch dimension); a sequence model gets one stream per sequence, taken in
    turn, a step per request. ``expected`` (the same layout, outputs) makes perf_analyzer
    compare each response with it; an empty step checks nothing. What perf_analyzer 2.51 does
    shapes how to use it: a sequence model's streams must have one length (with several it
    mixes up the steps); when it stops, it ends each open sequence with one request carrying
    the *last* step, whatever step the sequence had reached, so a stateful model's last step
    is best left unchecked (empty); and over HTTP it wants every output at every step, so
    there a stateful model is best given no ``expected`` at all.
    """
    lengths = {len(stream) for stream in streams}
    if not streams or 0 in lengths:
        raise InvalidConfig("input data needs at least one stream of at least one step")
    if len(lengths) > 1:
        raise InvalidConfig(
            f"input data streams have {sorted(lengths)} steps; perf_analyzer needs one length"
        )
    document: dict[str, Any] = {"data": [[_step(step) for step in stream] for stream in streams]}
    if expected is not None:
        shape = [len(stream) for stream in expected]
        if shape != [len(stream) for stream in streams]:
            raise InvalidConfig(
                f"expected outputs have {shape} steps per stream, the inputs "
                f"{[len(stream) for stream in streams]}"
            )
        document["validation_data"] = [[_step(step) for step in stream] for stream in expected]
    target = Path(path)
    target.write_text(json.dumps(document), encoding="utf-8")
    return target


def _step(tensors: Mapping[str, Any]) -> dict[str, Any]:
    """One step's tensors as perf_analyzer's JSON takes them: flat content and a shape."""
    step = {}
    for name, value in tensors.items():
        array = np.asarray(value)
        if array.dtype.kind in "OSU":
            content: list[Any] = [
                item.decode("utf-8") if isinstance(item, bytes) else str(item)
                for item in array.reshape(-1)
            ]
        elif array.dtype.kind in "biuf":
            content = array.reshape(-1).tolist()
        else:
            raise InvalidConfig(f"input data tensor {name!r} has unsupported dtype {array.dtype}")
        step[name] = {"content": content, "shape": list(array.shape)}
    return step


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
    _check_input_data(load.input_data)
    command = [executable or locate()]
    with tempfile.TemporaryDirectory(prefix="perf-analyzer-") as tmp:
        csv_path = Path(tmp) / "result.csv"
        command += perf_analyzer_args(load, csv_path)
        output = _run_bounded(command, timeout_s or load.bound_s())
        where = f"perf_analyzer on {load.model!r} at {load.url} ({load.protocol}, " + (
            f"request rate {load.request_rate:g}/s)"
            if load.request_rate is not None
            else f"concurrency {load.concurrency})"
        )
        if output.returncode != 0:
            kind = UnstableMeasurement if _UNSTABLE_MARK in output.stdout else PerfAnalyzerFailed
            raise kind(f"{where} exited {output.returncode}: {_tail(output.stdout)}")
        errors = [line.strip() for line in output.stdout.splitlines() if _ERROR_MARK in line]
        if errors:
            raise PerfAnalyzerFailed(
                f"{where} measured, then reported {len(errors)} failed request(s): "
                + " | ".join(errors[:8])
            )
        if not csv_path.is_file():
            raise PerfAnalyzerFailed(f"perf_analyzer wrote no CSV: {_tail(output.stdout)}")
        rows = parse_csv(csv_path.read_text(encoding="utf-8"))
    if len(rows) != 1:
        raise PerfAnalyzerFailed(f"expected one CSV row for one load level, got {len(rows)}")
    return rows[0]


def _check_input_data(input_data: str | os.PathLike[str] | None) -> None:
    if input_data is None or os.fspath(input_data) in _INPUT_DATA_KINDS:
        return
    if not Path(input_data).exists():
        raise InvalidConfig(
            f"input_data {os.fspath(input_data)!r} is neither 'zero', 'random' nor an existing "
            "file or directory"
        )


def _run_bounded(command: list[str], timeout_s: float) -> subprocess.CompletedProcess[str]:
    process = subprocess.Popen(  # noqa: S603 - the perf_analyzer the user named
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
