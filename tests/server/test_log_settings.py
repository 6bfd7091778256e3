"""Log settings (Triton's ``v2/logging``): validation, and that they really steer logging."""

from __future__ import annotations

import io
import logging
from collections.abc import Iterator
from pathlib import Path

import pytest

from headrace.errors import InvalidInput, Unsupported
from headrace.server.log_settings import LogControl, LogSettings, updated


def test_defaults_and_json_shape_are_tritons() -> None:
    assert LogSettings().as_json() == {
        "log_file": "",
        "log_info": True,
        "log_warning": True,
        "log_error": True,
        "log_verbose_level": 0,
        "log_format": "default",
    }


def test_update_applies_known_keys_and_ignores_unknown_and_null() -> None:
    settings = updated(
        LogSettings(),
        {
            "log_info": False,
            "log_verbose_level": 2,
            "log_format": "ISO8601",
            "x": 1,
            "log_error": None,
        },
    )
    assert settings == LogSettings(log_info=False, log_verbose_level=2, log_format="ISO8601")


@pytest.mark.parametrize(
    ("changes", "words"),
    [
        ({"log_info": "false"}, "'log_info' must be a boolean, got 'false'"),
        ({"log_verbose_level": -1}, "'log_verbose_level' must be an unsigned integer, got -1"),
        ({"log_verbose_level": True}, "'log_verbose_level' must be an unsigned integer"),
        ({"log_format": "bad"}, "invalid argument for log_format, got: bad"),
    ],
)
def test_bad_values_are_invalid_input(changes: dict[str, object], words: str) -> None:
    with pytest.raises(InvalidInput) as exc:
        updated(LogSettings(), changes)
    assert words in str(exc.value)


def test_log_file_cannot_change_over_the_network() -> None:
    with pytest.raises(Unsupported, match="log file location can not be updated through network"):
        updated(LogSettings(), {"log_file": "/tmp/elsewhere.log"})


@pytest.fixture
def target() -> Iterator[logging.Logger]:
    """A private logger to install on (the root logger is left alone)."""
    logger = logging.getLogger("test-log-settings-target")
    logger.propagate = False
    headrace = logging.getLogger("headrace")
    level = headrace.level
    yield logger
    headrace.setLevel(level)


def test_installed_settings_filter_and_format_records(
    target: logging.Logger, tmp_path: Path
) -> None:
    path = tmp_path / "server.log"
    control = LogControl(LogSettings(log_file=str(path), log_info=False))
    control.install(target)
    try:
        source = logging.getLogger("headrace.test.source")
        source.propagate = False
        source.addHandler(control_handler(target))
        source.info("hidden info")
        source.warning("shown warning")
        control.update({"log_info": True})
        source.info("shown info")
        source.debug("hidden debug")
        control.update({"log_verbose_level": 1, "log_format": "ISO8601", "log_warning": False})
        source.debug("shown debug")
        source.warning("hidden warning")
        source.removeHandler(control_handler(target))
    finally:
        control.close()
    lines = path.read_text().splitlines()
    assert [line.split("] ", 1)[1] for line in lines] == [
        "shown warning",
        "shown info",
        "shown debug",
    ]
    assert lines[0].startswith("W") and " headrace.test.source]" in lines[0]
    assert lines[2][:4].isdigit() and "T" in lines[2] and " V " in lines[2]  # ISO8601, verbose
    assert target.handlers == []  # close gave the logger its previous handlers back


def control_handler(target: logging.Logger) -> logging.Handler:
    return target.handlers[0]


def test_install_replaces_and_close_restores_handlers(target: logging.Logger) -> None:
    old = logging.StreamHandler(io.StringIO())
    target.addHandler(old)
    control = LogControl()
    control.install(target)
    assert target.handlers != [old] and len(target.handlers) == 1
    control.close()
    assert target.handlers == [old]
    target.removeHandler(old)


def test_a_log_file_that_cannot_be_opened_names_the_flag(tmp_path: Path) -> None:
    control = LogControl(LogSettings(log_file=str(tmp_path / "missing" / "x.log")))
    with pytest.raises(InvalidInput, match="--log-file"):
        control.install(logging.getLogger("test-log-settings-unopenable"))
