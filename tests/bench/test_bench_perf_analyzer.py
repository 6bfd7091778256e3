"""perf_analyzer wrapper: CSV parsing on recorded output, argument building, failure paths.

The CSVs below were recorded from perf_analyzer 2.51 against ``headrace serve`` (MLP model,
HTTP, concurrency 4), once with ``--verbose-csv`` and once without. The run tests use a fake
executable, so they need neither perf_analyzer nor a server.
"""

from __future__ import annotations

import os
import stat
import textwrap
from pathlib import Path

import pytest

from headrace.bench.perf_analyzer import (
    PerfAnalyzerFailed,
    PerfLoad,
    UnstableMeasurement,
    locate,
    parse_csv,
    perf_analyzer_args,
    run_perf_analyzer,
)
from headrace.errors import InvalidConfig, InvalidInput, Unavailable

VERBOSE_CSV = (
    "Concurrency,Inferences/Second,Client Send,Network+Server Send/Recv,Server Queue,"
    "Server Compute Input,Server Compute Infer,Server Compute Output,Client Recv,p50 latency,"
    "p90 latency,p95 latency,p99 latency,Avg latency,request/response,response wait\n"
    "4,2221.6,41,1461,125,37,99,15,0,1417,2184,3828,9932,1780,41,1736\n"
)
PLAIN_CSV = (
    "Concurrency,Inferences/Second,Client Send,Network+Server Send/Recv,Server Queue,"
    "Server Compute Input,Server Compute Infer,Server Compute Output,Client Recv,p50 latency,"
    "p90 latency,p95 latency,p99 latency\n"
    "4,1752.08,44,1904,145,45,123,14,0,1499,3601,8548,13133\n"
    "16,2301.5,40,5100,900,50,140,16,0,6000,9000,11000,19000\n"
)


def test_parse_verbose_csv_keeps_breakdown_and_extra_columns() -> None:
    (row,) = parse_csv(VERBOSE_CSV)
    assert row.concurrency == 4
    assert row.throughput == pytest.approx(2221.6)
    assert (row.server_queue_us, row.server_compute_input_us) == (125, 37)
    assert (row.server_compute_infer_us, row.server_compute_output_us) == (99, 15)
    assert (row.p50_us, row.p90_us, row.p95_us, row.p99_us, row.avg_us) == (
        1417,
        2184,
        3828,
        9932,
        1780,
    )
    assert row.network_us == 1461
    assert row.extra == {"request/response": 41, "response wait": 1736}


def test_parse_plain_csv_with_several_levels() -> None:
    rows = parse_csv(PLAIN_CSV + "\n")
    assert [r.concurrency for r in rows] == [4, 16]
    assert rows[1].p99_us == 19000
    assert rows[1].avg_us == 0.0  # absent without --verbose-csv
    assert rows[0].extra == {}


def test_parse_rejects_other_files_and_bad_numbers() -> None:
    with pytest.raises(InvalidInput, match="Inferences/Second"):
        parse_csv("a,b\n1,2\n")
    broken = PLAIN_CSV.replace("1752.08", "fast")
    with pytest.raises(InvalidInput, match="'Inferences/Second' has 'fast'"):
        parse_csv(broken)


def test_args_name_every_bound() -> None:
    load = PerfLoad(
        "mlp",
        "127.0.0.1:8001",
        protocol="http",
        concurrency=16,
        shapes={"INPUT0": [64]},
        measurement_ms=1500,
        max_trials=4,
        stability_percent=25,
    )
    args = perf_analyzer_args(load, "/tmp/x.csv")
    joined = " ".join(args)
    assert "-m mlp -u 127.0.0.1:8001 -i http -b 1 --concurrency-range 16" in joined
    assert "-p 1500 -r 4 -s 25 -f /tmp/x.csv --shape INPUT0:64" in joined
    assert load.bound_s() == pytest.approx(4 * 1.5 * 1.5 + 30)


def test_load_validation_names_the_value() -> None:
    with pytest.raises(InvalidConfig, match="'udp'"):
        PerfLoad("m", "u", protocol="udp")
    with pytest.raises(InvalidConfig, match="concurrency must be >= 1, got 0"):
        PerfLoad("m", "u", concurrency=0)
    with pytest.raises(InvalidConfig, match="streaming loads need protocol 'grpc'"):
        PerfLoad("m", "u", protocol="http", streaming=True)


def test_streaming_loads_ask_for_model_stream_infer() -> None:
    streaming = perf_analyzer_args(PerfLoad("m", "u", streaming=True), "/tmp/x.csv")
    assert streaming[-1] == "--streaming"
    assert "--streaming" not in perf_analyzer_args(PerfLoad("m", "u"), "/tmp/x.csv")


def _fake_tool(tmp_path: Path, body: str) -> str:
    """An executable that behaves like perf_analyzer: finds ``-f PATH`` and runs ``body``."""
    script = tmp_path / "fake-perf-analyzer"
    script.write_text(
        "#!/usr/bin/env bash\n"
        'out=""\n'
        'while [ $# -gt 0 ]; do [ "$1" = "-f" ] && out=$2; shift; done\n' + textwrap.dedent(body)
    )
    script.chmod(script.stat().st_mode | stat.S_IXUSR)
    return str(script)


def test_run_returns_the_row(tmp_path: Path) -> None:
    sample = tmp_path / "sample.csv"
    sample.write_text(VERBOSE_CSV)
    tool = _fake_tool(tmp_path, f'cp {sample} "$out"\n')
    row = run_perf_analyzer(PerfLoad("mlp", "127.0.0.1:1"), executable=tool)
    assert row.throughput == pytest.approx(2221.6)


def test_run_reports_instability_and_errors(tmp_path: Path) -> None:
    unstable = _fake_tool(
        tmp_path, 'echo "Failed to obtain stable measurement within 6 windows"; exit 1\n'
    )
    with pytest.raises(UnstableMeasurement, match="concurrency 1"):
        run_perf_analyzer(PerfLoad("mlp", "127.0.0.1:1"), executable=unstable)
    failing = _fake_tool(tmp_path, 'echo "Thread [0] had error: model not found"; exit 99\n')
    with pytest.raises(PerfAnalyzerFailed, match=r"exited 99.*model not found"):
        run_perf_analyzer(PerfLoad("nope", "127.0.0.1:1"), executable=failing)


def test_run_stops_an_overrunning_tool(tmp_path: Path) -> None:
    stuck = _fake_tool(tmp_path, "exec sleep 60\n")
    with pytest.raises(PerfAnalyzerFailed, match="ran past"):
        run_perf_analyzer(PerfLoad("mlp", "127.0.0.1:1"), executable=stuck, timeout_s=0.5)


def test_locate_prefers_the_environment(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    tool = _fake_tool(tmp_path, "exit 0\n")
    monkeypatch.setenv("HEADRACE_PERF_ANALYZER", tool)
    assert locate() == tool
    monkeypatch.setenv("HEADRACE_PERF_ANALYZER", os.fspath(tmp_path / "missing"))
    with pytest.raises(Unavailable, match="missing"):
        locate()
