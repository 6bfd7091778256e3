"""``headrace bench load`` against a real ``headrace serve``: every wire, both load modes.

Tiny windows and a stability band no run can miss: these check that requests flow, are counted
and are matched with the server's statistics, not how fast anything is.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from serve_process import ServeProcess, examples_repository, start_server

from headrace.bench.load import LoadPoint, LoadSettings, run_load
from headrace.bench.perf_analyzer import locate
from headrace.errors import InvalidConfig, Unavailable

WIRES = ("http", "grpc", "grpc-stream")
DECOUPLED = Path(__file__).resolve().parent.parent / "data" / "python_models" / "repeat_decoupled"
"""Three responses per request, then the final flag on its own."""


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServeProcess]:
    workdir = tmp_path_factory.mktemp("bench-load")
    repository = workdir / "repo"
    shutil.copytree(examples_repository(tmp_path_factory), repository)
    shutil.copytree(DECOUPLED, repository / DECOUPLED.name)
    process = start_server(repository, workdir)
    yield process
    assert process.stop() == 0, process.log_tail()


def settings(server: ServeProcess, wire: str, model: str = "mlp", **extra: object) -> LoadSettings:
    protocol = "http" if wire == "http" else "grpc"
    url = server.http_url if protocol == "http" else server.grpc_url
    options: dict[str, object] = {
        "window_ms": 300,
        "max_trials": 3,
        "stability_percent": 1e6,
        "processes": 2,
        **extra,
    }
    return LoadSettings(
        url=url,
        model=model,
        protocol=protocol,
        streaming=wire == "grpc-stream",
        **options,  # type: ignore[arg-type]
    )


@pytest.mark.slow
@pytest.mark.parametrize(
    ("wire", "shared"),
    [("http", 1), ("grpc", 1), ("grpc", 2), ("grpc-stream", 1), ("grpc-stream", 2)],
)
def test_a_concurrency_sweep_on_every_wire(server: ServeProcess, wire: str, shared: int) -> None:
    points = [LoadPoint(concurrency=1), LoadPoint(concurrency=3)]
    load = settings(server, wire, batch_size=2, grpc_streams_per_connection=shared)
    results = list(run_load(load, points))
    assert [r.point.concurrency for r in results] == [1, 3]
    for result in results:
        assert result.error == "" and result.errors == 0
        assert result.stable and result.windows == 3
        assert result.protocol == wire and result.generator == "headrace"
        row = result.row
        assert row is not None and result.requests > 0
        assert row.throughput > 0
        assert 0 < row.p50_us <= row.p90_us <= row.p95_us <= row.p99_us
        assert row.avg_us > 0
        assert row.server_compute_infer_us > 0  # read from the statistics endpoint
        assert row.extra["server_request_us"] >= row.server_compute_infer_us
        assert row.response_throughput is None  # one response per request: not counted


@pytest.mark.slow
@pytest.mark.parametrize("wire", ["http", "grpc-stream"])
def test_request_rate_mode_and_bytes_inputs(server: ServeProcess, wire: str) -> None:
    load = settings(server, wire, model="identity_bytes", shapes={"INPUT0": [4]})
    (result,) = run_load(load, [LoadPoint(request_rate=60.0)])
    assert result.error == "" and result.errors == 0 and result.skipped == 0
    assert result.row is not None
    # 60/s over three 0.3 s windows: about 54 requests, whatever the machine's load
    assert 10 < result.requests < 120


@pytest.mark.slow
def test_a_failing_model_is_reported_not_hidden(server: ServeProcess) -> None:
    # python_add takes no batch dimension: batch size 2 is refused before any load
    from headrace.errors import InvalidInput

    with pytest.raises(InvalidInput, match="--batch-size must be 1"):
        list(run_load(settings(server, "http", model="python_add", batch_size=2), [LoadPoint(1)]))


@pytest.mark.slow
def test_the_command_writes_json_with_the_machine(server: ServeProcess, tmp_path: Path) -> None:
    out = tmp_path / "load.json"
    command = [sys.executable, "-m", "headrace.cli", "bench", "load", server.grpc_url, "mlp"]
    command += ["--protocol", "grpc", "--concurrency", "1:2", "--window-ms", "200"]
    command += ["--max-trials", "3", "--stability", "1000000", "--processes", "1"]
    done = subprocess.run(
        [*command, "--out", str(out)], capture_output=True, text=True, timeout=180
    )
    assert done.returncode == 0, done.stdout + done.stderr
    document = json.loads(out.read_text())
    assert document["machine"]["cpu_model"]
    assert [row["concurrency"] for row in document["rows"]] == [1, 2]
    assert all(row["throughput"] > 0 for row in document["rows"])
    assert "p99 " in done.stdout or "p99" in done.stdout


@pytest.mark.slow
@pytest.mark.parametrize("wire", WIRES)
def test_perf_analyzer_gives_the_same_rows(server: ServeProcess, wire: str) -> None:
    try:
        tool = locate()
    except Unavailable:
        pytest.skip("perf_analyzer is not installed")
    load = settings(server, wire, window_ms=500)
    (result,) = run_load(load, [LoadPoint(concurrency=2)], "perf_analyzer", tool)
    assert result.generator == "perf_analyzer" and result.error == "", result.error
    assert result.row is not None and result.row.throughput > 0
    assert result.row.avg_us > 0 and result.row.p99_us >= result.row.p50_us


@pytest.mark.slow
@pytest.mark.parametrize("shared", [1, 2])
def test_a_decoupled_model_is_timed_to_its_last_response_and_counts_them_all(
    server: ServeProcess, shared: int
) -> None:
    load = settings(server, "grpc-stream", "repeat_decoupled", grpc_streams_per_connection=shared)
    (result,) = run_load(load, [LoadPoint(concurrency=3)])
    assert result.error == "" and result.errors == 0, result.error
    row = result.row
    assert row is not None and result.requests > 0
    # every request ended with its final flag, after its three responses
    assert row.response_throughput == pytest.approx(3 * row.throughput)
    assert 0 < row.p50_us <= row.p99_us


@pytest.mark.slow
@pytest.mark.parametrize("wire", ["http", "grpc"])
def test_a_decoupled_model_off_a_stream_is_refused_with_the_way_to_measure_it(
    server: ServeProcess, wire: str
) -> None:
    load = settings(server, wire, "repeat_decoupled")
    with pytest.raises(InvalidConfig, match=r"decoupled.*--protocol grpc --streaming"):
        list(run_load(load, [LoadPoint(concurrency=1)]))


@pytest.mark.slow
def test_perf_analyzer_counts_a_decoupled_model_as_headrace_does(server: ServeProcess) -> None:
    try:
        tool = locate()
    except Unavailable:
        pytest.skip("perf_analyzer is not installed")
    load = settings(server, "grpc-stream", "repeat_decoupled", window_ms=500)
    (result,) = run_load(load, [LoadPoint(concurrency=2)], "perf_analyzer", tool)
    assert result.error == "", result.error
    assert result.row is not None and result.row.response_throughput is not None
    assert result.row.response_throughput == pytest.approx(3 * result.row.throughput, rel=0.02)


@pytest.mark.slow
def test_the_http2_client_answers_and_fails_as_grpc_does(server: ServeProcess) -> None:
    from tritonclient.grpc import service_pb2

    from headrace.bench.load_h2 import GrpcH2Connection, H2Error

    host, _, port = server.grpc_url.rpartition(":")
    path = "/inference.GRPCInferenceService/ModelInfer"
    connection = GrpcH2Connection(host, int(port), path, 10.0)
    request = service_pb2.ModelInferRequest(model_name="mlp")
    request.inputs.add(name="INPUT0", datatype="FP32", shape=[1, 64])
    request.raw_input_contents.append(bytes(4 * 64))
    for _ in range(3):  # one connection, stream after stream
        connection.call(request.SerializeToString())
    request.model_name = "no_such_model"
    with pytest.raises(H2Error, match="gRPC call failed"):
        connection.call(request.SerializeToString())
    big = service_pb2.ModelInferRequest(model_name="mlp")
    big.inputs.add(name="INPUT0", datatype="FP32", shape=[64, 64])
    big.raw_input_contents.append(bytes(4 * 64 * 64))  # 16 KiB: more than one DATA frame
    connection.call(big.SerializeToString())
    connection.close()


@pytest.mark.slow
def test_the_http2_stream_carries_request_after_request(server: ServeProcess) -> None:
    from tritonclient.grpc import service_pb2

    from headrace.bench.load_h2 import GrpcH2Stream, H2Error

    host, _, port = server.grpc_url.rpartition(":")
    path = "/inference.GRPCInferenceService/ModelStreamInfer"
    stream = GrpcH2Stream(host, int(port), path, 10.0)
    request = service_pb2.ModelInferRequest(model_name="mlp")
    request.inputs.add(name="INPUT0", datatype="FP32", shape=[1, 64])
    request.raw_input_contents.append(bytes(4 * 64))
    for _ in range(3):
        stream.call(request.SerializeToString())
    request.model_name = "no_such_model"
    with pytest.raises(H2Error, match="no_such_model"):
        stream.call(request.SerializeToString())
    stream.close()


@pytest.mark.slow
def test_threads_share_a_connection_and_each_gets_its_own_answer(server: ServeProcess) -> None:
    import threading

    from tritonclient.grpc import service_pb2

    from headrace.bench.load_h2 import H2Error
    from headrace.bench.load_h2_shared import (
        SharedConnections,
        SharedStreamCall,
        SharedUnaryCall,
    )

    host, _, port = server.grpc_url.rpartition(":")
    service = "/inference.GRPCInferenceService"
    pool = SharedConnections(host, int(port), 4, 10.0)
    request = service_pb2.ModelInferRequest(model_name="mlp")
    request.inputs.add(name="INPUT0", datatype="FP32", shape=[1, 64])
    request.raw_input_contents.append(bytes(4 * 64))
    big = service_pb2.ModelInferRequest(model_name="mlp")
    big.inputs.add(name="INPUT0", datatype="FP32", shape=[64, 64])
    big.raw_input_contents.append(bytes(4 * 64 * 64))  # more than one DATA frame
    failures: list[BaseException] = []

    def work(call: SharedUnaryCall | SharedStreamCall, body: bytes) -> None:
        try:
            for _ in range(30):
                call.call(body)
        except BaseException as exc:  # reported below
            failures.append(exc)

    calls = [SharedUnaryCall(pool, f"{service}/ModelInfer") for _ in range(2)]
    calls += [SharedStreamCall(pool, f"{service}/ModelStreamInfer") for _ in range(2)]
    bodies = [request.SerializeToString(), big.SerializeToString()] * 2
    threads = [threading.Thread(target=work, args=pair) for pair in zip(calls, bodies)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)
    assert failures == []
    assert list(pool.connections) == [0]  # four threads, four streams per connection: one
    request.model_name = "no_such_model"
    with pytest.raises(H2Error, match="gRPC call failed"):
        calls[0].call(request.SerializeToString())
    with pytest.raises(H2Error, match="no_such_model"):
        calls[2].call(request.SerializeToString())
    calls[2].call(big.SerializeToString())  # the error was an answer: the stream goes on
    connection = pool.get(0)
    pool.close()
    assert connection.broken
    with pytest.raises(H2Error, match="stopping"):
        calls[1].call(big.SerializeToString())
