"""The model registry: which models serve, and their lifecycle (load, unload, poll, reload).

Lifecycle, as Triton's model control modes:

- ``none``: every model of the repository loads at :meth:`ModelRegistry.start`; load and
  unload requests are refused.
- ``explicit``: only ``load_models`` load at start (``"*"`` = all); after that, models load and
  unload on request (:meth:`load` takes Triton's config override and ``file:`` contents).
- ``poll``: like ``none``, then the repository is rescanned every ``repository_poll_secs``;
  new models load, changed ones reload, removed ones unload.

A model that uses other models (an ensemble's steps) loads after them: loading it loads
what it needs first, in explicit mode too, and a cycle is refused naming the models in it.
A reload builds the whole new version set first and swaps it in at once; if anything fails
the old set keeps serving and the error is raised (and shown in the repository index).
Requests already accepted by the old set finish there. Unloading stops routing to a model at
once, then drains its accepted requests before closing it.

The registry is also the :class:`~headrace.scheduling.router.Router` that schedulers use to
reach other models.
"""

from __future__ import annotations

import asyncio
import logging
import os
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Literal

from headrace.backends.base import BackendFactory
from headrace.config import ModelConfig, fill_defaults, validate_config
from headrace.devices import available_gpus
from headrace.errors import (
    HeadraceError,
    InternalError,
    InvalidConfig,
    InvalidInput,
    ModelNotFound,
    Unavailable,
)
from headrace.scheduling.response_cache import ResponseCache
from headrace.server.heap import refreeze
from headrace.server.models.loading import VersionSource, load_version
from headrace.server.models.sources import (
    ScratchDirs,
    check_repository,
    entry_sources,
    fingerprint,
    open_repository,
    parse_override,
)
from headrace.server.models.table import LoadedVersion, ModelRecord, ModelState, ModelTable

if TYPE_CHECKING:
    from headrace.repository import ModelRepository
    from headrace.repository.entry import ModelEntry
    from headrace.repository.scan import ScanReport
    from headrace.server.options import ServerOptions

__all__ = ["ModelControlMode", "ModelRegistry", "StartupFailed", "dependencies"]

ModelControlMode = Literal["none", "poll", "explicit"]
MODES = ("none", "poll", "explicit")
UNLOADED = "unloaded"
_log = logging.getLogger(__name__)

_HEAP_SETTLE_S = 1.0
_POLL_FAILED = "failed to poll from model repository"
"""Triton's words for a load that failed before a model was built (unknown, bad override)."""
"""After a load or unload, how long the model set must stay unchanged before the heap is
collected and frozen again (one pause of a few hundred ms, not one per model of a burst)."""


@dataclass(frozen=True)
class _Registered:
    """A model registered from code: its completed config and backend factory."""

    config: ModelConfig
    factory: BackendFactory


class StartupFailed(InternalError):
    """Models failed to load at start (with ``exit_on_error``); ``failed`` maps name to why."""

    def __init__(self, failed: Mapping[str, str]) -> None:
        self.failed = dict(failed)
        reasons = "; ".join(_one_line(name, why) for name, why in sorted(self.failed.items()))
        super().__init__(f"failed to load all models: {reasons}")


def _reasons_after_failure(
    sources: Sequence[VersionSource], built: list[int] | None
) -> dict[int, str]:
    """Per-version reasons after a failed load: once building began, the version that failed
    keeps the error and the others (loaded and let go, or not reached) say "unloaded", as
    Triton's index does; before that, every version shares the model's reason."""
    if built is None:
        return {}
    failed = next((s.version for s in sources if s.version not in built), None)
    return {s.version: UNLOADED for s in sources if s.version != failed}


def _one_line(name: str, why: str) -> str:
    """A load failure on one line that names the model (a traceback follows the first line)."""
    lines = [line.strip() for line in why.strip().splitlines() if line.strip()]
    first = lines[0] if lines else "unknown reason"
    return first if f"'{name}'" in first else f"model '{name}': {first}"


def dependencies(config: ModelConfig) -> list[str]:
    """The models ``config`` needs loaded before it: an ensemble's step models, in order."""
    if not config.HasField("ensemble_scheduling"):
        return []
    names: list[str] = []
    for step in config.ensemble_scheduling.step:
        if step.model_name and step.model_name not in names:
            names.append(step.model_name)
    return names


