"""The server's log settings, Triton's ``v2/logging``: read and changed at run time, for real.

:class:`LogControl` holds the settings (``log_file``, ``log_info``, ``log_warning``,
``log_error``, ``log_verbose_level``, ``log_format``) and, once :meth:`~LogControl.install`\\ ed
by ``headrace serve``, applies them to Python's logging: one handler on the root logger (on
stderr, or appending to ``--log-file``), a filter that lets each severity through as its flag
says (DEBUG records are Triton's verbose level 1 and up), and the ``headrace`` logger's level
low enough for what is enabled. A change takes effect with the next record.

As Triton: the log file can only be chosen at start (a network update of ``log_file`` is
UNIMPLEMENTED), unknown keys and null values change nothing, ``log_format`` is ``default``
(``I1205 07:10:11.123456 4242 headrace.server.app] message``) or ``ISO8601``
(``2026-12-05T07:10:11Z I 4242 headrace.server.app] message``). Values of the wrong type are
refused as invalid arguments (Triton answers those with a 500 that names its JSON parser).
"""

from __future__ import annotations

import logging
import os
import sys
import threading
import time
from collections.abc import Mapping
from dataclasses import dataclass, replace
from typing import Any, TextIO

from headrace.errors import InvalidInput, Unsupported

__all__ = ["LOG_FORMATS", "LogControl", "LogSettings"]

LOG_FORMATS = ("default", "ISO8601")


@dataclass(frozen=True)
class LogSettings:
    """One state of the log settings, with Triton's names and defaults."""

    log_file: str = ""
    log_info: bool = True
    log_warning: bool = True
    log_error: bool = True
    log_verbose_level: int = 0
    log_format: str = "default"

    def __post_init__(self) -> None:
        if self.log_format not in LOG_FORMATS:
            raise InvalidInput(f"invalid argument for log_format, got: {self.log_format}")
        if not 0 <= self.log_verbose_level < 2**32:
            raise InvalidInput(
                f"log_verbose_level must be an unsigned integer, got {self.log_verbose_level}"
            )

    def as_json(self) -> dict[str, Any]:
        """The settings as Triton's HTTP ``v2/logging`` answers them (and in that order)."""
        return {
            "log_file": self.log_file,
            "log_info": self.log_info,
            "log_warning": self.log_warning,
            "log_error": self.log_error,
            "log_verbose_level": self.log_verbose_level,
            "log_format": self.log_format,
        }

    def enabled(self, level: int) -> bool:
        """Whether a record of this logging level is written."""
        if level >= logging.ERROR:
            return self.log_error
        if level >= logging.WARNING:
            return self.log_warning
        if level >= logging.INFO:
            return self.log_info
        return self.log_verbose_level > 0


_BOOLS = ("log_info", "log_warning", "log_error")


def updated(settings: LogSettings, changes: Mapping[str, Any]) -> LogSettings:
    """``settings`` with ``changes`` applied as Triton applies a ``v2/logging`` update."""
    fields: dict[str, Any] = {}
    if "log_file" in changes:
        raise Unsupported("log file location can not be updated through network protocol")
    for key in _BOOLS:
        value = changes.get(key)
        if value is None:
            continue
        if not isinstance(value, bool):
            raise InvalidInput(f"'{key}' must be a boolean, got {value!r}")
        fields[key] = value
    level = changes.get("log_verbose_level")
    if level is not None:
        if isinstance(level, bool) or not isinstance(level, int) or not 0 <= level < 2**32:
            raise InvalidInput(f"'log_verbose_level' must be an unsigned integer, got {level!r}")
        fields["log_verbose_level"] = level
    form = changes.get("log_format")
    if form is not None:
        if form not in LOG_FORMATS:
            raise InvalidInput(f"invalid argument for log_format, got: {form}")
        fields["log_format"] = form
    return replace(settings, **fields)


class _Formatter(logging.Formatter):
    """Triton's two line layouts, with the logger's name where Triton puts its source file."""

    def __init__(self, control: LogControl) -> None:
        super().__init__()
        self._control = control

    def format(self, record: logging.LogRecord) -> str:
        severity = _SEVERITY.get(record.levelno, "V" if record.levelno < logging.INFO else "E")
        pid = os.getpid()
        if self._control.settings.log_format == "ISO8601":
            stamp = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(record.created))
            head = f"{stamp} {severity} {pid} {record.name}]"
        else:
            local = time.localtime(record.created)
            micros = int((record.created % 1) * 1_000_000)
            head = f"{severity}{time.strftime('%m%d %H:%M:%S', local)}.{micros:06d} {pid} {record.name}]"
        text = f"{head} {record.getMessage()}"
        if record.exc_info:
            text = f"{text}\n{self.formatException(record.exc_info)}"
        return text


_SEVERITY = {
    logging.DEBUG: "V",
    logging.INFO: "I",
    logging.WARNING: "W",
    logging.ERROR: "E",
    logging.CRITICAL: "E",
}


class LogControl:
    """The current :class:`LogSettings`; applied to logging once installed.

    Until :meth:`install` it only holds the settings (a core made in a test reconfigures
    nothing). ``target`` is the logger whose handlers it replaces (the root logger by default);
    the ``headrace`` logger's level follows the settings.
    """

    def __init__(self, settings: LogSettings | None = None) -> None:
        self._settings = settings or LogSettings()
        self._lock = threading.Lock()
        self._handler: logging.Handler | None = None
        self._target: logging.Logger | None = None
        self._previous: list[logging.Handler] = []
        self._file: TextIO | None = None

    @property
    def settings(self) -> LogSettings:
        return self._settings

    @property
    def stream(self) -> TextIO:
        """Where records go: the ``--log-file`` once installed with one, else stderr."""
        return self._file if self._file is not None else sys.stderr

    def update(self, changes: Mapping[str, Any]) -> LogSettings:
        """Apply a ``v2/logging`` update; returns the settings now in force."""
        with self._lock:
            self._settings = updated(self._settings, changes)
            self._apply_levels()
            return self._settings

    def install(self, target: logging.Logger | None = None) -> None:
        """Send the process's log records through these settings (``headrace serve`` does)."""
        if self._handler is not None:
            return
        target = target if target is not None else logging.getLogger()
        if self._settings.log_file:
            try:
                self._file = open(self._settings.log_file, "a", encoding="utf-8")  # noqa: SIM115
            except OSError as exc:
                raise InvalidInput(
                    f"--log-file {self._settings.log_file!r} cannot be opened: {exc.strerror}"
                ) from exc
        handler = logging.StreamHandler(self._file if self._file is not None else sys.stderr)
        handler.setFormatter(_Formatter(self))
        handler.addFilter(lambda record: self._settings.enabled(record.levelno))
        self._previous = list(target.handlers)
        for old in self._previous:
            target.removeHandler(old)
        target.addHandler(handler)
        self._handler, self._target = handler, target
        self._apply_levels()

    def close(self) -> None:
        """Give the logger its previous handlers back and close the log file."""
        handler, target = self._handler, self._target
        if handler is None or target is None:
            return
        target.removeHandler(handler)
        for old in self._previous:
            target.addHandler(old)
        self._handler = self._target = None
        if self._file is not None:
            self._file.close()
            self._file = None

    def _apply_levels(self) -> None:
        if self._handler is None:
            return
        settings = self._settings
        if settings.log_verbose_level > 0:
            level = logging.DEBUG
        elif settings.log_info:
            level = logging.INFO
        else:
            level = logging.WARNING
        logging.getLogger("headrace").setLevel(level)
