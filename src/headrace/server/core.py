"""The protocol-free inference server: model lifecycle, routing, readiness and statistics.

The HTTP and gRPC frontends are thin: they parse the wire format into
:mod:`headrace.types`, call one method here, and map :mod:`headrace.errors` to statuses.
Everything async here runs on the one asyncio loop that also runs the frontends; model
execution happens on instance threads.

Lifecycle, as Triton's model control modes:

- ``none``: every model of the repository loads at :meth:`InferenceServer.start`; load and
  unload requests are refused.
- ``explicit``: only ``load_models`` load at start (``"*"`` = all); after that, models load and
  unload on request (:meth:`load_model` takes Triton's config override and ``file:`` contents).
- ``poll``: like ``none``, then the repository is rescanned every ``repository_poll_secs``;
  new models load, changed ones reload, removed ones unload.

A reload builds the whole new version set first and swaps it in at once; if anything fails the
old set keeps serving and the error is raised (and shown in the repository index). Unloading
stops routing to a model at once, then drains its accepted requests before closing it.
"""

from __future__ import annotations

import asyncio
import logging
import os
import time
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Literal

from headrace.config import (
    ModelConfig,
    available_gpus,
    fill_defaults,
    input_specs,
    output_specs,
    validate_config,
)
from headrace.errors import (
    HeadraceError,
    InternalError,
    InvalidConfig,
    InvalidInput,
    ModelNotFound,
    Unavailable,
    Unsupported,
)
from headrace.server.loading import BackendFactory, VersionSource, load_version
from headrace.server.metrics import VersionSample
from headrace.server.models import LoadedVersion, ModelRecord, ModelState, ModelTable
from headrace.server.reports import (
    BatchStatistics,
    Duration,
    ModelMetadata,
    ModelStatistics,
    RepositoryIndexEntry,
    ServerMetadata,
)
from headrace.server.sources import (
    ScratchDirs,
    entry_sources,
    fingerprint,
    load_repository_backend,
    open_repository,
    parse_override,
)
from headrace.server.validation import Signature, validate_request
from headrace.types import InferenceRequest, InferenceResponse

if TYPE_CHECKING:
    from headrace.repository import ModelRepository
    from headrace.repository.scan import ScanReport

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
]

ModelControlMode = Literal["none", "poll", "explicit"]
_MODES = ("none", "poll", "explicit")
_EXTENSIONS = (
    "binary_tensor_data",
    "model_configuration",
    "model_repository",
    "model_repository(unload_dependents)",
    "parameters",
    "schedule_policy",
    "statistics",
)
_UNLOADED = "unloaded"
_log = logging.getLogger(__name__)


@dataclass(frozen=True)
class ServerOptions:
    """Server-wide settings (the mode and startup models are constructor arguments)."""

    name: str = "headrace"
    repository_poll_secs: float = 15.0
    strict_model_config: bool = True
    strict_readiness: bool = True
    num_buffers: int = 2
    run_now_below_us: float = 500.0
    """Batches of an instance whose average execution time is under this run on the event
    loop thread instead of the pipeline's threads (0: never); see ``scheduling.pool``."""

    def __post_init__(self) -> None:
        if self.repository_poll_secs <= 0:
            raise InvalidConfig(
                f"repository_poll_secs must be positive, got {self.repository_poll_secs}"
            )
        if self.num_buffers < 1:
            raise InvalidConfig(f"num_buffers must be at least 1, got {self.num_buffers}")
        if self.run_now_below_us < 0:
            raise InvalidConfig(
                f"run_now_below_us must not be negative, got {self.run_now_below_us}"
            )


@dataclass(frozen=True)
class _Registered:
    """A model registered from code: its completed config and backend factory."""

    config: ModelConfig
    factory: BackendFactory


