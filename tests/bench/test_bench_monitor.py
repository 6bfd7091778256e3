"""The resource monitor: CSV rows from psutil, the GPU sources through fakes, the child process.

NVML and amdsmi are exercised with fake modules here; against a real GPU only the ``gpu``
test runs (skipped on a machine without one).
"""

from __future__ import annotations

import csv
import io
import sys
import threading
import time
import types
from pathlib import Path

import pytest

from headrace.bench import monitor
from headrace.bench.monitor import COLUMNS, GpuSampler, gpu_source, run_alongside, run_monitor

pytest.importorskip("psutil")


def rows_of(text: str) -> list[list[str]]:
    return list(csv.reader(io.StringIO(text)))


def test_rows_have_the_columns_and_empty_gpu_cells_without_a_gpu() -> None:
    out = io.StringIO()
    written = run_monitor(out, interval_s=0.01, stop=threading.Event(), max_rows=3)
    rows = rows_of(out.getvalue())
    assert written == 3 and tuple(rows[0]) == COLUMNS and len(rows) == 4
    times = [float(row[0]) for row in rows[1:]]
    assert times == sorted(times)
    for row in rows[1:]:
        assert row[1:3] == ["", ""]
        assert 0.0 <= float(row[3]) <= 100.0 and 0.0 < float(row[4]) <= 100.0


def test_a_gpu_sampler_fills_the_gpu_columns_and_a_failing_read_leaves_them_empty() -> None:
    readings = iter([(55.0, 12.5), RuntimeError("reset"), (60.0, 13.0)])

    def read() -> tuple[float, float]:
        value = next(readings)
        if isinstance(value, Exception):
            raise value
        return value

    out = io.StringIO()
    sampler = GpuSampler("fake", read, lambda: None)
    run_monitor(out, interval_s=0.01, stop=threading.Event(), gpu=sampler, max_rows=3)
    assert [row[1:3] for row in rows_of(out.getvalue())[1:]] == [
        ["55.0", "12.5"],
        ["", ""],
        ["60.0", "13.0"],
    ]


def test_a_set_stop_event_ends_the_log_with_the_header_only() -> None:
    stop = threading.Event()
    stop.set()
    out = io.StringIO()
    assert run_monitor(out, interval_s=10.0, stop=stop) == 0
    assert rows_of(out.getvalue()) == [list(COLUMNS)]


def fake_pynvml(fail: bool = False) -> types.ModuleType:
    module = types.ModuleType("pynvml")

    def init() -> None:
        if fail:
            raise RuntimeError("NVML Shared Library Not Found")

    module.nvmlInit = init  # type: ignore[attr-defined]
    module.nvmlShutdown = lambda: None  # type: ignore[attr-defined]
    module.nvmlDeviceGetHandleByIndex = lambda index: f"gpu{index}"  # type: ignore[attr-defined]
    module.nvmlDeviceGetUtilizationRates = lambda h: types.SimpleNamespace(gpu=87)  # type: ignore[attr-defined]
    module.nvmlDeviceGetMemoryInfo = lambda h: types.SimpleNamespace(used=1, total=4)  # type: ignore[attr-defined]
    return module


def fake_amdsmi() -> types.ModuleType:
    module = types.ModuleType("amdsmi")
    module.AmdSmiMemoryType = types.SimpleNamespace(VRAM="vram")  # type: ignore[attr-defined]
    module.amdsmi_init = lambda: None  # type: ignore[attr-defined]
    module.amdsmi_shut_down = lambda: None  # type: ignore[attr-defined]
    module.amdsmi_get_processor_handles = lambda: ["mi300"]  # type: ignore[attr-defined]
    module.amdsmi_get_gpu_activity = lambda h: {"gfx_activity": 42, "umc_activity": 3}  # type: ignore[attr-defined]
    module.amdsmi_get_gpu_memory_usage = lambda h, kind: 3 << 30  # type: ignore[attr-defined]
    module.amdsmi_get_gpu_memory_total = lambda h, kind: 12 << 30  # type: ignore[attr-defined]
    return module


def test_nvml_is_used_when_it_finds_a_gpu(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "pynvml", fake_pynvml())
    sampler, description = gpu_source()
    assert sampler is not None and sampler.source == "nvml"
    assert description == "NVIDIA GPU 0 through NVML"
    assert sampler.read() == (87.0, 25.0)


def test_amdsmi_is_used_when_nvml_finds_nothing(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "pynvml", fake_pynvml(fail=True))
    monkeypatch.setitem(sys.modules, "amdsmi", fake_amdsmi())
    sampler, description = gpu_source()
    assert sampler is not None and sampler.source == "amdsmi"
    assert description == "AMD GPU 0 through amdsmi"
    assert sampler.read() == (42.0, 25.0)


def test_no_gpu_source_says_why_for_each(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "pynvml", fake_pynvml(fail=True))
    monkeypatch.setitem(sys.modules, "amdsmi", None)  # import fails: not installed
    sampler, description = gpu_source()
    assert sampler is None
    assert description == (
        "GPU columns empty: NVML found no NVIDIA GPU 0 (NVML Shared Library Not Found); "
        "amdsmi is not installed"
    )


def test_run_alongside_logs_from_a_child_process_until_the_block_ends(tmp_path: Path) -> None:
    path = tmp_path / "log" / "monitor.csv"
    with run_alongside(str(path), interval_s=0.05) as run:
        assert run.csv == str(path) and run.interval_s == 0.05
        assert path.read_text().startswith("Timestamp,")  # ready before the block starts
        deadline = time.monotonic() + 30.0
        while path.read_text().count("\n") < 3 and time.monotonic() < deadline:
            threading.Event().wait(0.05)  # the child writes a row every 0.05 s
    rows = rows_of(path.read_text())
    assert tuple(rows[0]) == COLUMNS and len(rows) >= 3
    assert run.gpu  # the source, or why the GPU columns are empty


def test_monitor_command_stops_after_its_duration(tmp_path: Path) -> None:
    from headrace.cli import main

    out = tmp_path / "m.csv"
    assert (
        main(["bench", "monitor", "--out", str(out), "--interval", "0.05", "--duration", "0.2"])
        == 0
    )
    assert tuple(rows_of(out.read_text())[0]) == COLUMNS


@pytest.mark.gpu
def test_a_real_gpu_is_found_by_nvml_or_amdsmi() -> None:
    torch = pytest.importorskip("torch")
    if not torch.cuda.is_available():
        pytest.skip("no GPU")
    sampler, description = gpu_source()
    assert sampler is not None, description
    try:
        util, memory = sampler.read()
        assert 0.0 <= util <= 100.0 and 0.0 <= memory <= 100.0
    finally:
        sampler.close()


def test_module_exports() -> None:
    assert set(monitor.__all__) >= {"run_alongside", "run_monitor", "gpu_source"}
