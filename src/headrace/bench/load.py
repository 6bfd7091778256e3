"""``headrace bench load``: perf_analyzer's measurement, with headrace's own load generator.

For each load point (a concurrency, or a request rate) the generator starts ``processes``
client processes (:mod:`headrace.bench.load_client`), splits the load between them, and
measures in windows of ``window_ms``: after each window it collects the requests every
process completed in it and reads the server's statistics endpoint. Once the last three
windows pass perf_analyzer's stability rule (:mod:`headrace.bench.load_stats`), or after
``max_trials`` windows, those three windows make the point's row: throughput, average and
p50/p90/p95/p99 latency, and the server-side breakdown per request (queue, compute input,
infer, output) from the statistics' change over the same windows. A point that never became
stable keeps its last three windows and says so (``stable: false``).

A decoupled model (any number of responses per request) is measured as perf_analyzer
measures one: over a gRPC stream only, each request asking for the empty final response,
latency to its last response with outputs, the request in flight until its final one, and the responses
per second beside the requests per second.

With ``generator="perf_analyzer"`` the same points run through NVIDIA's perf_analyzer
(:mod:`headrace.bench.perf_analyzer`) and its CSV becomes the same rows.
"""

from __future__ import annotations

import dataclasses
import functools
import multiprocessing
import os
import time
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from multiprocessing.connection import Connection
from typing import Any

from headrace.bench.load_client import Collected, WorkerPlan, worker_main
from headrace.bench.load_inputs import ModelTarget
from headrace.bench.load_stats import (
    STABLE_WINDOWS,
    Window,
    is_stable,
    summarize_windows,
)
from headrace.bench.perf_analyzer import (
    PerfAnalyzerFailed,
    PerfLoad,
    PerfRow,
    run_perf_analyzer,
)
from headrace.errors import InvalidConfig, Unavailable

__all__ = [
    "GRPC_STREAMS_PER_CONNECTION",
    "LoadPoint",
    "LoadResult",
    "LoadSettings",
    "fetch_target",
    "run_load",
    "split_address",
]

GRPC_STREAMS_PER_CONNECTION = 6
"""perf_analyzer's: tritonclient's C++ gRPC client puts up to 6 clients on one connection."""

_STAT_FIELDS = ("success", "queue", "compute_input", "compute_infer", "compute_output")
_WORKER_START_S = 60.0
_COLLECT_S = 30.0


@dataclass(frozen=True)
class LoadSettings:
    """One study: which server and model, over which protocol, measured how."""

    url: str
    model: str
    protocol: str = "http"
    streaming: bool = False
    model_version: str = ""
    batch_size: int = 1
    shapes: Mapping[str, Sequence[int]] = field(default_factory=dict)
    window_ms: int = 5000
    stability_percent: float = 10.0
    max_trials: int = 10
    processes: int = 4
    string_length: int = 128
    request_timeout_s: float = 60.0
    max_in_flight: int = 1024
    """Request-rate mode: the most outstanding requests per process before sends are skipped."""
    grpc_streams_per_connection: int = GRPC_STREAMS_PER_CONNECTION
    """gRPC: a worker process's requests in flight per HTTP/2 connection (1: one each)."""

    def __post_init__(self) -> None:
        if self.protocol not in ("http", "grpc"):
            raise InvalidConfig(f"--protocol must be http or grpc, got {self.protocol!r}")
        if self.streaming and self.protocol != "grpc":
            raise InvalidConfig("--streaming needs --protocol grpc")
        for label in (
            "batch_size",
            "window_ms",
            "max_trials",
            "processes",
            "max_in_flight",
            "grpc_streams_per_connection",
        ):
            if getattr(self, label) < 1:
                raise InvalidConfig(
                    f"--{label.replace('_', '-')} must be >= 1, got {getattr(self, label)}"
                )
        if self.max_trials < STABLE_WINDOWS:
            raise InvalidConfig(
                f"--max-trials must be >= {STABLE_WINDOWS} (the stability rule compares "
                f"{STABLE_WINDOWS} windows), got {self.max_trials}"
            )
        if not self.stability_percent > 0:
            raise InvalidConfig(f"--stability must be > 0, got {self.stability_percent}")

    @property
    def wire(self) -> str:
        """``http``, ``grpc`` or ``grpc-stream``."""
        return "grpc-stream" if self.streaming else self.protocol


