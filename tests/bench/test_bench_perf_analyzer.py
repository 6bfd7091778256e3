"""perf_analyzer wrapper: CSV parsing on recorded output, argument building, failure paths.

The CSVs below were recorded from perf_analyzer 2.51 against ``headrace serve`` (MLP model,
HTTP, concurrency 4), once with ``--verbose-csv`` and once without. The run tests use a fake
executable, so they need neither perf_analyzer nor a server.
"""

from __future__ import annotations

import json
import os
import stat
import textwrap
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from headrace.bench.perf_analyzer import (
    PerfAnalyzerFailed,
    PerfLoad,
    UnstableMeasurement,
    locate,
    parse_csv,
    perf_analyzer_args,
    run_perf_analyzer,
    write_input_data,
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


def test_parse_a_decoupled_models_response_throughput() -> None:
    # the header perf_analyzer 2.51's client wrote for a decoupled model (3 responses a request)
    text = (
        "Concurrency,Inferences/Second,Response Throughput,Client Send,"
        "Network+Server Send/Recv,Server Queue,Server Compute Input,Server Compute Infer,"
        "Server Compute Output,Client Recv,p50 latency,p90 latency,p95 latency,p99 latency,"
        "Avg latency,request/response,response wait\n"
        "1,1286.47,3859.4,0,579,11,1,82,0,0,660,715,757,944,673,0,0\n"
    )
    (row,) = parse_csv(text)
    assert row.throughput == pytest.approx(1286.47)
    assert row.response_throughput == pytest.approx(3859.4)
    assert "Response Throughput" not in row.extra
    (plain,) = parse_csv(VERBOSE_CSV)
    assert plain.response_throughput is None


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
    with pytest.raises(InvalidConfig, match="sync=True cannot stream"):
        PerfLoad("m", "u", streaming=True, sync=True)


def test_streaming_loads_ask_for_model_stream_infer() -> None:
    streaming = perf_analyzer_args(PerfLoad("m", "u", streaming=True), "/tmp/x.csv")
    assert streaming[-1] == "--streaming"
    assert "--streaming" not in perf_analyzer_args(PerfLoad("m", "u"), "/tmp/x.csv")


def test_sequence_loads_name_perf_analyzers_flags() -> None:
    load = PerfLoad(
        "seq",
        "u",
        concurrency=8,
        sequence_length=10,
        sequence_length_variation=0,
        sequence_id_range=(100, 108),
        input_data="zero",
        streaming=True,
    )
    joined = " ".join(perf_analyzer_args(load, "/tmp/x.csv"))
    assert joined.endswith(
        "--input-data zero --sequence-length 10 --sequence-length-variation 0 "
        "--sequence-id-range 100:108 --streaming"
    )
    unbounded = PerfLoad("seq", "u", sequence_id_range=(5, None), input_data=Path("/d/in.json"))
    args = perf_analyzer_args(unbounded, "/tmp/x.csv")
    # 2.51 misreads a lone start (an unset end): the end is always given, its largest id
    assert args[-4:] == ["--input-data", "/d/in.json", "--sequence-id-range", "5:2147483647"]
    synchronous = PerfLoad("seq", "u", protocol="http", sync=True)
    assert perf_analyzer_args(synchronous, "/tmp/x.csv")[-1] == "--sync"
    plain = perf_analyzer_args(PerfLoad("m", "u"), "/tmp/x.csv")
    assert not any(arg.startswith(("--sequence", "--input-data", "--sync")) for arg in plain)


@pytest.mark.parametrize(
    ("settings", "message"),
    [
        ({"sequence_length": 0}, "sequence_length must be >= 1, got 0"),
        ({"sequence_length_variation": -5}, "percentage >= 0, got -5"),
        ({"sequence_length_variation": float("nan")}, "got nan"),
        ({"sequence_id_range": (0, 100)}, r"\(0, 100\) must start at an id from 1"),
        ({"sequence_id_range": (2**31 - 1, None)}, "must start at an id from 1 to 2\\*\\*31 - 2"),
        ({"sequence_id_range": (10, 10)}, r"\(10, 10\) must end after its start"),
        ({"sequence_id_range": (1, 2**31)}, "must end after its start, at 2\\*\\*31 - 1 at most"),
        (
            {"sequence_id_range": (2**31 - 5, None), "concurrency": 8},
            "holds 4 ids, fewer than concurrency 8",
        ),
        (
            {"sequence_id_range": (1, 5), "concurrency": 8},
            r"\(1, 5\) holds 4 ids, fewer than concurrency 8",
        ),
        ({"input_data": ""}, "input_data must be 'zero', 'random' or a path"),
    ],
)
def test_sequence_settings_are_checked(settings: dict[str, Any], message: str) -> None:
    with pytest.raises(InvalidConfig, match=message):
        PerfLoad("m", "u", **settings)


def test_a_range_as_large_as_the_concurrency_is_enough() -> None:
    assert PerfLoad("m", "u", concurrency=8, sequence_id_range=(1, 9)).sequence_id_range == (1, 9)
    assert PerfLoad("m", "u", sequence_id_range=(2**31 - 2, 2**31 - 1)).concurrency == 1


def test_run_refuses_input_data_that_is_not_there(tmp_path: Path) -> None:
    tool = _fake_tool(tmp_path, "exit 0\n")
    load = PerfLoad("m", "u", input_data=tmp_path / "missing.json")
    with pytest.raises(InvalidConfig, match=r"missing\.json' is neither 'zero', 'random' nor"):
        run_perf_analyzer(load, executable=tool)


def test_write_input_data_streams_and_expected_outputs(tmp_path: Path) -> None:
    streams = [
        [{"INPUT": np.array([1], np.int32)}, {"INPUT": np.array([2], np.int32)}],
        [{"INPUT": np.array([10], np.int32)}, {"INPUT": np.array([20], np.int32)}],
    ]
    expected = [[{"OUTPUT": np.array([1], np.int32)}, {}], [{"OUTPUT": [10]}, {}]]
    path = write_input_data(tmp_path / "in.json", streams, expected)
    document = json.loads(path.read_text())
    assert document["data"][1] == [
        {"INPUT": {"content": [10], "shape": [1]}},
        {"INPUT": {"content": [20], "shape": [1]}},
    ]
    assert document["validation_data"][0] == [{"OUTPUT": {"content": [1], "shape": [1]}}, {}]
    grid = {"x": np.arange(6, dtype=np.float32).reshape(2, 3), "s": np.array([b"a", "b"])}
    (step,) = json.loads(write_input_data(tmp_path / "g.json", [[grid]]).read_text())["data"][0]
    assert step == {
        "x": {"content": [0.0, 1.0, 2.0, 3.0, 4.0, 5.0], "shape": [2, 3]},
        "s": {"content": ["a", "b"], "shape": [2]},
    }
    assert "validation_data" not in json.loads((tmp_path / "g.json").read_text())


def test_write_input_data_refuses_what_perf_analyzer_would_misread(tmp_path: Path) -> None:
    step = {"INPUT": np.array([1], np.int32)}
    with pytest.raises(InvalidConfig, match=r"streams have \[1, 2\] steps"):
        write_input_data(tmp_path / "a.json", [[step], [step, step]])
    with pytest.raises(InvalidConfig, match="at least one stream"):
        write_input_data(tmp_path / "a.json", [])
    with pytest.raises(InvalidConfig, match=r"expected outputs have \[1\] steps per stream"):
        write_input_data(tmp_path / "a.json", [[step, step]], [[{}]])
    with pytest.raises(InvalidConfig, match="'when' has unsupported dtype"):
        write_input_data(tmp_path / "a.json", [[{"when": np.array(["2024-01-01"], "M8[D]")}]])


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


def test_run_reports_errors_after_the_measurement(tmp_path: Path) -> None:
    # perf_analyzer exits 0 when requests fail only while it ends its open sequences
    sample = tmp_path / "sample.csv"
    sample.write_text(VERBOSE_CSV)
    tool = _fake_tool(
        tmp_path,
        f'cp {sample} "$out"\n'
        'echo "Thread [0] had error: Output doesn\'t match expected output"\n'
        'echo "Thread [3] had error: sequence 7 was released"\n',
    )
    with pytest.raises(PerfAnalyzerFailed, match=r"reported 2 failed request\(s\).*released"):
        run_perf_analyzer(PerfLoad("seq", "127.0.0.1:1"), executable=tool)


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


def test_args_for_request_rate_strings_and_version() -> None:
    load = PerfLoad("m", "u", request_rate=250.0, string_length=16, model_version="2")
    args = perf_analyzer_args(load, "/tmp/x.csv")
    joined = " ".join(args)
    assert "--request-rate-range 250 " in joined
    assert "--concurrency-range" not in args
    assert "--verbose-csv" in args  # the CSV then carries Avg latency
    assert "-x 2" in joined and "--string-length 16" in joined
    with pytest.raises(InvalidConfig, match="--request-rate must be > 0, got 0"):
        PerfLoad("m", "u", request_rate=0.0)
