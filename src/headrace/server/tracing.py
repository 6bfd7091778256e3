"""Request tracing as Triton's ``triton`` trace mode does it: settings, sampling, trace files.

Settings (``v2/trace/setting``, ``v2/models/{m}/trace/setting``, the ``TraceSetting`` RPC):
``trace_level`` (``OFF``, or ``TIMESTAMPS`` and/or ``TENSORS``), ``trace_rate`` (trace every
N-th request), ``trace_count`` (how many more traces, -1 no limit; it counts down),
``log_frequency`` (write every N traces to ``trace_file.<i>``; 0 writes them all at shutdown
to ``trace_file``), ``trace_file`` (only at start: ``--trace-config triton,file=PATH``) and
``trace_mode`` (always ``triton``). A model's setting overrides the global one field by field;
a null value clears a model's field (it follows the global one again) or resets a global field
to its value at start. As Triton, turning tracing on needs a trace file, a non-zero rate and
a count that is not 0.

A sampled request gets a :class:`RequestTrace`; the core stamps ``REQUEST_START``,
``QUEUE_START`` and ``REQUEST_END``, the scheduler ``COMPUTE_START`` and ``COMPUTE_END`` (the
batch it ran in, handed to and back from its instance). Requests that a scheduler does not
run in a batch of its own (an ensemble's steps, a response cache hit) have no compute stamps.
``TENSORS`` is accepted and reported but records timestamps only. The file holds one JSON
array of Triton's records: ``{"id": 1, "model_name": ..., "model_version": 1,
"request_id": ...}`` then one ``{"id": 1, "timestamps": [{"name": ..., "ns": ...}]}`` per
stamp, ``ns`` from ``time.monotonic_ns``.
"""

from __future__ import annotations

import json
import logging
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, replace
from typing import Any

from headrace.errors import InvalidInput, Unsupported
from headrace.files import atomic_write_bytes

__all__ = [
    "RequestTrace",
    "TraceControl",
    "TraceSettings",
    "parse_trace_config",
    "trace_changes_from_json",
]

_log = logging.getLogger(__name__)
_UINT32 = 2**32 - 1
_LEVELS = ("TIMESTAMPS", "TENSORS")


@dataclass(frozen=True)
class TraceSettings:
    """One complete trace setting, Triton's defaults."""

    trace_level: tuple[str, ...] = ("OFF",)
    trace_rate: int = 1000
    trace_count: int = -1
    log_frequency: int = 0
    trace_file: str = ""
    trace_mode: str = "triton"

    @property
    def on(self) -> bool:
        return self.trace_level != ("OFF",) and self.trace_count != 0

    def check(self) -> None:
        """Refuse a setting that traces without a file, a rate or a count (as Triton)."""
        if self.trace_level == ("OFF",):
            return
        reason = ""
        if self.trace_rate == 0:
            reason = "sample rate must be non-zero"
        elif self.trace_count == 0:
            reason = "trace count must not be 0 (-1: no limit)"
        elif not self.trace_file:
            reason = "trace file name is not given"
        if reason:
            raise InvalidInput(f"Attempting to set invalid trace setting :{reason}")

    def as_json(self) -> dict[str, Any]:
        """As Triton's HTTP ``v2/trace/setting`` answers: numbers as strings, level a list."""
        return {
            "trace_level": list(self.trace_level),
            "trace_rate": str(self.trace_rate),
            "trace_count": str(self.trace_count),
            "log_frequency": str(self.log_frequency),
            "trace_file": self.trace_file,
            "trace_mode": self.trace_mode,
        }


Changes = Mapping[str, Sequence[str] | None]
"""An update: each setting's values (one string, or the levels), None to clear it."""