@dataclass(frozen=True)
class LoadPoint:
    """A closed-loop concurrency or an open-loop request rate (exactly one is set)."""

    concurrency: int = 0
    request_rate: float = 0.0

    def __post_init__(self) -> None:
        if (self.concurrency > 0) == (self.request_rate > 0):
            raise InvalidConfig(
                f"a load point is a concurrency or a request rate, got {self.concurrency!r} "
                f"and {self.request_rate!r}"
            )


@dataclass(frozen=True)
class LoadResult:
    """One point's row; ``row`` is None when nothing could be measured (see ``error``)."""

    generator: str
    protocol: str
    batch_size: int
    point: LoadPoint
    row: PerfRow | None
    stable: bool
    windows: int = 0
    requests: int = 0
    errors: int = 0
    skipped: int = 0
    error: str = ""

    def as_dict(self) -> dict[str, Any]:
        data: dict[str, Any] = {
            "generator": self.generator,
            "protocol": self.protocol,
            "batch_size": self.batch_size,
            "concurrency": self.point.concurrency or None,
            "request_rate": self.point.request_rate or None,
            "stable": self.stable,
            "windows": self.windows,
            "requests": self.requests,
            "errors": self.errors,
            "skipped": self.skipped,
        }
        if self.error:
            data["error"] = self.error
        if self.row is not None:
            row = dataclasses.asdict(self.row)
            row.pop("concurrency")
            row.pop("request_rate")
            data.update(row)
        return data


def split_address(url: str) -> str:
    """``host:port`` from ``host:port`` or ``http://host:port[/]``."""
    address = url.split("://", 1)[-1].rstrip("/")
    if not address or "/" in address:
        raise InvalidConfig(f"URL must be host:port or http://host:port, got {url!r}")
    return address


def _client(settings: LoadSettings) -> Any:
    address = split_address(settings.url)
    if settings.protocol == "http":
        import tritonclient.http as httpclient

        return httpclient.InferenceServerClient(address, connection_timeout=30.0)
    import tritonclient.grpc as grpcclient

    return grpcclient.InferenceServerClient(address)


def fetch_target(settings: LoadSettings) -> ModelTarget:
    """The model's inputs and outputs from its metadata and config, on the study's protocol."""
    client = _client(settings)
    try:
        model, version = settings.model, settings.model_version
        try:
            if settings.protocol == "http":
                metadata = client.get_model_metadata(model, version)
                config = client.get_model_config(model, version)
            else:
                metadata = client.get_model_metadata(model, version, as_json=True)
                config = client.get_model_config(model, version, as_json=True)["config"]
        except Exception as exc:
            raise Unavailable(
                f"cannot read model {model!r} from {settings.url} ({settings.protocol}): {exc}"
            ) from exc
        decoupled = bool(config.get("model_transaction_policy", {}).get("decoupled", False))
        return ModelTarget.from_metadata(
            metadata,
            int(config.get("max_batch_size", 0)),
            version,
            settings.shapes,
            decoupled=decoupled,
        )
    finally:
        client.close()


def _read_stats(client: Any, settings: LoadSettings) -> dict[str, tuple[int, int]]:
    """Cumulative (count, ns) per statistic, summed over the model's versions."""
    if settings.protocol == "http":
        data = client.get_inference_statistics(settings.model, settings.model_version)
    else:
        data = client.get_inference_statistics(settings.model, settings.model_version, as_json=True)
    totals = dict.fromkeys(_STAT_FIELDS, (0, 0))
    for entry in data.get("model_stats", []):
        stats = entry.get("inference_stats", {})
        for name in _STAT_FIELDS:
            count, ns = totals[name]
            item = stats.get(name, {})
            totals[name] = (count + int(item.get("count", 0)), ns + int(item.get("ns", 0)))
    return totals