class InferenceServer:
    """Owns the repository's models; one per process."""

    def __init__(
        self,
        repository: ModelRepository | str | os.PathLike[str] | None = None,
        *,
        model_control_mode: ModelControlMode = "none",
        load_models: Iterable[str] = (),
        options: ServerOptions | None = None,
    ) -> None:
        if model_control_mode not in _MODES:
            raise InvalidConfig(
                f"model_control_mode must be one of {list(_MODES)}, got {model_control_mode!r}"
            )
        self.options = options or ServerOptions()
        self.mode: ModelControlMode = model_control_mode
        self.load_models = tuple(load_models)
        if "*" in self.load_models and len(self.load_models) > 1:
            raise InvalidConfig("load_models '*' must be given alone")
        self._repository = open_repository(repository, self.options.strict_model_config)
        self._models = ModelTable()
        self._registered: dict[str, _Registered] = {}
        self._problems: dict[str, str] = {}
        self._fingerprints: dict[str, str] = {}
        self._scratch = ScratchDirs()
        self._started = False
        self._stopping = False
        self._stop_event: asyncio.Event | None = None
        self._poll_task: asyncio.Task[None] | None = None

    # -- lifecycle --------------------------------------------------------------------------

    async def start(self) -> None:
        """Load the startup models (per mode) and start polling in ``poll`` mode."""
        if self._started:
            return
        self._stop_event = asyncio.Event()
        if self._repository is not None:
            report = await self._scan()
            if self.mode == "explicit" and "*" not in self.load_models:
                names = list(self.load_models)
            else:
                names = sorted(set(report.names()) | set(self._problems))
            for name in names:
                try:
                    await self._load(name, report=report)
                except HeadraceError as exc:
                    _log.error("model '%s' failed to load: %s", name, exc.message)
        self._started = True
        if self.mode == "poll" and self._repository is not None:
            self._poll_task = asyncio.create_task(self._poll_loop(), name="headrace-poll")

    async def stop(self) -> None:
        """Refuse new requests, drain every model's accepted ones, and unload everything."""
        if self._stopping:
            return
        self._stopping = True
        if self._stop_event is not None:
            self._stop_event.set()
        if self._poll_task is not None:
            self._poll_task.cancel()
            await asyncio.gather(self._poll_task, return_exceptions=True)
        await asyncio.gather(
            *(self._unload(record, "server stopped") for record in self._models),
            return_exceptions=True,
        )
        self._scratch.drop_all()

    def live(self) -> bool:
        return not self._stopping

    def ready(self) -> bool:
        """Started, not stopping, and (strict readiness) every model known is READY."""
        if not self._started or self._stopping:
            return False
        if not self.options.strict_readiness:
            return True
        # Models unloaded on request do not count against readiness, as in Triton.
        return all(
            record.state == ModelState.READY or record.reason == _UNLOADED
            for record in self._models
        )

    # -- inference --------------------------------------------------------------------------

    async def infer(self, request: InferenceRequest) -> InferenceResponse:
        """Validate, schedule and execute one request. Raises headrace.errors on failure."""
        if self._stopping:
            raise Unavailable("server is shutting down; no new requests are accepted")
        start_ns = time.monotonic_ns()
        loaded = self._models.resolve(request.model_name, request.model_version)
        try:
            validate_request(request, loaded.signature)
        except InvalidInput:
            loaded.stats.record_request(
                success=False, queue_ns=0, total_ns=time.monotonic_ns() - start_ns
            )
            loaded.stats.record_failure_reason("OTHER")
            raise
        try:
            outputs = await loaded.scheduler.schedule(
                request.inputs, priority=request.priority, timeout_us=request.timeout_us
            )
        except asyncio.CancelledError:
            loaded.stats.record_failure_reason("CANCELED")
            raise
        except BaseException as exc:
            loaded.stats.record_failure_reason(_failure_reason(exc))
            if isinstance(exc, HeadraceError):
                raise
            raise InternalError(
                f"model '{loaded.name}' version {loaded.version} failed: "
                f"{type(exc).__name__}: {exc}"
            ) from exc
        return InferenceResponse(
            model_name=loaded.name,
            model_version=str(loaded.version),
            outputs=_select_outputs(outputs, request, loaded),
            id=request.id,
        )

    # -- health and metadata ----------------------------------------------------------------

    def model_ready(self, name: str, version: str = "") -> bool:
        try:
            self._models.resolve(name, version)
        except HeadraceError:
            return False
        return not self._stopping

    def server_metadata(self) -> ServerMetadata:
        from headrace import __version__

        return ServerMetadata(name=self.options.name, version=__version__, extensions=_EXTENSIONS)

    def model_metadata(self, name: str, version: str = "") -> ModelMetadata:
        loaded = self._models.resolve(name, version)
        record = self._models.record(name)
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
        config.CopyFrom(self._models.resolve(name, version).config)
        return config

    def statistics(self, name: str = "", version: str = "") -> list[ModelStatistics]:
        """Statistics of every serving version, of one model, or of one model version."""
        if not name:
            return [loaded.stats.snapshot() for loaded in self._sorted_loaded()]
        if version:
            return [self._models.resolve(name, version).stats.snapshot()]
        record = self._models.get(name)
        if record is None:
            raise ModelNotFound(f"unknown model '{name}'")
        return [record.versions[v].stats.snapshot() for v in sorted(record.versions)]

    def metric_samples(self) -> list[VersionSample]:
        """One sample per serving version, for :class:`~headrace.server.metrics.ServerMetrics`."""
        return [
            VersionSample(
                stats=loaded.stats.snapshot(),
                failures=loaded.stats.failures(),
                pending=loaded.scheduler.pending,
            )
            for loaded in self._sorted_loaded()
        ]

    def loaded_versions(self) -> list[LoadedVersion]:
        """Every serving version, sorted by model name and version."""
        return self._sorted_loaded()

    def repository_index(self, ready_only: bool = False) -> list[RepositoryIndexEntry]:
        """Every model the server knows (repository and registered), with Triton's states."""
        names = set(self._fingerprints) | set(self._problems) | set(self._registered)
        names.update(record.name for record in self._models)
        index: list[RepositoryIndexEntry] = []
        for name in sorted(names):
            record = self._models.get(name)
            if record is not None and record.versions:
                state = ModelState.READY if record.state == ModelState.READY else record.state
                index.extend(
                    RepositoryIndexEntry(
                        name, str(v), state, "" if state == "READY" else record.reason
                    )
                    for v in sorted(record.versions)
                )
            elif record is not None:
                index.append(RepositoryIndexEntry(name, "", record.state, record.reason))
            elif name in self._problems:
                index.append(
                    RepositoryIndexEntry(name, "", ModelState.UNAVAILABLE, self._problems[name])
                )
            else:
                index.append(RepositoryIndexEntry(name, "", "", ""))
        if ready_only:
            index = [entry for entry in index if entry.state == ModelState.READY]
        return index

    # -- model control ----------------------------------------------------------------------

    async def load_model(
        self, name: str, config: str | None = None, files: dict[str, bytes] | None = None
    ) -> None:
        """Load or reload; a failed reload keeps the old version serving."""
        self._check_control("load")
        override = parse_override(name, config) if config is not None else None
        if files and override is None:
            raise InvalidInput(f"loading model '{name}' from files needs a config override too")
        await self._load(name, override=override, files=files or None)

    async def unload_model(self, name: str, unload_dependents: bool = False) -> None:
        """Stop routing to ``name``, drain its accepted requests, then unload it."""
        self._check_control("unload")
        record = self._models.get(name)
        if record is None:
            if name in self._fingerprints or name in self._problems or name in self._registered:
                return  # known but not loaded: nothing to do, as Triton
            raise ModelNotFound(f"unknown model '{name}'")
        await self._unload(record, _UNLOADED)

    async def register_model(
        self, name: str, backend_factory: BackendFactory, config: ModelConfig
    ) -> None:
        """Serve a model built from code (the binding's callables); reloads when registered again."""
        completed = ModelConfig()
        completed.CopyFrom(config)
        if completed.name and completed.name != name:
            raise InvalidConfig(f"config names model '{completed.name}', registered as '{name}'")
        completed.name = name
        fill_defaults(completed, gpus=available_gpus(), source=f"model '{name}'")
        validate_config(completed, f"model '{name}'")
        self._registered[name] = _Registered(completed, backend_factory)
        await self._load(name)

    async def poll_once(self) -> None:
        """Rescan the repository and load new, reload changed and unload removed models."""
        if self._repository is None:
            return
        known = set(self._fingerprints)
        report = await self._scan()
        current = set(report.names())
        fingerprints = await asyncio.to_thread(
            lambda: {name: fingerprint(report.entry(name)) for name in current}
        )
        for name in sorted(known - current - set(self._problems)):
            self._fingerprints.pop(name, None)
            record = self._models.get(name)
            if record is not None and name not in self._registered:
                await self._unload(record, "removed from the repository")
                self._models.forget(name)
        for name in sorted(current):
            if name in known and fingerprints[name] == self._fingerprints.get(name):
                continue
            self._fingerprints[name] = fingerprints[name]  # a failed load waits for a change
            try:
                await self._load(name, report=report)
            except HeadraceError as exc:
                _log.error("model '%s' failed to load: %s", name, exc.message)
        for name in set(self._problems) - current:
            record = self._models.get(name)
            if record is not None and not record.versions:
                record.state, record.reason = ModelState.UNAVAILABLE, self._problems[name]

    # -- internals --------------------------------------------------------------------------

    def _check_control(self, action: str) -> None:
        if self.mode == "poll":
            raise Unsupported(f"explicit model {action} is not allowed if polling is enabled")
        if self.mode == "none":
            raise Unsupported(
                f"explicit model {action} is not allowed in model control mode 'none'; "
                "start the server with model_control_mode='explicit'"
            )

    async def _scan(self) -> ScanReport:
        assert self._repository is not None
        report = await asyncio.to_thread(self._repository.scan)
        problems: dict[str, list[str]] = {}
        for problem in report.problems:
            problems.setdefault(problem.model, []).append(str(problem))
        servable = set(report.names())
        self._problems = {
            name: "; ".join(messages) for name, messages in problems.items() if name not in servable
        }
        for name in servable:
            self._fingerprints.setdefault(name, "")
        return report

    async def _load(
        self,
        name: str,
        *,
        override: ModelConfig | None = None,
        files: Mapping[str, bytes] | None = None,
        report: ScanReport | None = None,
    ) -> None:
        is_new = name not in self._models
        record = self._models.record(name)
        async with record.lock:
            if not record.versions:
                record.state, record.reason = ModelState.LOADING, ""
            try:
                sources, fingerprint = await self._sources(name, override, files, report)
                new = await self._build(sources)
            except ModelNotFound:
                # A name the repository does not hold leaves no trace in the index.
                if is_new:
                    self._models.forget(name)
                raise
            except BaseException as exc:
                message = exc.message if isinstance(exc, HeadraceError) else repr(exc)
                record.reason = message
                if not record.versions:
                    record.state = ModelState.UNAVAILABLE
                if isinstance(exc, HeadraceError) or not isinstance(exc, Exception):
                    raise
                raise InternalError(f"model '{name}' failed to load: {message}") from exc
            old = record.swap(new)
            record.state, record.reason = ModelState.READY, ""
            if fingerprint is not None:
                self._fingerprints[name] = fingerprint
            _log.info("model '%s' serving versions %s", name, sorted(new))
            await _close_all(old.values())

    async def _build(self, sources: list[VersionSource]) -> dict[int, LoadedVersion]:
        from headrace.backends import backend_class_for
        from headrace.scheduling import make_scheduler

        built: dict[int, LoadedVersion] = {}
        try:
            for source in sources:
                config = source.config
                signature = Signature.build(
                    source.name, input_specs(config), output_specs(config), config.max_batch_size
                )
                backend = config.backend or config.platform
                if source.factory is load_repository_backend:
                    backend = backend_class_for(config, source.version_dir).name or backend
                built[source.version] = await load_version(
                    source,
                    make_scheduler=make_scheduler,
                    signature=signature,
                    backend_name=backend or "python_callable",
                    num_buffers=self.options.num_buffers,
                    run_now_below_us=self.options.run_now_below_us,
                )
        except BaseException:
            await _close_all(built.values())
            raise
        return built

    async def _sources(
        self,
        name: str,
        override: ModelConfig | None,
        files: Mapping[str, bytes] | None,
        report: ScanReport | None,
    ) -> tuple[list[VersionSource], str | None]:
        """The versions to build, and the repository fingerprint they were read at."""
        registered = self._registered.get(name)
        if registered is not None and override is None and not files:
            return [VersionSource(name, 1, registered.config, registered.factory)], None
        if files:
            entry = await asyncio.to_thread(self._scratch.entry, name, override, files)
            return await asyncio.to_thread(entry_sources, entry, None), None
        if self._repository is None:
            raise ModelNotFound(f"unknown model '{name}': the server has no repository")
        if report is None:
            report = await self._scan()
        found = report.entry(name)
        if found is None:
            why = self._problems.get(name)
            if why:
                raise InvalidConfig(why)
            raise ModelNotFound(f"unknown model '{name}': not in the repository")
        sources = await asyncio.to_thread(entry_sources, found, override)
        return sources, await asyncio.to_thread(fingerprint, found)

    async def _unload(self, record: ModelRecord, reason: str) -> None:
        async with record.lock:
            record.state = ModelState.UNLOADING
            old = record.swap({})
            try:
                await _close_all(old.values())
            finally:
                record.state, record.reason = ModelState.UNAVAILABLE, reason
        self._scratch.drop(record.name)

    async def _poll_loop(self) -> None:
        assert self._stop_event is not None
        while not self._stop_event.is_set():
            try:
                await asyncio.wait_for(
                    self._stop_event.wait(), timeout=self.options.repository_poll_secs
                )
            except asyncio.TimeoutError:
                pass
            if self._stop_event.is_set():
                return
            try:
                await self.poll_once()
            except Exception:
                _log.exception("repository poll failed")

    def _sorted_loaded(self) -> list[LoadedVersion]:
        return sorted(self._models.loaded(), key=lambda lv: (lv.name, lv.version))


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


async def _close_all(versions: Iterable[LoadedVersion]) -> None:
    results = await asyncio.gather(*(v.close() for v in versions), return_exceptions=True)
    for result in results:
        if isinstance(result, BaseException):
            _log.warning("closing a model version failed: %s", result)
