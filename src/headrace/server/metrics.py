"""Prometheus metrics under Triton's names, on their own registry and port (default 8002).

Nothing is counted twice: at scrape time a collector reads each loaded version's
:class:`~headrace.server.statistics.VersionStatistics` snapshot and its scheduler's pending
count, so the request path never touches prometheus_client. Counters are exposed as Triton
exposes them, without the ``_total`` suffix prometheus_client would add, durations in
microseconds, labelled ``model`` and ``version``. Versions whose config enables
``response_cache`` also get Triton's ``nv_cache_*_per_model`` counters, and a server with a
response cache the cache-wide ``nv_cache_*`` gauges (read live at scrape time, where Triton
refreshes them every few seconds). GPU gauges (``nv_gpu_*``, labelled
``gpu_uuid``) appear when nvidia-ml-py finds a GPU.
"""

from __future__ import annotations

import asyncio
import json
import logging
import math
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass
from typing import Any

from headrace.errors import require
from headrace.scheduling.response_cache import CacheReport
from headrace.server.http.header_deadline import HeaderDeadline
from headrace.server.reports import ModelStatistics
from headrace.server.security import DEFAULT_HEADER_TIMEOUT_S, Restriction

__all__ = ["DEFAULT_METRICS_PORT", "MetricsEndpoint", "ServerMetrics", "VersionSample"]

DEFAULT_METRICS_PORT = 8002
_log = logging.getLogger(__name__)


@dataclass(frozen=True)
class VersionSample:
    """What the collector needs from one loaded model version."""

    stats: ModelStatistics
    failures: Mapping[str, int]
    pending: int
    response_cache: bool = False
    """Whether the version's config enables ``response_cache`` (Triton then exports its
    per-model cache counters, even when the server has no cache)."""


# (name, help, value taken from a ModelStatistics) for the per-version counters.
_COUNTERS: tuple[tuple[str, str, Callable[[ModelStatistics], float]], ...] = (
    (
        "nv_inference_request_success",
        "Number of successful inference requests, all batch sizes",
        lambda s: s.success.count,
    ),
    (
        "nv_inference_count",
        "Number of inferences performed (does not include cached requests)",
        lambda s: s.inference_count,
    ),
    (
        "nv_inference_exec_count",
        "Number of model executions performed (does not include cached requests)",
        lambda s: s.execution_count,
    ),
    (
        "nv_inference_request_duration_us",
        "Cumulative inference request duration in microseconds (includes cached requests)",
        lambda s: (s.success.ns + s.fail.ns) // 1000,
    ),
    (
        "nv_inference_queue_duration_us",
        "Cumulative inference queuing duration in microseconds (includes cached requests)",
        lambda s: s.queue.ns // 1000,
    ),
    (
        "nv_inference_compute_input_duration_us",
        "Cumulative compute input duration in microseconds (does not include cached requests)",
        lambda s: s.compute_input.ns // 1000,
    ),
    (
        "nv_inference_compute_infer_duration_us",
        "Cumulative compute inference duration in microseconds (does not include cached requests)",
        lambda s: s.compute_infer.ns // 1000,
    ),
    (
        "nv_inference_compute_output_duration_us",
        "Cumulative inference compute output duration in microseconds (does not include cached requests)",
        lambda s: s.compute_output.ns // 1000,
    ),
)


# (name, help, value taken from a ModelStatistics) for versions that enable response_cache.
_CACHE_COUNTERS: tuple[tuple[str, str, Callable[[ModelStatistics], float]], ...] = (
    ("nv_cache_num_hits_per_model", "Number of cache hits per model", lambda s: s.cache_hit.count),
    (
        "nv_cache_hit_duration_per_model",
        "Total cache hit duration per model, in microseconds",
        lambda s: s.cache_hit.ns // 1000,
    ),
    (
        "nv_cache_num_misses_per_model",
        "Number of cache misses per model",
        lambda s: s.cache_miss.count,
    ),
    (
        "nv_cache_miss_duration_per_model",
        "Total cache miss (insert+lookup) duration per model, in microseconds",
        lambda s: s.cache_miss.ns // 1000,
    ),
)

# (name, help, value taken from the server's CacheReport): Triton's cache-wide gauges.
_CACHE_GAUGES: tuple[tuple[str, str, Callable[[CacheReport], float]], ...] = (
    ("nv_cache_util", "Cache utilization [0.0 - 1.0]", lambda r: r.utilization),
    (
        "nv_cache_num_entries",
        "Number of responses stored in response cache",
        lambda r: r.entries,
    ),
    ("nv_cache_num_hits", "Number of cache hits in response cache", lambda r: r.hits),
    ("nv_cache_num_misses", "Number of cache misses in response cache", lambda r: r.misses),
    ("nv_cache_num_lookups", "Number of cache lookups in response cache", lambda r: r.lookups),
    (
        "nv_cache_num_evictions",
        "Number of cache evictions in response cache",
        lambda r: r.evictions,
    ),
    (
        "nv_cache_lookup_duration",
        "Total cache lookup duration (hit and miss), in microseconds",
        lambda r: r.lookup_ns // 1000,
    ),
    (
        "nv_cache_insertion_duration",
        "Total cache insertion duration, in microseconds",
        lambda r: r.insertion_ns // 1000,
    ),
)