def _server_breakdown(
    before: dict[str, tuple[int, int]], after: dict[str, tuple[int, int]]
) -> dict[str, float]:
    """Microseconds per request of each statistic between two readings."""
    per_request = {}
    for name in _STAT_FIELDS:
        count = after[name][0] - before[name][0]
        ns = after[name][1] - before[name][1]
        per_request[name] = ns / count / 1000.0 if count > 0 else 0.0
    return per_request


def _plans(settings: LoadSettings, target: ModelTarget, point: LoadPoint) -> list[WorkerPlan]:
    base = WorkerPlan(
        target=target,
        address=split_address(settings.url),
        protocol=settings.protocol,
        streaming=settings.streaming,
        batch_size=settings.batch_size,
        max_in_flight=settings.max_in_flight,
        string_length=settings.string_length,
        timeout_s=settings.request_timeout_s,
        grpc_streams_per_connection=settings.grpc_streams_per_connection,
    )
    if point.concurrency:
        count = min(settings.processes, point.concurrency)
        shares = [
            point.concurrency // count + (1 if i < point.concurrency % count else 0)
            for i in range(count)
        ]
        return [dataclasses.replace(base, concurrency=c, seed=i) for i, c in enumerate(shares)]
    count = settings.processes
    rate = point.request_rate / count
    return [
        dataclasses.replace(base, rate=rate, rate_offset_s=i / point.request_rate, seed=i)
        for i in range(count)
    ]


@contextmanager
def _workers(plans: Sequence[WorkerPlan]) -> Iterator[list[Connection]]:
    """Client processes, ready to start; stopped (and joined) on the way out."""
    context = multiprocessing.get_context("spawn")
    processes, conns = [], []
    try:
        for plan in plans:
            parent, child = context.Pipe()
            process = context.Process(target=worker_main, args=(plan, child), daemon=True)
            process.start()
            child.close()
            processes.append(process)
            conns.append(parent)
        for conn in conns:
            _expect(conn, "ready", _WORKER_START_S)
        yield conns
    finally:
        for conn in conns:
            with _quiet():
                conn.send(("stop",))
        for conn, process in zip(conns, processes):
            with _quiet():
                _expect(conn, "stopped", 10.0)
            process.join(5.0)
            if process.is_alive():
                process.kill()
                process.join()


@contextmanager
def _quiet() -> Iterator[None]:
    try:
        yield
    except (OSError, EOFError, PerfAnalyzerFailed):
        pass


def _expect(conn: Connection, word: str, timeout_s: float) -> Any:
    if not conn.poll(timeout_s):
        raise PerfAnalyzerFailed(f"a load client process did not answer {word!r} in {timeout_s} s")
    answer = conn.recv()
    if isinstance(answer, tuple) and answer[:1] == ("failed",):
        raise PerfAnalyzerFailed(f"a load client process failed: {answer[1]}")
    if word and answer != word:
        raise PerfAnalyzerFailed(f"a load client process answered {answer!r}, not {word!r}")
    return answer


