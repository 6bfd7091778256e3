"""perf_analyzer drives sequence models served by ``headrace serve``: no errors, right answers.

Runs where perf_analyzer is installed (``../shared/tools/perf-analyzer``; not in CI). One
server serves the sequence models of tests/data/python_models that perf_analyzer can drive
and the examples repository's ``snapshotter``:

- ``seq_accumulate``: direct strategy, implicit state, four slots;
- ``seq_controls``: oldest strategy over two instances, START/END/READY/CORRID controls, the
  sums kept by the model per instance (a request on the wrong instance loses count);
- ``seq_string``: no batching (one slot), a state that starts from a file;
- ``snapshotter``: direct strategy, eight slots, a READY control and a [2, 1024] state.

``seq_corrid`` is left out: its CORRID control is TYPE_STRING and perf_analyzer 2.51 sends
integer ids only (it has no flag for string ids), which the server refuses, as the last test
shows.

Over gRPC (unary and ``--streaming``) perf_analyzer sends fixed streams of five steps and
compares each answer with the one a correct server gives (every step but the last, which
perf_analyzer reuses to end the sequences open when it stops); over HTTP it sends zeros in
sequences of varying length, synchronously (see ``PerfLoad.sync``). Concurrency goes past
the slots, so new sequences wait in the backlog. Any failed or wrong answer fails the test
(:func:`run_perf_analyzer` raises).
"""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from serve_process import ServeProcess, examples_repository, start_server

from headrace.bench.perf_analyzer import (
    PerfAnalyzerFailed,
    PerfLoad,
    locate,
    run_perf_analyzer,
    write_input_data,
)
from headrace.errors import Unavailable
from headrace.repository.examples import STREAM_CHANNELS, STREAM_SNAPSHOT, STREAM_UPDATE

MODELS = Path(__file__).resolve().parent.parent / "data" / "python_models"
TOOL = (
    Path.home() / ".cache" / "headrace-tools" / "perf-analyzer" / "venv" / "bin" / "perf_analyzer"
)
SEQUENCE_MODELS = ("seq_accumulate", "seq_controls", "seq_string", "seq_corrid")
DRIVEN = ("seq_accumulate", "seq_controls", "seq_string", "snapshotter")
STREAMS = 4
STEPS = 5

Step = dict[str, Any]


def _values(stream: int) -> list[int]:
    """The INPUT of each step of ``stream`` (some negative: a sum must not only grow)."""
    return [stream + 1, -(stream + 2), 3, 2 * stream, 7]


def _counting(model: str) -> tuple[list[list[Step]], list[list[Step]]]:
    """Streams of INPUT values and the running sums (plus controls) a correct server returns."""
    streams, expected = [], []
    for index in range(STREAMS):
        values = _values(index)
        streams.append([{"INPUT": np.array([v], np.int32)} for v in values])
        answers: list[Step] = []
        for step, total in enumerate(np.cumsum(values).tolist()):
            if model == "seq_string":
                total += 100  # its state starts from initial_state/hundred
            answer: Step = {"OUTPUT": np.array([total], np.int32)}
            if model == "seq_controls":  # [START (fp32 0/1), END (bool), READY (int32 0/5)]
                answer["CONTROLS"] = np.array([float(step == 0), 0.0, 5.0], np.float32)
            answers.append(answer)
        expected.append(answers)
    return streams, expected


def _snapshots() -> tuple[list[list[Step]], list[list[Step]]]:
    """Streams of updates and the snapshot after each: the last four updates, zeros before."""
    streams, expected = [], []
    ramp = np.arange(STREAM_CHANNELS * STREAM_UPDATE) % 13
    for index in range(STREAMS):
        snapshot = np.zeros((STREAM_CHANNELS, STREAM_SNAPSHOT), np.float32)
        updates: list[Step] = []
        answers: list[Step] = []
        for step in range(STEPS):
            update = (ramp + 100 * index + 16 * step).astype(np.float32)
            update = update.reshape(STREAM_CHANNELS, STREAM_UPDATE)
            snapshot = np.concatenate([snapshot[:, STREAM_UPDATE:], update], axis=1)
            updates.append({"update": update})
            answers.append({"snapshot": snapshot.copy()})
        streams.append(updates)
        expected.append(answers)
    return streams, expected


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServeProcess]:
    if not TOOL.exists():
        pytest.skip("perf_analyzer is not installed")
    try:
        locate()
    except Unavailable:
        pytest.skip("perf_analyzer is not installed")
    workdir = tmp_path_factory.mktemp("sequence-pa")
    repository = workdir / "repo"
    for name in SEQUENCE_MODELS:
        shutil.copytree(MODELS / name, repository / name)
    shutil.copytree(
        examples_repository(tmp_path_factory) / "snapshotter", repository / "snapshotter"
    )
    process = start_server(repository, workdir)
    yield process
    assert process.stop() == 0, process.log_tail()


@pytest.fixture(scope="module")
def checked_data(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """Per model, a JSON input file whose answers perf_analyzer checks (all but last steps)."""
    folder = tmp_path_factory.mktemp("sequence-pa-data")
    files = {}
    for model in DRIVEN:
        streams, expected = _snapshots() if model == "snapshotter" else _counting(model)
        unchecked_last = [[*answers[:-1], {}] for answers in expected]
        files[model] = write_input_data(folder / f"{model}.json", streams, unchecked_last)
    return files


@pytest.mark.slow
@pytest.mark.parametrize("model", DRIVEN)
@pytest.mark.parametrize(
    ("protocol", "streaming", "concurrency"),
    [
        ("grpc", False, 4),
        ("grpc", False, 16),
        ("grpc", True, 16),
        ("http", False, 8),
    ],
    ids=["grpc-4", "grpc-16", "stream-16", "http-8"],
)
def test_perf_analyzer_runs_sequences_without_an_error(
    server: ServeProcess,
    checked_data: dict[str, Path],
    model: str,
    protocol: str,
    streaming: bool,
    concurrency: int,
) -> None:
    settings: dict[str, Any]
    if protocol == "grpc":
        settings = {"input_data": checked_data[model]}
    else:  # perf_analyzer checks HTTP answers only with every output at every step
        settings = {"input_data": "zero", "sequence_length": 6, "sequence_length_variation": 50}
        # asynchronous, it ends its open sequences racing their requests in flight, over
        # connections of their own: an END may overtake its START (PerfLoad.sync)
        settings["sync"] = True
    load = PerfLoad(
        model,
        server.grpc_url if protocol == "grpc" else server.http_url,
        protocol=protocol,
        streaming=streaming,
        concurrency=concurrency,
        # room to spare: in a range as small as the concurrency, perf_analyzer 2.51 sends id 0
        # now and then (see PerfLoad.sequence_id_range), which the server rightly refuses
        sequence_id_range=(1000, None),
        measurement_ms=500,
        max_trials=3,
        stability_percent=1e6,  # this checks errors and answers, not timing
        **settings,
    )
    row = run_perf_analyzer(load)  # raises on any failed or wrong answer
    assert row.throughput > 0


@pytest.mark.slow
def test_perf_analyzer_cannot_send_string_ids(server: ServeProcess) -> None:
    load = PerfLoad(
        "seq_corrid", server.grpc_url, measurement_ms=500, max_trials=3, stability_percent=1e6
    )
    with pytest.raises(PerfAnalyzerFailed, match="takes string sequence ids"):
        run_perf_analyzer(load)