class ModelRegistry:
    """Owns the repository's models and models registered from code; one per server."""

    def __init__(
        self,
        repository: ModelRepository | str | os.PathLike[str] | None,
        *,
        mode: ModelControlMode,
        load_models: Iterable[str],
        options: ServerOptions,
    ) -> None:
        if mode not in MODES:
            raise InvalidConfig(
                f"--model-control-mode must be one of {', '.join(MODES)}, got {mode!r}"
            )
        self.options = options
        self.mode: ModelControlMode = mode
        self.load_models = tuple(load_models)
        if "*" in self.load_models and len(self.load_models) > 1:
            raise InvalidConfig("--load-model '*' must be given alone")
        self._repository = open_repository(repository, options.strict_model_config)
        self.table = ModelTable()
        self.cache = (
            ResponseCache(options.response_cache_bytes) if options.response_cache_bytes else None
        )
        """The server's response cache, shared by every model that enables one (or None)."""
        self._registered: dict[str, _Registered] = {}
        self._problems: dict[str, str] = {}
        self._fingerprints: dict[str, str] = {}
        self._needs: dict[str, list[str]] = {}
        self._scratch = ScratchDirs()
        self._stop_event: asyncio.Event | None = None
        self._heap_timer: asyncio.TimerHandle | None = None
        self._poll_task: asyncio.Task[None] | None = None

    # -- routing (the Router protocol) ------------------------------------------------------

    def route(self, name: str, version: str = "") -> LoadedVersion:
        """The serving version a request for ``name``/``version`` goes to."""
        return self.table.resolve(name, version)

    # -- start and stop ---------------------------------------------------------------------

    async def start(self) -> None:
        """Load the startup models (per mode) and start polling in ``poll`` mode.

        A repository root that is missing or unreadable is refused. With
        ``options.exit_on_error`` a startup model that fails to load fails the start: every
        model is unloaded again and the error names each failed model and why, as Triton's
        ``--exit-on-error``."""
        self._stop_event = asyncio.Event()
        if self._repository is not None:
            await asyncio.to_thread(check_repository, self._repository)
            report = await self._scan()
            if self.mode == "explicit" and "*" not in self.load_models:
                names = list(self.load_models)
            else:
                names = sorted(set(report.names()) | set(self._problems))
            failed: dict[str, str] = {}
            for name in names:
                if not self._ready(name):  # loaded already as another model's dependency
                    why = await self._load_logged(name, report)
                    if why is not None:
                        failed[name] = why
            failed = {name: why for name, why in failed.items() if not self._ready(name)}
            if failed and self.options.exit_on_error:
                await self.stop()
                raise StartupFailed(failed)
        self._settle_heap_now()
        if self.mode == "poll" and self._repository is not None:
            self._poll_task = asyncio.create_task(self._poll_loop(), name="headrace-poll")

    async def stop(self) -> None:
        """Drain every model's accepted requests and unload everything."""
        if self._stop_event is not None:
            self._stop_event.set()
        if self._heap_timer is not None:
            self._heap_timer.cancel()
            self._heap_timer = None
        if self._poll_task is not None:
            self._poll_task.cancel()
            await asyncio.gather(self._poll_task, return_exceptions=True)
        await asyncio.gather(
            *(self._unload(record, "server stopped") for record in self.table),
            return_exceptions=True,
        )
        self._scratch.drop_all()

    def all_ready(self) -> bool:
        """Every model known is READY (models unloaded on request do not count, as Triton)."""
        return all(
            record.state == ModelState.READY or record.reason == UNLOADED for record in self.table
        )

    # -- model control ----------------------------------------------------------------------

    async def load(
        self, name: str, config: str | None = None, files: Mapping[str, bytes] | None = None
    ) -> None:
        """Load or reload; a failed reload keeps the old version serving.

        A name the repository lacks or an override that does not parse fails in Triton's
        words, ``failed to load 'NAME', failed to poll from model repository: ...``
        (:class:`InternalError`); a model that fails as it is built raises its own error."""
        self._check_control("load")
        try:
            override = parse_override(name, config) if config is not None else None
            if files and override is None:
                raise InvalidInput(f"loading model '{name}' from files needs a config override too")
        except (InvalidInput, InvalidConfig) as exc:
            raise InternalError(f"failed to load '{name}', {_POLL_FAILED}: {exc.message}") from exc
        try:
            await self._load(name, override=override, files=files or None)
        except ModelNotFound as exc:
            raise InternalError(f"failed to load '{name}', {_POLL_FAILED}: {exc.message}") from exc

    async def unload(self, name: str, unload_dependents: bool = False) -> None:
        """Stop routing to ``name``, drain its accepted requests, then unload it (and, with
        ``unload_dependents``, the loaded models that use it)."""
        self._check_control("unload")
        record = self.table.get(name)
        if record is None:
            return  # not loaded (or not even in the repository): nothing to do, as Triton
        if unload_dependents:
            for dependent in self._dependents(name):
                other = self.table.get(dependent)
                if other is not None and other.versions:
                    await self._unload(other, UNLOADED)
        await self._unload(record, UNLOADED)

    async def register(self, name: str, factory: BackendFactory, config: ModelConfig) -> None:
        """Serve a model built from code (the binding's callables); reloads when registered again."""
        completed = ModelConfig()
        completed.CopyFrom(config)
        if completed.name and completed.name != name:
            raise InvalidConfig(f"config names model '{completed.name}', registered as '{name}'")
        completed.name = name
        fill_defaults(completed, gpus=available_gpus(), source=f"model '{name}'")
        validate_config(completed, f"model '{name}'")
        self._registered[name] = _Registered(completed, factory)
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
            record = self.table.get(name)
            if record is not None and name not in self._registered:
                await self._unload(record, "removed from the repository")
                self.table.forget(name)
        for name in sorted(current):
            if name in known and fingerprints[name] == self._fingerprints.get(name):
                continue
            self._fingerprints[name] = fingerprints[name]  # a failed load waits for a change
            await self._load_logged(name, report)
        for name in set(self._problems) - current:
            record = self.table.get(name)
            if record is not None and not record.versions:
                record.state, record.reason = ModelState.UNAVAILABLE, self._problems[name]

    # -- what the index shows ---------------------------------------------------------------

    def known_names(self) -> set[str]:
        """Every model the registry knows: in the repository, registered, or loaded.

        A local repository is listed afresh, so model directories added after the last scan
        show (as Triton's index, in every mode); a remote one shows the last scan's names
        (listing it would block the event loop on the network)."""
        listed = self._listed_names()
        names = set(self._fingerprints) | set(self._problems) if listed is None else set(listed)
        names.update(self._registered)
        names.update(record.name for record in self.table)
        return names

    def _listed_names(self) -> list[str] | None:
        repository = self._repository
        storage = getattr(repository, "storage", None)
        if repository is None or storage is None or not storage.is_local:
            return None
        try:
            return repository.names()
        except OSError as exc:
            _log.warning("listing the repository %s failed: %s", repository.path, exc)
            return None

    def problem(self, name: str) -> str | None:
        """Why the repository cannot serve ``name`` (None when it can)."""
        return self._problems.get(name)

    # -- internals --------------------------------------------------------------------------

    def _check_control(self, action: str) -> None:
        if self.mode in ("poll", "none"):
            # Triton's words, whichever of the two modes refuses (UNAVAILABLE, HTTP 503).
            raise Unavailable(
                f"explicit model load / unload is not allowed if polling is enabled; this "
                f"{action} is refused in --model-control-mode {self.mode}, start the server "
                "with --model-control-mode explicit to load and unload models on request"
            )

    def _dependents(self, name: str) -> list[str]:
        return sorted(model for model, needs in self._needs.items() if name in needs)

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

    async def _load_logged(self, name: str, report: ScanReport) -> str | None:
        """Load ``name``; a failure is logged and its message returned (None: loaded)."""
        try:
            await self._load(name, report=report)
        except HeadraceError as exc:
            _log.error("model '%s' failed to load: %s", name, exc.message)
            return exc.message
        return None

    def _ready(self, name: str) -> bool:
        record = self.table.get(name)
        return record is not None and bool(record.versions)

    async def _load(
        self,
        name: str,
        *,
        override: ModelConfig | None = None,
        files: Mapping[str, bytes] | None = None,
        report: ScanReport | None = None,
        chain: Sequence[str] = (),
    ) -> None:
        is_new = name not in self.table
        record = self.table.record(name)
        async with record.lock:
            if not record.versions:
                record.state, record.reason = ModelState.LOADING, ""
            sources: list[VersionSource] = []
            built: list[int] | None = None  # the versions built, once building began
            try:
                sources, fingerprint = await self._sources(name, override, files, report)
                await self._load_dependencies(name, sources, report, (*chain, name))
                built = []
                new = await self._build(sources, built)
            except ModelNotFound:
                # A name the repository does not hold leaves no trace in the index.
                if is_new:
                    self.table.forget(name)
                raise
            except BaseException as exc:
                message = exc.message if isinstance(exc, HeadraceError) else repr(exc)
                record.reason = message
                if not record.versions:
                    record.state = ModelState.UNAVAILABLE
                    if isinstance(exc, Exception):
                        record.idle_versions = await self._tried_versions(name, sources)
                        record.idle_reasons = _reasons_after_failure(sources, built)
                if isinstance(exc, HeadraceError) or not isinstance(exc, Exception):
                    raise
                raise InternalError(f"model '{name}' failed to load: {message}") from exc
            old = record.swap(new)
            self._forget_responses()
            self._settle_heap_soon()
            record.state, record.reason = ModelState.READY, ""
            record.idle_versions, record.idle_reasons = (), {}
            if fingerprint is not None:
                self._fingerprints[name] = fingerprint
            _log.info("model '%s' serving versions %s", name, sorted(new))
            await close_all(old.values())

    async def _tried_versions(self, name: str, sources: Sequence[VersionSource]) -> tuple[int, ...]:
        """The versions a failed load was for: its sources, or, when it failed while they
        were being completed, the versions the repository's config selects (none when that
        config cannot be read, as Triton shows such a model without a version)."""
        if sources:
            return tuple(sorted(source.version for source in sources))
        repository = self._repository
        if repository is None:
            return ()

        def selected() -> tuple[int, ...]:
            try:
                return tuple(repository[name].versions()) if name in repository else ()
            except Exception:
                return ()

        return await asyncio.to_thread(selected)

    async def _load_dependencies(
        self,
        name: str,
        sources: list[VersionSource],
        report: ScanReport | None,
        chain: tuple[str, ...],
    ) -> None:
        needs: list[str] = []
        for source in sources:
            needs.extend(dep for dep in dependencies(source.config) if dep not in needs)
        self._needs[name] = needs
        for dep in needs:
            if dep in chain:
                cycle = " -> ".join((*chain[chain.index(dep) :], dep))
                raise InvalidConfig(f"model '{name}' depends on itself: {cycle}")
            if self._ready(dep):
                continue
            try:
                await self._load(dep, report=report, chain=chain)
            except HeadraceError as exc:
                raise InvalidConfig(
                    f"model '{name}' needs model '{dep}', which failed to load: {exc.message}"
                ) from exc

    async def _build(
        self, sources: list[VersionSource], done: list[int]
    ) -> dict[int, LoadedVersion]:
        """Every version of ``sources``, or none (closed again) if one fails; ``done`` gets
        each version that loaded, so a failure can tell which version it was."""
        built: dict[int, LoadedVersion] = {}
        try:
            for source in sources:
                built[source.version] = await load_version(
                    source,
                    router=self,
                    num_buffers=self.options.num_buffers,
                    run_now_below_us=self.options.run_now_below_us,
                    python_default=self.options.python_runtime,
                    cache=self.cache,
                    default_max_queue_size=self.options.default_max_queue_size,
                    ray=self.options.ray,
                )
                done.append(source.version)
        except BaseException:
            await close_all(built.values())
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
        if found is None and override is not None:
            found = await asyncio.to_thread(self._unscanned_entry, name)
        if found is None:
            why = self._problems.get(name)
            if why:
                raise InvalidConfig(why)
            raise ModelNotFound(f"unknown model '{name}': not in the repository")
        sources = await asyncio.to_thread(entry_sources, found, override)
        return sources, await asyncio.to_thread(fingerprint, found)

    def _unscanned_entry(self, name: str) -> ModelEntry | None:
        """``name``'s directory even when its own config.pbtxt is refused: a load request's
        config override replaces that file, as in Triton (blocking)."""
        repository = self._repository
        if repository is None or name not in repository:
            return None
        return repository[name]

    async def _unload(self, record: ModelRecord, reason: str) -> None:
        async with record.lock:
            record.state = ModelState.UNLOADING
            old = record.swap({})
            if old:
                record.idle_versions, record.idle_reasons = tuple(sorted(old)), {}
            self._forget_responses()
            self._settle_heap_soon()
            try:
                await close_all(old.values())
            finally:
                record.state, record.reason = ModelState.UNAVAILABLE, reason
        self._scratch.drop(record.name)

    def _settle_heap_soon(self) -> None:
        """After the models change, once things are quiet: see :mod:`headrace.server.heap`."""
        if self._heap_timer is None:
            loop = asyncio.get_running_loop()
            self._heap_timer = loop.call_later(_HEAP_SETTLE_S, self._settle_heap_now)

    def _settle_heap_now(self) -> None:
        if self._heap_timer is not None:
            self._heap_timer.cancel()
            self._heap_timer = None
        refreeze()

    def _forget_responses(self) -> None:
        """A model changed: cached responses of ensembles over it may no longer hold."""
        if self.cache is not None:
            self.cache.clear()

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


async def close_all(versions: Iterable[LoadedVersion]) -> None:
    """Drain and close model versions; a failure to close one is logged, not raised."""
    results = await asyncio.gather(*(v.close() for v in versions), return_exceptions=True)
    for result in results:
        if isinstance(result, BaseException):
            _log.warning("closing a model version failed: %s", result)