class ServerMetrics:
    """A registry whose collector reads ``source()`` (one sample per loaded version) per scrape.

    ``cache()``, when given, reports the server's response cache (None: the server has none).
    """

    def __init__(
        self,
        source: Callable[[], Iterable[VersionSample]],
        *,
        gpu: bool = True,
        cache: Callable[[], CacheReport | None] | None = None,
    ) -> None:
        prometheus = require("prometheus_client", "serve")
        self._source = source
        self._cache = cache
        self._gpu = _GpuProbe() if gpu else None
        self.registry = prometheus.CollectorRegistry(auto_describe=False)
        self.registry.register(_Collector(self))

    def render(self) -> bytes:
        """The text exposition, with counters named exactly as Triton names them."""
        lines: list[str] = []
        for family in self.registry.collect():
            kind = family.type if family.type in ("counter", "gauge") else "untyped"
            lines.append(f"# HELP {family.name} {_escape_help(family.documentation)}")
            lines.append(f"# TYPE {family.name} {kind}")
            for sample in family.samples:
                if sample.name.endswith("_created"):
                    continue
                labels = ",".join(
                    f'{key}="{_escape_label(value)}"'
                    for key, value in sorted(sample.labels.items())
                )
                text = _format_value(sample.value)
                lines.append(
                    f"{family.name}{{{labels}}} {text}" if labels else f"{family.name} {text}"
                )
        return ("\n".join(lines) + "\n").encode("utf-8")

    def families(self) -> Iterator[Any]:
        """Build the metric families for one scrape (called by the collector)."""
        core = require("prometheus_client.core", "serve")
        samples = list(self._source())
        labels = ["model", "version"]
        for name, help_text, value in _COUNTERS:
            family = core.CounterMetricFamily(name, help_text, labels=labels)
            for sample in samples:
                family.add_metric([sample.stats.name, sample.stats.version], value(sample.stats))
            yield family
        failure = core.CounterMetricFamily(
            "nv_inference_request_failure",
            "Number of failed inference requests, all batch sizes",
            labels=["model", "reason", "version"],
        )
        pending = core.GaugeMetricFamily(
            "nv_inference_pending_request_count",
            "Instantaneous number of pending requests awaiting execution per-model.",
            labels=labels,
        )
        for sample in samples:
            for reason, count in sorted(sample.failures.items()):
                failure.add_metric([sample.stats.name, reason, sample.stats.version], count)
            pending.add_metric([sample.stats.name, sample.stats.version], sample.pending)
        yield failure
        yield pending
        yield from self._cache_families(core, samples)
        if self._gpu is not None:
            yield from self._gpu.families(core)

    def _cache_families(self, core: Any, samples: list[VersionSample]) -> Iterator[Any]:
        cached = [sample for sample in samples if sample.response_cache]
        if cached:
            for name, help_text, value in _CACHE_COUNTERS:
                family = core.CounterMetricFamily(name, help_text, labels=["model", "version"])
                for sample in cached:
                    family.add_metric(
                        [sample.stats.name, sample.stats.version], value(sample.stats)
                    )
                yield family
        report = self._cache() if self._cache is not None else None
        if report is not None:
            for name, help_text, gauge in _CACHE_GAUGES:
                yield core.GaugeMetricFamily(name, help_text, value=gauge(report))


class _Collector:
    """The prometheus_client collector protocol: ``collect()`` yields metric families."""

    def __init__(self, metrics: ServerMetrics) -> None:
        self._metrics = metrics

    def collect(self) -> Iterator[Any]:
        return self._metrics.families()


