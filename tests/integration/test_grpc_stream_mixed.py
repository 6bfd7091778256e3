"""One ``ModelStreamInfer`` stream that mixes a plain and a decoupled model, end to end.

Unmodified tritonclient sends, on a single stream, ``request_meta`` (plain: one response per
request) interleaved with ``repeat_decoupled`` (decoupled: three responses, then the final
flag), a negative input that makes ``repeat_decoupled`` answer with an error, and a request
for a model that does not exist (the round of :func:`decoupled_client.mixed_round`). NVIDIA
Triton 2.51 does not support a stream that mixes the two kinds: it serves some and aborts on
others, at random (benchmarks/results/stateful_vs_triton.json); headrace serves it, and this
checks the promise its frontend makes
(:mod:`headrace.server.grpc.frontend`):

- every request gets all its responses and nothing more: one for a plain request; its three
  outputs for a decoupled request; one error for a failed decoupled request and one for the
  unknown model; and the empty final response wherever a decoupled request asked for it;
- plain responses (errors included) come in the order their requests arrived, each decoupled
  request's in its own order, and each says ``triton_final_response`` as
  tests/integration/test_request_contract.py records Triton doing;
- the stream stays open: round after round is answered in full, and so is a burst of more
  requests than the frontend runs at once on a stream (its ``stream_window``, 256).
"""

from __future__ import annotations

import shutil
from collections.abc import Iterator

import pytest
from decoupled_client import MODELS, Stream, check, mixed_round
from serve_process import ServeProcess, start_server


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServeProcess]:
    workdir = tmp_path_factory.mktemp("mixed-stream")
    repository = workdir / "repo"
    for name in ("request_meta", "repeat_decoupled"):
        shutil.copytree(MODELS / name, repository / name)
    process = start_server(repository, workdir)
    yield process
    assert process.stop() == 0, process.log_tail()


def test_one_stream_mixes_plain_and_decoupled_requests(server: ServeProcess) -> None:
    stream = Stream(server.grpc_url)
    try:
        for index in range(3):  # round after round on the one stream: it stays open
            sent = stream.send(mixed_round(f"r{index}"))
            got, complete = stream.collect(sent)
            assert complete, got
            assert check(sent, got) == []
    finally:
        stream.close()


def test_a_burst_past_the_stream_window_loses_nothing(server: ServeProcess) -> None:
    # 30 rounds of 12 requests, sent at once: more than the 256 a stream runs concurrently
    stream = Stream(server.grpc_url)
    try:
        sent = stream.send([request for index in range(30) for request in mixed_round(f"b{index}")])
        got, complete = stream.collect(sent)
        assert complete and check(sent, got) == []
        after = stream.send(mixed_round("after"))
        got, complete = stream.collect(after)
        assert complete and check(after, got) == []
    finally:
        stream.close()
