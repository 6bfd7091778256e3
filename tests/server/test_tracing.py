"""Trace settings and trace files, as Triton's ``triton`` trace mode keeps and writes them."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from headrace.errors import InvalidInput, Unsupported
from headrace.server.tracing import (
    TraceControl,
    TraceSettings,
    parse_trace_config,
    trace_changes_from_json,
)


def _control(tmp_path: Path, **settings: Any) -> TraceControl:
    start = TraceSettings(trace_file=str(tmp_path / "trace.json"), **settings)
    return TraceControl(start, known=lambda name: name in ("a", "b"))


def _traces(path: Path) -> list[dict[str, Any]]:
    return json.loads(path.read_text())


def _run(control: TraceControl, model: str, n: int, first: int = 0) -> None:
    for i in range(first, first + n):
        trace = control.sample(model, 1, f"r{i}")
        if trace is not None:
            trace.stamp("QUEUE_START")
            trace.computed(10, 20)
            trace.end()


def test_defaults_are_off_and_reported_as_triton_does() -> None:
    control = TraceControl()
    assert not control.on
    assert control.settings().as_json() == {
        "trace_level": ["OFF"],
        "trace_rate": "1000",
        "trace_count": "-1",
        "log_frequency": "0",
        "trace_file": "",
        "trace_mode": "triton",
    }


def test_every_rate_th_request_is_traced_and_written_at_close(tmp_path: Path) -> None:
    control = _control(tmp_path, trace_level=("TIMESTAMPS",), trace_rate=2)
    assert control.on
    _run(control, "a", 5)
    control.close()
    records = _traces(tmp_path / "trace.json")
    heads = [r for r in records if "model_name" in r]
    assert heads == [
        {"id": 1, "model_name": "a", "model_version": 1, "request_id": "r1"},
        {"id": 2, "model_name": "a", "model_version": 1, "request_id": "r3"},
    ]
    names = [r["timestamps"][0]["name"] for r in records if r["id"] == 1 and "timestamps" in r]
    assert names == ["REQUEST_START", "QUEUE_START", "COMPUTE_START", "COMPUTE_END", "REQUEST_END"]


def test_count_counts_down_and_log_frequency_writes_numbered_files(tmp_path: Path) -> None:
    control = _control(tmp_path, trace_level=("TIMESTAMPS",), trace_rate=1)
    control.update({"trace_count": ["3"], "log_frequency": ["2"]})
    _run(control, "a", 5)
    assert control.settings().trace_count == 0
    assert [len([r for r in _traces(tmp_path / "trace.json.0") if "model_name" in r])] == [2]
    control.close()
    last = _traces(tmp_path / "trace.json.1")
    assert [r["request_id"] for r in last if "model_name" in r] == ["r2"]


def test_model_settings_override_field_by_field_and_clear_with_null(tmp_path: Path) -> None:
    control = _control(tmp_path)
    assert control.update({"trace_rate": ["3"]}, "a").trace_rate == 3
    control.update({"trace_level": ["TIMESTAMPS"], "trace_rate": ["1"]})  # global
    assert control.settings("a").trace_level == ("TIMESTAMPS",)  # follows the global level
    assert control.settings("a").trace_rate == 3  # keeps its own rate
    assert control.settings("b").trace_rate == 1
    assert control.update({"trace_rate": None}, "a").trace_rate == 1
    assert control.update({"trace_level": None}).trace_level == ("OFF",)  # global: start value
    assert not control.on


def test_levels_as_triton_reads_them(tmp_path: Path) -> None:
    control = _control(tmp_path, trace_level=("TIMESTAMPS",))
    assert control.update({"trace_level": ["BAD"]}).trace_level == ("TIMESTAMPS",)
    assert control.update({"trace_level": []}).trace_level == ("TIMESTAMPS",)
    both = control.update({"trace_level": ["TENSORS", "TIMESTAMPS"]}).trace_level
    assert both == ("TIMESTAMPS", "TENSORS")
    with pytest.raises(InvalidInput, match="Expect only one trace level 'OFF' is specified"):
        control.update({"trace_level": ["OFF", "TIMESTAMPS"]})


@pytest.mark.parametrize(
    ("changes", "words"),
    [
        ({"trace_rate": ["x"]}, "Unable to parse 'trace_rate', got: x"),
        (
            {"trace_rate": ["99999999999"]},
            "Unable to parse 'trace_rate', value is out of range [ 0, 4294967295 ], got: 99999999999",
        ),
        ({"trace_count": ["-2"]}, "Unable to parse 'trace_count'. Expecting value >= -1, got: -2"),
        ({"log_frequency": ["x"]}, "Unable to parse 'log_frequency', got: x"),
        ({"trace_rate": ["0"], "trace_level": ["TIMESTAMPS"]}, "sample rate must be non-zero"),
    ],
)
def test_bad_updates_are_refused_and_change_nothing(
    tmp_path: Path, changes: dict[str, Any], words: str
) -> None:
    control = _control(tmp_path)
    before = control.settings()
    with pytest.raises(InvalidInput) as exc:
        control.update(changes)
    assert words in str(exc.value)
    assert control.settings() == before


def test_tracing_needs_a_file_and_the_file_is_only_set_at_start() -> None:
    control = TraceControl()
    with pytest.raises(InvalidInput, match="trace file name is not given"):
        control.update({"trace_level": ["TIMESTAMPS"]})
    with pytest.raises(Unsupported, match="trace file location can not be updated"):
        control.update({"trace_file": ["/tmp/x.json"]})


def test_unknown_models_are_refused(tmp_path: Path) -> None:
    control = _control(tmp_path)
    with pytest.raises(InvalidInput, match="Request for unknown model : nope"):
        control.settings("nope")
    with pytest.raises(InvalidInput, match="Request for unknown model : nope"):
        control.update({"trace_rate": ["2"]}, "nope")


def test_trace_config_flags() -> None:
    settings = parse_trace_config(
        [
            "triton,file=/tmp/t.json",
            "level=TIMESTAMPS",
            "rate=5",
            "count=7",
            "triton,log-frequency=3",
        ]
    )
    assert settings == TraceSettings(("TIMESTAMPS",), 5, 7, 3, "/tmp/t.json")
    with pytest.raises(InvalidInput, match="trace file name is not given"):
        parse_trace_config(["level=TIMESTAMPS"])
    with pytest.raises(InvalidInput, match="only 'triton' is supported"):
        parse_trace_config(["mode=opentelemetry"])
    with pytest.raises(InvalidInput, match="unknown setting 'speed'"):
        parse_trace_config(["speed=3"])


def test_http_bodies_become_changes() -> None:
    body = {"trace_level": ["TIMESTAMPS"], "trace_rate": "2", "trace_count": None}
    assert trace_changes_from_json(body) == {
        "trace_level": ["TIMESTAMPS"],
        "trace_rate": ["2"],
        "trace_count": None,
    }
    with pytest.raises(InvalidInput, match="'trace_rate' must be a string, got 1"):
        trace_changes_from_json({"trace_rate": 1})
    with pytest.raises(InvalidInput, match="'trace_level' must be a list of strings"):
        trace_changes_from_json({"trace_level": "TIMESTAMPS"})