def _parse_uint32(key: str, text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise InvalidInput(f"Unable to parse '{key}', got: {text}") from None
    if not 0 <= value <= _UINT32:
        raise InvalidInput(
            f"Unable to parse '{key}', value is out of range [ 0, {_UINT32} ], got: {text}"
        )
    return value


def _parse_count(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise InvalidInput(f"Unable to parse 'trace_count', got: {text}") from None
    if not -1 <= value < 2**31:
        raise InvalidInput(f"Unable to parse 'trace_count'. Expecting value >= -1, got: {text}")
    return value


def _parse_level(values: Sequence[str]) -> tuple[str, ...] | None:
    """The level a list asks for; None when it names no level (Triton then keeps the old)."""
    if "OFF" in values:
        if len(values) > 1:
            raise InvalidInput("Expect only one trace level 'OFF' is specified")
        return ("OFF",)
    levels = tuple(level for level in _LEVELS if level in values)
    return levels or None


def _single(key: str, values: Sequence[str]) -> str:
    if len(values) != 1:
        raise InvalidInput(f"expect only one value for '{key}', got {len(values)}")
    return values[0]


def trace_changes_from_json(body: Mapping[str, Any]) -> dict[str, list[str] | None]:
    """An HTTP update body as :data:`Changes`: ``trace_level`` a list of strings, every
    other setting a string, null to clear."""
    changes: dict[str, list[str] | None] = {}
    for key, value in body.items():
        if value is None:
            changes[key] = None
        elif key == "trace_level":
            if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
                raise InvalidInput(f"'trace_level' must be a list of strings, got {value!r}")
            changes[key] = value
        elif isinstance(value, str):
            changes[key] = [value]
        else:
            raise InvalidInput(f"'{key}' must be a string, got {value!r}")
    return changes


def parse_changes(changes: Changes) -> dict[str, Any]:
    """The fields an update sets (None: cleared); unknown keys and ``trace_mode`` are ignored."""
    if "trace_file" in changes:
        raise Unsupported("trace file location can not be updated through network protocol")
    parsed: dict[str, Any] = {}
    for key, values in changes.items():
        if values is None:
            if key in ("trace_level", "trace_rate", "trace_count", "log_frequency"):
                parsed[key] = None
            continue
        if key == "trace_level":
            level = _parse_level(values)
            if level is not None:
                parsed[key] = level
        elif key in ("trace_rate", "log_frequency"):
            parsed[key] = _parse_uint32(key, _single(key, values))
        elif key == "trace_count":
            parsed[key] = _parse_count(_single(key, values))
    return parsed


def parse_trace_config(options: Sequence[str]) -> TraceSettings:
    """The start settings from ``--trace-config`` values, as tritonserver reads them:
    ``level=TIMESTAMPS``, ``rate=N``, ``count=N``, ``mode=triton``, ``triton,file=PATH``,
    ``triton,log-frequency=N`` (``level`` may be repeated)."""
    settings = TraceSettings()
    levels: list[str] = []
    for option in options:
        mode, _, setting = option.rpartition(",")
        key, sep, value = setting.partition("=")
        if not sep or mode not in ("", "triton"):
            raise InvalidInput(
                f"--trace-config {option!r}: expected [triton,]SETTING=VALUE "
                "(level, rate, count, mode, file, log-frequency)"
            )
        if key == "level":
            levels.append(value.upper())
        elif key == "rate":
            settings = replace(settings, trace_rate=_parse_uint32("trace_rate", value))
        elif key == "count":
            settings = replace(settings, trace_count=_parse_count(value))
        elif key == "file":
            settings = replace(settings, trace_file=value)
        elif key == "log-frequency":
            settings = replace(settings, log_frequency=_parse_uint32("log_frequency", value))
        elif key == "mode":
            if value != "triton":
                raise InvalidInput(f"--trace-config mode={value}: only 'triton' is supported")
        else:
            raise InvalidInput(
                f"--trace-config {option!r}: unknown setting {key!r} "
                "(level, rate, count, mode, file, log-frequency)"
            )
    if levels:
        level = _parse_level(levels)
        if level is None:
            raise InvalidInput(
                f"--trace-config level={','.join(levels)}: expected OFF, TIMESTAMPS or TENSORS"
            )
        settings = replace(settings, trace_level=level)
    settings.check()
    return settings


class RequestTrace:
    """The stamps of one sampled request; :meth:`end` hands them to the trace file."""

    __slots__ = ("_done", "_records", "id")

    def __init__(
        self, trace_id: int, model: str, version: int, request_id: str, done: Callable[..., None]
    ) -> None:
        self.id = trace_id
        head: dict[str, Any] = {"id": trace_id, "model_name": model, "model_version": version}
        if request_id:
            head["request_id"] = request_id
        self._records: list[dict[str, Any]] = [head]
        self._done = done

    def stamp(self, name: str, ns: int | None = None) -> None:
        ns = time.monotonic_ns() if ns is None else ns
        self._records.append({"id": self.id, "timestamps": [{"name": name, "ns": ns}]})

    def computed(self, start_ns: int, end_ns: int) -> None:
        """The batch this request ran in: handed to its instance, and back."""
        self.stamp("COMPUTE_START", start_ns)
        self.stamp("COMPUTE_END", end_ns)

    def end(self) -> None:
        self.stamp("REQUEST_END")
        self._done(self._records)


class _Owner:
    """A setting that samples: the global one, or a model's with overrides of its own."""

    __slots__ = ("count", "file", "overrides", "pending", "seen", "traces", "written")

    def __init__(self, overrides: dict[str, Any] | None = None) -> None:
        self.overrides: dict[str, Any] = overrides or {}
        self.count: int | None = None  # remaining traces, once this owner has counted down
        self.seen = 0
        self.pending: list[dict[str, Any]] = []
        self.traces = 0  # traces in pending
        self.written = 0  # files written: the next is trace_file.<written>
        self.file = ""


class TraceControl:
    """The trace settings of one server and the traces they sample (see the module doc).

    ``on`` is False while no setting traces, so the hot path pays one attribute read.
    ``known`` tells whether a model name exists (per-model settings of others are refused).
    """

    def __init__(
        self, start: TraceSettings | None = None, known: Callable[[str], bool] | None = None
    ) -> None:
        self._start = start or TraceSettings()
        self._global = self._start
        self._global_owner = _Owner()
        self._global_owner.file = self._start.trace_file
        self._models: dict[str, _Owner] = {}
        self._known = known or (lambda _name: True)
        self._lock = threading.Lock()
        self._next_id = 1
        self.on = self._global.on

    # --- settings --------------------------------------------------------------------------

    def settings(self, model: str = "") -> TraceSettings:
        """The setting in force globally, or for ``model``."""
        with self._lock:
            if model:
                self._require_known(model)
            return self._effective(model)

    def update(self, changes: Changes, model: str = "") -> TraceSettings:
        """Apply an update globally or to ``model``; returns the setting now in force there."""
        parsed = parse_changes(changes)
        with self._lock:
            if model:
                self._require_known(model)
                owner = self._models.get(model) or _Owner()
                overrides = dict(owner.overrides)
                for key, value in parsed.items():
                    if value is None:
                        overrides.pop(key, None)
                    else:
                        overrides[key] = value
                candidate = replace(self._global, **overrides)
                candidate.check()
                self._flush(owner)
                if overrides:
                    fresh = _Owner(overrides)
                    fresh.file, fresh.written = owner.file or candidate.trace_file, owner.written
                    self._models[model] = fresh
                else:
                    self._models.pop(model, None)
            else:
                values = {
                    key: getattr(self._start, key) if value is None else value
                    for key, value in parsed.items()
                }
                candidate = replace(self._global, **values)
                candidate.check()
                self._flush(self._global_owner)
                if "trace_count" in parsed:
                    self._global_owner.count = None
                self._global = candidate
            self.on = self._global.on or any(self._effective(name).on for name in self._models)
            return self._effective(model)

    def _require_known(self, model: str) -> None:
        if not self._known(model):
            raise InvalidInput(f"Request for unknown model : {model}")

    def _effective(self, model: str) -> TraceSettings:
        owner = self._owner(model)
        settings = self._global
        if owner is not self._global_owner:
            settings = replace(settings, **owner.overrides)
        if owner.count is not None:
            settings = replace(settings, trace_count=owner.count)
        return settings

    def _owner(self, model: str) -> _Owner:
        owner = self._models.get(model) if model else None
        return owner if owner is not None else self._global_owner

    # --- sampling --------------------------------------------------------------------------

    def sample(self, model: str, version: int, request_id: str) -> RequestTrace | None:
        """A trace for this request when its model's setting samples it, else None."""
        with self._lock:
            settings = self._effective(model)
            if not settings.on:
                return None
            owner = self._owner(model)
            owner.seen += 1
            if owner.seen % settings.trace_rate:
                return None
            if settings.trace_count > 0:
                owner.count = settings.trace_count - 1
            trace_id, self._next_id = self._next_id, self._next_id + 1
        trace = RequestTrace(
            trace_id, model, version, request_id, lambda records: self._done(owner, records)
        )
        trace.stamp("REQUEST_START")
        return trace

    def _done(self, owner: _Owner, records: list[dict[str, Any]]) -> None:
        with self._lock:
            owner.pending.extend(records)
            owner.traces += 1
            frequency = self._setting_of(owner).log_frequency
            if frequency and owner.traces >= frequency:
                self._write(owner, indexed=True)

    def _setting_of(self, owner: _Owner) -> TraceSettings:
        if owner is self._global_owner:
            return self._global
        return replace(self._global, **owner.overrides)

    def _flush(self, owner: _Owner) -> None:
        """Write what ``owner`` holds, as its setting would at shutdown."""
        if owner.pending:
            self._write(owner, indexed=bool(self._setting_of(owner).log_frequency))

    def _write(self, owner: _Owner, *, indexed: bool) -> None:
        base = owner.file or self._global.trace_file
        records, owner.pending, owner.traces = owner.pending, [], 0
        if not base:
            return
        path = f"{base}.{owner.written}" if indexed else base
        if indexed:
            owner.written += 1
        try:
            atomic_write_bytes(path, json.dumps(records, separators=(",", ":")).encode())
        except OSError as exc:
            _log.error("cannot write the trace file %s: %s", path, exc)

    def close(self) -> None:
        """Write every trace still held (the server is stopping)."""
        with self._lock:
            for owner in (self._global_owner, *self._models.values()):
                self._flush(owner)
