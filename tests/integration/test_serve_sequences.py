"""Sequence batching end to end: ``headrace serve`` and unmodified tritonclient.

The server serves the ``seq_*`` python-backend models of tests/data/python_models; the client
script of :mod:`sequence_client` runs once against it (HTTP, gRPC, a gRPC stream, integer and
string ids, eight sequences at once, every kind of bad request) and each test checks one part
of its transcript. Error messages are Triton's words where Triton has them.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from sequence_client import outputs, scenario, sequence_repository
from serve_process import ServeProcess, start_server

INVALID = ("400", "StatusCode.INVALID_ARGUMENT")


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServeProcess]:
    workdir = tmp_path_factory.mktemp("sequences")
    process = start_server(sequence_repository(workdir / "repo"), workdir)
    yield process
    assert process.stop() == 0, process.log_tail()


@pytest.fixture(scope="module")
def transcript(server: ServeProcess) -> dict[str, Any]:
    return scenario(server.http_url, server.grpc_url)


def test_implicit_state_carries_each_sequence_over_http_and_grpc(
    transcript: dict[str, Any],
) -> None:
    assert outputs(transcript["http accumulate"]) == [5, 8, 10, 11]
    # a START on an open sequence goes on in its slot with a fresh state
    assert outputs(transcript["grpc accumulate, start on an open sequence"]) == [4, 8, 7, 8]
    assert all(set(a["outputs"]) == {"OUTPUT"} for a in transcript["http accumulate"])


def test_control_inputs_reach_the_model_with_their_configured_values(
    transcript: dict[str, Any],
) -> None:
    answers = transcript["grpc controls"]
    assert outputs(answers) == [5, 11, 18, 9]
    # [START (fp32 0/1), END (bool), READY (int32 0/5)]
    assert outputs(answers, "CONTROLS") == [[1, 0, 5], [0, 0, 5], [0, 1, 5], [1, 1, 5]]
    assert outputs(answers, "CORRID_OUT") == [201, 201, 201, 202]


def test_a_grpc_stream_carries_interleaved_sequences(transcript: dict[str, Any]) -> None:
    answers = transcript["grpc stream, two sequences interleaved"]
    assert outputs(answers) == [1, 10, 3, 30, 6, 60]
    assert outputs(answers, "CORRID_OUT") == [301, 302, 301, 302, 301, 302]


def test_string_ids_and_a_state_that_starts_from_a_file(transcript: dict[str, Any]) -> None:
    assert outputs(transcript["http string ids"]) == [101, 103, 106]
    assert outputs(transcript["http string ids"], "ID") == ["alpha"] * 3
    assert outputs(transcript["grpc string ids"]) == [105, 111]
    assert outputs(transcript["grpc string ids"], "ID") == ["beta"] * 2
    # without a CORRID control the model never sees the id as a tensor: both kinds go
    assert outputs(transcript["integer ids on a model without a CORRID control"], "ID") == ["77"]


def test_the_largest_uint64_ids_and_a_string_corrid_control(transcript: dict[str, Any]) -> None:
    largest = transcript["largest uint64 ids"]
    assert outputs(largest, "CORRID_OUT") == [2**63 + 5, 2**64 - 1]
    assert outputs(transcript["string CORRID control"]) == [1, 2]
    assert outputs(transcript["string CORRID control"], "ID") == ["delta", "delta"]


def test_concurrent_sequences_each_stay_on_their_instance(transcript: dict[str, Any]) -> None:
    # seq_controls keeps sums per instance: a request on the wrong instance would lose count
    for index, answers in enumerate(transcript["eight sequences at once"]):
        assert outputs(answers) == [1, 3, 6, 10, 15]
        assert outputs(answers, "CORRID_OUT") == [1000 + index] * 5


@pytest.mark.parametrize(
    ("step", "message"),
    [
        ("unknown sequence", "sequence 555 to model 'seq_accumulate' must specify the START"),
        ("sequence after its end", "sequence 101 to model 'seq_accumulate' must specify the"),
        ("no sequence id", "must specify a non-zero or non-empty correlation ID"),
        ("no sequence id, grpc", "must specify a non-zero or non-empty correlation ID"),
        ("batch of two", "must specify batch-size 1 due to requirements of sequence batcher"),
        ("client sends a control input", "input 'START'"),
        ("client sends a state input", "input 'ACC_IN'"),
        ("string id on a uint64 CORRID model", "takes uint64 integer sequence ids"),
        ("integer id on a string CORRID model", "takes string sequence ids"),
    ],
)
def test_bad_requests_are_refused_clearly(
    transcript: dict[str, Any], step: str, message: str
) -> None:
    answer = transcript[step]
    assert answer.get("status") in INVALID, answer
    assert message in answer["message"]


def test_an_idle_sequence_is_released(transcript: dict[str, Any]) -> None:
    started, late = transcript["expired sequence"]
    assert outputs([started]) == [1]
    assert late["status"] == "400"
    assert "sequence 107 was released after 2000 ms without requests" in late["message"]


def test_the_server_keeps_serving_after_bad_requests(
    transcript: dict[str, Any], server: ServeProcess
) -> None:
    assert outputs(transcript["still serving"]) == [2, 4]
    assert server.process.poll() is None


def test_statistics_count_the_sequence_requests(
    transcript: dict[str, Any], server: ServeProcess
) -> None:
    import tritonclient.http as httpclient

    client = httpclient.InferenceServerClient(server.http_url)
    try:
        (stats,) = client.get_inference_statistics("seq_controls")["model_stats"]
    finally:
        client.close()
    # 4 over gRPC, 6 on the stream, 2 large ids, 8 x 5 at once; the three refused before the
    # model (no id, a control input, a string id) count nowhere, as in Triton 2.51
    assert stats["inference_stats"]["success"]["count"] == 52
    assert stats["inference_stats"]["fail"]["count"] == 0
    assert 0 < stats["execution_count"] <= 52