class _GpuProbe:
    """GPU utilisation and memory through NVML; silent and empty when there is none."""

    def __init__(self) -> None:
        self._nvml: Any = None
        self._handles: list[tuple[str, Any]] = []
        try:
            import pynvml  # nvidia-ml-py; optional

            pynvml.nvmlInit()
            for index in range(pynvml.nvmlDeviceGetCount()):
                handle = pynvml.nvmlDeviceGetHandleByIndex(index)
                uuid = pynvml.nvmlDeviceGetUUID(handle)
                self._handles.append((uuid.decode() if isinstance(uuid, bytes) else uuid, handle))
            self._nvml = pynvml
        except Exception as exc:  # ImportError, or NVML without a driver
            _log.debug("GPU metrics disabled: %s", exc)

    def families(self, core: Any) -> Iterator[Any]:
        if self._nvml is None or not self._handles:
            return
        nvml = self._nvml
        util = core.GaugeMetricFamily(
            "nv_gpu_utilization", "GPU utilization rate [0.0 - 1.0)", labels=["gpu_uuid"]
        )
        total = core.GaugeMetricFamily(
            "nv_gpu_memory_total_bytes", "GPU total memory, in bytes", labels=["gpu_uuid"]
        )
        used = core.GaugeMetricFamily(
            "nv_gpu_memory_used_bytes", "GPU used memory, in bytes", labels=["gpu_uuid"]
        )
        for uuid, handle in self._handles:
            try:
                rates = nvml.nvmlDeviceGetUtilizationRates(handle)
                memory = nvml.nvmlDeviceGetMemoryInfo(handle)
            except Exception as exc:
                _log.debug("NVML query for %s failed: %s", uuid, exc)
                continue
            util.add_metric([uuid], rates.gpu / 100.0)
            total.add_metric([uuid], float(memory.total))
            used.add_metric([uuid], float(memory.used))
        yield from (util, total, used)


class MetricsEndpoint:
    """Serves ``GET /metrics`` on its own port with aiohttp; port 0 binds any free port."""

    def __init__(
        self,
        metrics: ServerMetrics,
        host: str = "127.0.0.1",
        port: int = 8002,
        restriction: Restriction | None = None,
        header_timeout_s: float = DEFAULT_HEADER_TIMEOUT_S,
    ) -> None:
        """``restriction``: a header and value every scrape must carry (``--metrics-restricted``),
        refused with 403 as the HTTP door refuses a restricted API. ``header_timeout_s``
        (``--http-header-timeout``) cuts off a scraper slow to send its headers, as on the
        HTTP door: the port is as reachable as the others."""
        self.metrics = metrics
        self.host = host
        self.port = port
        self._restriction = restriction
        self._header_timeout_s = header_timeout_s
        self._deadlines: dict[Any, HeaderDeadline] = {}
        self._runner: Any = None
        self._listener: asyncio.AbstractServer | None = None

    async def start(self) -> None:
        web = require("aiohttp.web", "serve")
        deadlines = self._deadlines

        @web.middleware
        async def headers_in(request: Any, handler: Any) -> Any:
            deadline = deadlines.get(request.protocol)
            if deadline is None:
                return await handler(request)
            deadline.request_started()
            try:
                return await handler(request)
            finally:
                deadline.request_ended()

        app = web.Application(middlewares=[headers_in])
        app.router.add_get("/metrics", self._handle)
        runner = web.AppRunner(app, access_log=None)
        await runner.setup()
        server = runner.server
        assert server is not None  # setup() made it
        timeout = self._header_timeout_s
        try:
            listener = await asyncio.get_running_loop().create_server(
                lambda: HeaderDeadline(server, timeout, deadlines),
                self.host,
                self.port,
                reuse_address=True,
            )
        except BaseException:
            await runner.cleanup()
            raise
        self._runner, self._listener = runner, listener
        self.port = int(listener.sockets[0].getsockname()[1])

    async def stop(self, grace_s: float | None = None) -> None:
        """Close the port; a scrape is quick, so ``grace_s`` is only for the door protocol."""
        runner, self._runner = self._runner, None
        listener, self._listener = self._listener, None
        if listener is not None:
            listener.close()
        if runner is None:
            return
        server = runner.server
        if server is not None:
            server.pre_shutdown()
            await server.shutdown(grace_s if grace_s is not None else 1.0)
        await runner.cleanup()

    async def _handle(self, request: Any) -> Any:
        web = require("aiohttp.web", "serve")
        restriction = self._restriction
        if restriction is not None and not restriction.allows(
            request.headers.get(restriction.header)
        ):
            message = f"This API is restricted, expecting header '{restriction.header}'"
            return web.Response(status=403, text=json.dumps({"error": message}))
        return web.Response(
            body=self.metrics.render(),
            headers={"Content-Type": "text/plain; version=0.0.4; charset=utf-8"},
        )


def _escape_help(text: str) -> str:
    return text.replace("\\", r"\\").replace("\n", r"\n")


def _escape_label(value: str) -> str:
    return value.replace("\\", r"\\").replace("\n", r"\n").replace('"', r"\"")


def _format_value(value: float) -> str:
    if math.isfinite(value) and value == int(value) and abs(value) < 2**53:
        return str(int(value))
    return {math.inf: "+Inf", -math.inf: "-Inf"}.get(value, repr(float(value)))
