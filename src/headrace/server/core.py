"""The protocol-free inference core: inference, readiness, metadata and statistics.

The HTTP and gRPC frontends are thin: they parse the wire format into
:mod:`headrace.types`, call one method here, and map :mod:`headrace.errors` to statuses.
Everything async here runs on the one asyncio loop that also runs the frontends; model
execution happens on instance threads.

A request becomes a :class:`~headrace.types.WorkItem` with a response sink here: a future
for :meth:`InferenceServer.infer` (one response), a stream for :meth:`InferenceServer.stream`
(decoupled models answer zero or more times, then final). Which models serve, and their
lifecycle, is the :class:`~headrace.server.models.registry.ModelRegistry`'s concern; this class
delegates model control to it.
"""

from __future__ import annotations

import asyncio
import logging
import os
import weakref
from collections.abc import AsyncIterator, Iterable, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from headrace.backends.base import BackendFactory
from headrace.config import ModelConfig, output_specs
from headrace.errors import (
    HeadraceError,
    InternalError,
    InvalidConfig,
    InvalidInput,
    MissingDependency,
    ModelNotFound,
    Unavailable,
    Unsupported,
)
from headrace.scheduling.backlog import StreamBacklog
from headrace.scheduling.response_cache import CacheReport
from headrace.scheduling.sinks import FutureSink, StreamSink
from headrace.server.log_settings import LogControl
from headrace.server.memory import SharedMemoryRegistry
from headrace.server.metrics import VersionSample
from headrace.server.models.registry import ModelControlMode, ModelRegistry
from headrace.server.models.table import LoadedVersion, ModelState
from headrace.server.options import ServerOptions
from headrace.server.reports import (
    BatchStatistics,
    Duration,
    ModelMetadata,
    ModelStatistics,
    RepositoryIndexEntry,
    ServerMetadata,
)
from headrace.server.tracing import RequestTrace, TraceControl
from headrace.server.validation import validate_request
from headrace.types import InferenceRequest, InferenceResponse, WorkItem

if TYPE_CHECKING:
    from headrace.repository import ModelRepository
    from headrace.server.access_log import AccessLog

__all__ = [
    "BatchStatistics",
    "Duration",
    "InferenceServer",
    "ModelControlMode",
    "ModelMetadata",
    "ModelStatistics",
    "RepositoryIndexEntry",
    "ServerMetadata",
    "ServerOptions",
    "StreamedResponse",
]

_EXTENSIONS = (
    "binary_tensor_data",
    "logging",
    "model_configuration",
    "model_repository",
    "model_repository(unload_dependents)",
    "parameters",
    "schedule_policy",
    "sequence",
    "statistics",
    "system_shared_memory",
    "trace",
)
_CUDA_EXTENSION = "cuda_shared_memory"
"""Listed only where CUDA shared memory can be registered (a CUDA device and cuda-python)."""
_log = logging.getLogger(__name__)