def _measure(settings: LoadSettings, target: ModelTarget, point: LoadPoint) -> LoadResult:
    """One point with headrace's generator: windows until stable or ``max_trials``."""
    stats_client = _client(settings)
    windows: list[Window] = []
    readings = []
    skipped = 0
    first_error = ""
    try:
        with _workers(_plans(settings, target, point)) as conns:
            for conn in conns:
                conn.send(("start",))
            start_ns = time.monotonic_ns()
            readings.append(_read_stats(stats_client, settings))
            window_ns = settings.window_ms * 1_000_000
            while len(windows) < settings.max_trials:
                end_ns = start_ns + window_ns
                remaining = (end_ns - time.monotonic_ns()) / 1e9
                if remaining > 0:
                    time.sleep(remaining)
                for conn in conns:
                    conn.send(("collect", end_ns))
                parts: list[Collected] = [_expect(conn, "", _COLLECT_S) for conn in conns]
                readings.append(_read_stats(stats_client, settings))
                duration_s = (end_ns - start_ns) / 1e9
                windows.append(_window(parts, duration_s, settings.batch_size, target.decoupled))
                skipped += sum(p.skipped for p in parts)
                first_error = first_error or next(
                    (p.first_error for p in parts if p.first_error), ""
                )
                start_ns = end_ns
                if is_stable(windows, settings.stability_percent):
                    break
    finally:
        stats_client.close()
    last = windows[-STABLE_WINDOWS:]
    summary = summarize_windows(last)
    server = _server_breakdown(readings[-len(last) - 1], readings[-1])
    in_server = sum(server[n] for n in _STAT_FIELDS if n != "success")
    row = PerfRow(
        throughput=summary.throughput,
        concurrency=float(point.concurrency),
        request_rate=float(point.request_rate),
        network_us=max(summary.avg_us - in_server, 0.0) if summary.requests else 0.0,
        server_queue_us=server["queue"],
        server_compute_input_us=server["compute_input"],
        server_compute_infer_us=server["compute_infer"],
        server_compute_output_us=server["compute_output"],
        p50_us=summary.percentiles_us[50],
        p90_us=summary.percentiles_us[90],
        p95_us=summary.percentiles_us[95],
        p99_us=summary.percentiles_us[99],
        avg_us=summary.avg_us,
        response_throughput=summary.response_throughput,
        extra={"server_request_us": server["success"]},
    )
    return LoadResult(
        generator="headrace",
        protocol=settings.wire,
        batch_size=settings.batch_size,
        point=point,
        row=row,
        stable=is_stable(windows, settings.stability_percent),
        windows=len(windows),
        requests=summary.requests,
        errors=summary.errors,
        skipped=skipped,
        error=first_error,
    )


def _window(
    parts: Sequence[Collected], duration_s: float, batch_size: int, decoupled: bool = False
) -> Window:
    import numpy as np

    latencies = np.concatenate([p.latencies_us for p in parts]) if parts else np.empty(0)
    responses = sum(p.responses for p in parts) if decoupled else None
    return Window(duration_s, latencies, batch_size, sum(p.errors for p in parts), responses)


def _measure_perf_analyzer(
    settings: LoadSettings, point: LoadPoint, executable: str | None
) -> LoadResult:
    load = PerfLoad(
        model=settings.model,
        url=split_address(settings.url),
        protocol=settings.protocol,
        concurrency=point.concurrency or 1,
        request_rate=point.request_rate or None,
        shapes=settings.shapes,
        measurement_ms=settings.window_ms,
        max_trials=settings.max_trials,
        stability_percent=settings.stability_percent,
        batch_size=settings.batch_size,
        streaming=settings.streaming,
        string_length=settings.string_length,
        model_version=settings.model_version,
    )
    common = functools.partial(
        LoadResult, "perf_analyzer", settings.wire, settings.batch_size, point
    )
    try:
        row = run_perf_analyzer(load, executable=executable)
    except PerfAnalyzerFailed as exc:
        return common(row=None, stable=False, error=str(exc))
    return common(row=row, stable=True)


def run_load(
    settings: LoadSettings,
    points: Sequence[LoadPoint],
    generator: str = "headrace",
    executable: str | None = None,
) -> Iterator[LoadResult]:
    """Measure each point in turn with ``generator`` (``headrace`` or ``perf_analyzer``)."""
    if generator not in ("headrace", "perf_analyzer"):
        raise InvalidConfig(f"generator must be headrace or perf_analyzer, got {generator!r}")
    target = fetch_target(settings) if generator == "headrace" else None
    if target is not None:
        if target.decoupled and not settings.streaming:
            raise InvalidConfig(
                f"model {settings.model!r} is decoupled (model_transaction_policy): it answers "
                "over a gRPC stream only; use --protocol grpc --streaming"
            )
        for spec in target.inputs:
            target.request_shape(spec, settings.batch_size)  # refuse a bad batch size up front
    for point in points:
        if target is not None:
            yield _measure(settings, target, point)
        else:
            yield _measure_perf_analyzer(settings, point, executable)


def default_processes() -> int:
    """min(4, usable cores): enough client processes that one core is not the limit."""
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    return max(1, min(4, cores or 1))