class InferenceServer:
    """The inference core of one server process; models are the registry's."""

    access_log: AccessLog | None = None
    """With ``--log-requests``, where each door writes one line per answered request."""

    def __init__(
        self,
        repository: ModelRepository | str | os.PathLike[str] | None = None,
        *,
        model_control_mode: ModelControlMode = "none",
        load_models: Iterable[str] = (),
        options: ServerOptions | None = None,
    ) -> None:
        self.options = options or ServerOptions()
        self.models = ModelRegistry(
            repository, mode=model_control_mode, load_models=load_models, options=self.options
        )
        self._table = self.models.table  # routing is a dict lookup on the hot path
        self.shared_memory = SharedMemoryRegistry(self.options.max_shared_memory_regions)
        """The shared memory regions clients registered; the doors read and write through it."""
        self._started = False
        self._stopping = False
        self._stopped = False
        self._in_flight = 0
        self._drained = asyncio.Event()
        # Operability (Triton's v2/logging and v2/trace/setting, --log-requests): held here so
        # both doors serve the same settings; ``headrace serve`` installs its own.
        self.log_control = LogControl()
        self.tracing = TraceControl(known=self.knows_model)
        self._backlogs: weakref.WeakSet[StreamBacklog] = weakref.WeakSet()

    @property
    def mode(self) -> ModelControlMode:
        return self.models.mode

    @property
    def load_models(self) -> tuple[str, ...]:
        return self.models.load_models

    # -- lifecycle --------------------------------------------------------------------------

    async def start(self) -> None:
        """Load the startup models (per mode) and start polling in ``poll`` mode."""
        if self._started:
            return
        await self.models.start()
        self._started = True

    def stop_accepting(self) -> None:
        """Refuse new requests from now on (Unavailable); accepted ones run on. The first
        step of a shutdown, taken at once on a signal, before the doors drain."""
        self._stopping = True

    @property
    def in_flight(self) -> int:
        """Inference requests accepted and not yet answered (both doors, streams included)."""
        return self._in_flight

    async def wait_drained(self) -> None:
        """Return once no inference request is in flight (after :meth:`stop_accepting`)."""
        if self._in_flight:
            self._drained.clear()
            await self._drained.wait()

    def _done_one(self) -> None:
        self._in_flight -= 1
        if not self._in_flight:
            self._drained.set()

    async def stop(self) -> None:
        """Refuse new requests, drain every model's accepted ones, and unload everything."""
        if self._stopped:
            return
        self._stopped = self._stopping = True
        await self.models.stop()
        self.shared_memory.clear()
        self.tracing.close()

    def live(self) -> bool:
        return not self._stopping

    def ready(self) -> bool:
        """Started, not stopping, and (strict readiness) every model known is READY."""
        if not self._started or self._stopping:
            return False
        return not self.options.strict_readiness or self.models.all_ready()

    # -- inference --------------------------------------------------------------------------

    async def infer(
        self, request: InferenceRequest, *, endpoint: str = "this endpoint"
    ) -> InferenceResponse:
        """Validate, schedule and execute one request with one response.

        Raises headrace.errors on failure. A decoupled model answers through :meth:`stream`
        only; ``endpoint`` names the caller in the error that says so.
        """
        loaded = self._route(request)
        if loaded.decoupled:
            raise Unsupported(
                f"{endpoint} doesn't support models with decoupled transaction policy"
            )
        sink = FutureSink(asyncio.get_running_loop())
        item = WorkItem.from_request(request, sink)
        trace = self._trace(item, loaded) if self.tracing.on else None
        self._in_flight += 1
        try:
            try:
                ticket = loaded.scheduler.submit(item)
            except BaseException as exc:
                raise self._failed(loaded, exc, queued=False) from None
            try:
                outputs = await sink.future
            except asyncio.CancelledError:
                loaded.scheduler.withdraw(ticket)
                loaded.stats.record_failure_reason("CANCELED")
                raise
            except BaseException as exc:
                raise self._failed(loaded, exc) from None
        finally:
            self._done_one()
            if trace is not None:
                trace.end()
        return InferenceResponse(
            model_name=loaded.name,
            model_version=loaded.label,
            outputs=_select_outputs(outputs, request, loaded),
            id=request.id,
        )

    def stream_backlog(self) -> StreamBacklog:
        """A new bound on one stream's responses waiting for its client, as the options say.

        A door that runs several requests on one stream passes the same one to :meth:`stream`
        for each and releases every response it has handed to the client's transport.
        """
        backlog = StreamBacklog(
            self.options.max_stream_pending_responses, self.options.stream_send_timeout_s
        )
        self._backlogs.add(backlog)
        return backlog

    def stream_backlogs(self) -> list[StreamBacklog]:
        """The backlogs of the streams open now (for tests and diagnosis)."""
        return list(self._backlogs)

    async def stream(
        self, request: InferenceRequest, backlog: StreamBacklog | None = None
    ) -> AsyncIterator[StreamedResponse]:
        """Validate, schedule and execute one request, yielding every response it gets.

        A plain model yields one final response (or error). A decoupled model yields what it
        sends, in order, the last one final; an error response carries ``error`` (the
        request's statistics count it as failed), a final flag sent without a response has
        neither ``response`` nor ``error``. Routing and validation errors are raised before
        anything is yielded.

        Without ``backlog`` the request gets its own (:meth:`stream_backlog`), and a response
        counts as read once the caller asks for the next: a caller that writes each response
        before asking (the SSE writer awaits its transport) bounds what is held for a client
        that stops reading. With ``backlog`` the caller releases each response itself.
        """
        loaded = self._route(request)
        owned = backlog is None
        sink = StreamSink(asyncio.get_running_loop(), backlog or self.stream_backlog())
        item = WorkItem.from_request(request, sink)
        trace = self._trace(item, loaded) if self.tracing.on else None
        try:
            ticket = loaded.scheduler.submit(item)
        except BaseException as exc:
            if trace is not None:
                trace.end()
            raise self._failed(loaded, exc, queued=False) from None
        finished = False
        self._in_flight += 1
        try:
            async for sent in sink.responses():
                finished = sent.final
                if sent.error is not None:
                    yield StreamedResponse(None, sent.final, self._failed(loaded, sent.error))
                elif sent.outputs is None:
                    yield StreamedResponse(None, sent.final)
                else:
                    response = self._response(loaded, request, sent.outputs, sent.parameters)
                    yield StreamedResponse(response, sent.final)
                if owned:
                    sink.backlog.release()
        except (asyncio.CancelledError, GeneratorExit):
            sink.close()
            if owned:
                sink.backlog.close()
            if not finished:
                loaded.scheduler.withdraw(ticket)
                loaded.stats.record_failure_reason("CANCELED")
            raise
        finally:
            self._done_one()
            if trace is not None:
                trace.end()

    def _trace(self, item: WorkItem, loaded: LoadedVersion) -> RequestTrace | None:
        """Sample ``item`` for tracing; a sampled item carries its trace, queued from now."""
        trace = self.tracing.sample(loaded.name, loaded.version, item.request_id)
        if trace is not None:
            item.trace = trace
            trace.stamp("QUEUE_START")
        return trace

    def is_decoupled(self, name: str, version: str = "") -> bool:
        """Whether the model answers a request with any number of responses (decoupled)."""
        return self.models.route(name, version).decoupled

    def knows_model(self, name: str) -> bool:
        """Whether ``name`` is a model of this server (in its repository, registered or loaded)."""
        return self.models.table.get(name) is not None or name in self.models.known_names()

    def _route(self, request: InferenceRequest) -> LoadedVersion:
        """The serving version ``request`` goes to, with the request validated against it."""
        if self._stopping:
            raise Unavailable("server is shutting down; no new requests are accepted")
        loaded = self._table.resolve(request.model_name, request.model_version)
        validate_request(request, loaded.signature)  # a refused request counts nowhere (Triton)
        return loaded

    def _failed(
        self, loaded: LoadedVersion, exc: BaseException, *, queued: bool = True
    ) -> BaseException:
        """Count a failed request and return the error to raise (internal ones wrapped).

        Neither a request refused before it was queued (``queued`` False, InvalidInput: the
        sequence batcher's and the batch size's refusals) nor an error the model answered
        with counts as a failure, as in the model's statistics
        (:func:`headrace.scheduling.base.ran`)."""
        refused = queued is False and isinstance(exc, InvalidInput)
        if not refused and not getattr(exc, "answered", False):
            loaded.stats.record_failure_reason(_failure_reason(exc))
        if isinstance(exc, HeadraceError) or not isinstance(exc, Exception):
            return exc
        error = InternalError(
            f"model '{loaded.name}' version {loaded.version} failed: {type(exc).__name__}: {exc}"
        )
        error.__cause__ = exc
        return error

    def _response(
        self,
        loaded: LoadedVersion,
        request: InferenceRequest,
        outputs: Mapping[str, Any],
        parameters: Mapping[str, Any] | None = None,
    ) -> InferenceResponse:
        return InferenceResponse(
            model_name=loaded.name,
            model_version=loaded.label,
            outputs=_select_outputs(outputs, request, loaded),
            id=request.id,
            parameters=parameters or {},
        )

    # -- health and metadata ----------------------------------------------------------------

    def model_ready(self, name: str, version: str = "") -> bool:
        """Loaded, and (instances as Ray actors) at least one instance's actor is alive."""
        try:
            loaded = self.models.route(name, version)
        except HeadraceError:
            return False
        return not self._stopping and bool(getattr(loaded.pool, "alive", True))

    def server_metadata(self) -> ServerMetadata:
        from headrace import __version__

        extensions: tuple[str, ...] = _EXTENSIONS
        if self.shared_memory.cuda_supported:
            extensions = tuple(sorted((*extensions, _CUDA_EXTENSION)))
        return ServerMetadata(name=self.options.name, version=__version__, extensions=extensions)

    def model_metadata(self, name: str, version: str = "") -> ModelMetadata:
        loaded = self.models.route(name, version)
        record = self.models.table.record(name)
        config = loaded.config
        return ModelMetadata(
            name=name,
            versions=tuple(str(v) for v in sorted(record.versions)),
            platform=config.platform or config.backend,
            inputs=tuple(loaded.signature.inputs.values()),
            outputs=tuple(output_specs(config)),
            batched=loaded.signature.batched,
        )

    def model_config(self, name: str, version: str = "") -> ModelConfig:
        config = ModelConfig()
        config.CopyFrom(self.models.route(name, version).config)
        return config

    def statistics(self, name: str = "", version: str = "") -> list[ModelStatistics]:
        """Statistics of every serving version, of one model, or of one model version."""
        if not name:
            return [loaded.stats.snapshot() for loaded in self._sorted_loaded()]
        unavailable = f"requested model '{name}' is not available"  # Triton's words (400)
        if version:
            try:
                return [self.models.route(name, version).stats.snapshot()]
            except ModelNotFound as exc:
                raise InvalidInput(
                    f"requested model version is not available for model '{name}': {exc.message}"
                ) from exc
        record = self.models.table.get(name)
        if record is None:
            raise InvalidInput(unavailable)
        return [record.versions[v].stats.snapshot() for v in sorted(record.versions)]

    def metric_samples(self) -> list[VersionSample]:
        """One sample per serving version, for :class:`~headrace.server.metrics.ServerMetrics`."""
        return [
            VersionSample(
                stats=loaded.stats.snapshot(),
                failures=loaded.stats.failures(),
                pending=loaded.scheduler.pending,
                response_cache=loaded.config.response_cache.enable,
            )
            for loaded in self._sorted_loaded()
        ]

    def cache_report(self) -> CacheReport | None:
        """The server's response cache counters (None without ``--cache-config``)."""
        cache = self.models.cache
        return None if cache is None else cache.report()

    def loaded_versions(self) -> list[LoadedVersion]:
        """Every serving version, sorted by model name and version."""
        return self._sorted_loaded()

    def repository_index(self, ready_only: bool = False) -> list[RepositoryIndexEntry]:
        """Every model the server knows (repository and registered), with Triton's states."""
        names = self.models.known_names()
        index: list[RepositoryIndexEntry] = []
        for name in sorted(names):
            record = self.models.table.get(name)
            if record is not None and record.versions:
                state = ModelState.READY if record.state == ModelState.READY else record.state
                index.extend(
                    RepositoryIndexEntry(
                        name, str(v), state, "" if state == "READY" else record.reason
                    )
                    for v in sorted(record.versions)
                )
            elif record is not None and record.idle_versions:
                index.extend(
                    RepositoryIndexEntry(
                        name, str(v), record.state, record.idle_reasons.get(v, record.reason)
                    )
                    for v in record.idle_versions
                )
            elif record is not None:
                index.append(RepositoryIndexEntry(name, "", record.state, record.reason))
            elif (problem := self.models.problem(name)) is not None:
                index.append(RepositoryIndexEntry(name, "", ModelState.UNAVAILABLE, problem))
            else:
                index.append(RepositoryIndexEntry(name, "", "", ""))
        if ready_only:
            index = [entry for entry in index if entry.state == ModelState.READY]
        return index

    # -- model control (the registry's) ----------------------------------------------------

    async def load_model(
        self, name: str, config: str | None = None, files: dict[str, bytes] | None = None
    ) -> None:
        """Load or reload; a failed reload keeps the old version serving.

        A model that fails as it is built is refused in Triton's words (INVALID_ARGUMENT,
        HTTP 400): ``load failed for model 'NAME': ...``; see ModelRegistry.load for the rest.
        """
        try:
            await self.models.load(name, config, files)
        except (InvalidConfig, InternalError, Unsupported, MissingDependency) as exc:
            if exc.message.startswith(f"failed to load '{name}', "):
                raise
            text = f"load failed for model '{name}': " + exc.message.removeprefix(
                f"model '{name}' failed to load: "
            )
            if isinstance(exc, InvalidConfig):
                raise InvalidConfig(text) from exc
            raise InvalidInput(text) from exc

    async def unload_model(self, name: str, unload_dependents: bool = False) -> None:
        """Stop routing to ``name``, drain its accepted requests, then unload it."""
        await self.models.unload(name, unload_dependents)

    async def register_model(
        self, name: str, backend_factory: BackendFactory, config: ModelConfig
    ) -> None:
        """Serve a model built from code (the binding's callables); reloads when registered again."""
        await self.models.register(name, backend_factory, config)

    async def poll_once(self) -> None:
        """Rescan the repository and load new, reload changed and unload removed models."""
        await self.models.poll_once()

    def _sorted_loaded(self) -> list[LoadedVersion]:
        return sorted(self.models.table.loaded(), key=lambda lv: (lv.name, lv.version))


@dataclass(frozen=True)
class StreamedResponse:
    """One response of :meth:`InferenceServer.stream`: a response, an error, or (both None) a
    final flag the model sent without a response."""

    response: InferenceResponse | None
    final: bool
    error: BaseException | None = None


def _select_outputs(
    outputs: Mapping[str, Any], request: InferenceRequest, loaded: LoadedVersion
) -> dict[str, Any]:
    if request.outputs is None:
        return {name: outputs[name] for name in loaded.signature.outputs if name in outputs}
    wanted = {output.name for output in request.outputs}
    return {name: outputs[name] for name in loaded.signature.outputs if name in wanted}


def _failure_reason(exc: BaseException) -> str:
    """Triton's ``reason`` label for a failed request."""
    if isinstance(exc, Unavailable):
        return "REJECTED"
    if isinstance(exc, InternalError) or not isinstance(exc, HeadraceError):
        return "BACKEND"
    return "OTHER"
