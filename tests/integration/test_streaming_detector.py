"""The streaming detector pipeline of the examples repository, served and streamed.

Several clients stream one-second updates of two channels, each on its own sequence, through
the ``streaming_detector`` ensemble (snapshotter -> strain_cleaner -> strain_detector) over
gRPC ``ModelStreamInfer`` and HTTP. Each answer must equal what the two ONNX models give,
run directly, on the snapshot the client can rebuild from what it sent: the snapshotter kept
each stream's own last four seconds, whatever the interleaving.
"""

from __future__ import annotations

import queue
import shutil
from collections.abc import Iterator

import numpy as np
import pytest
import tritonclient.grpc as grpcclient
import tritonclient.http as httpclient
from serve_process import ServeProcess, examples_repository, onnx_reference, start_server

from headrace.repository.examples import STREAM_CHANNELS, STREAM_SNAPSHOT, STREAM_UPDATE

WAIT_S = 30.0
MODELS = ("snapshotter", "strain_cleaner", "strain_detector", "streaming_detector")


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServeProcess]:
    workdir = tmp_path_factory.mktemp("streaming")
    repository = workdir / "repo"
    examples = examples_repository(tmp_path_factory)
    for name in MODELS:
        shutil.copytree(examples / name, repository / name)
    process = start_server(repository, workdir)
    yield process
    assert process.stop() == 0, process.log_tail()


class Stream:
    """One client's samples, and the snapshot the server should hold after each update."""

    def __init__(self, seed: int) -> None:
        self.rng = np.random.default_rng(seed)
        self.snapshot = np.zeros((1, STREAM_CHANNELS, STREAM_SNAPSHOT), np.float32)

    def next_update(self) -> np.ndarray:
        update = self.rng.standard_normal((1, STREAM_CHANNELS, STREAM_UPDATE))
        update = update.astype(np.float32)
        self.snapshot = np.concatenate([self.snapshot[..., STREAM_UPDATE:], update], axis=-1)
        return update


@pytest.fixture(scope="module")
def references(server: ServeProcess) -> tuple:  # type: ignore[type-arg]
    cleaner = onnx_reference(server.repository / "strain_cleaner" / "1" / "model.onnx", "cleaned")
    detector = onnx_reference(
        server.repository / "strain_detector" / "1" / "model.onnx", "probability"
    )
    return cleaner, detector


def test_interleaved_streams_each_reach_their_own_snapshot(
    server: ServeProcess,
    references: tuple,  # type: ignore[type-arg]
) -> None:
    cleaner, detector = references
    streams = {sequence: Stream(seed=sequence) for sequence in (11, 12, 13)}
    sent: dict[str, np.ndarray] = {}
    received: queue.Queue[tuple] = queue.Queue()  # type: ignore[type-arg]

    def callback(result, error):  # type: ignore[no-untyped-def]
        received.put((result, error))

    client = grpcclient.InferenceServerClient(server.grpc_url)
    client.start_stream(callback=callback)
    try:
        for step in range(6):
            for sequence, stream in streams.items():
                update = stream.next_update()
                request_id = f"{sequence}-{step}"
                sent[request_id] = stream.snapshot.copy()
                tensor = grpcclient.InferInput("update", list(update.shape), "FP32")
                tensor.set_data_from_numpy(update)
                client.async_stream_infer(
                    "streaming_detector",
                    [tensor],
                    request_id=request_id,
                    sequence_id=sequence,
                    sequence_start=step == 0,
                    sequence_end=step == 5,
                )
        for _ in range(len(sent)):
            result, error = received.get(timeout=WAIT_S)
            assert error is None, error
            snapshot = sent[result.get_response().id]
            cleaned = cleaner(snapshot)
            np.testing.assert_allclose(result.as_numpy("cleaned"), cleaned, rtol=1e-4, atol=1e-5)
            np.testing.assert_allclose(
                result.as_numpy("probability"), detector(cleaned), rtol=1e-4, atol=1e-5
            )
    finally:
        client.stop_stream()
        client.close()


def test_a_stream_over_http_and_the_snapshotter_alone(
    server: ServeProcess,
    references: tuple,  # type: ignore[type-arg]
) -> None:
    cleaner, _ = references
    client = httpclient.InferenceServerClient(server.http_url)
    stream = Stream(seed=21)
    for step in range(5):
        update = stream.next_update()
        tensor = httpclient.InferInput("update", list(update.shape), "FP32")
        tensor.set_data_from_numpy(update)
        options = {"sequence_id": 21, "sequence_start": step == 0, "sequence_end": step == 4}
        snapshot = client.infer("snapshotter", [tensor], **options).as_numpy("snapshot")
        np.testing.assert_array_equal(snapshot, stream.snapshot)
    stream = Stream(seed=22)
    update = stream.next_update()
    tensor = httpclient.InferInput("update", list(update.shape), "FP32")
    tensor.set_data_from_numpy(update)
    result = client.infer("streaming_detector", [tensor], sequence_id=22, sequence_start=True)
    np.testing.assert_allclose(
        result.as_numpy("cleaned"), cleaner(stream.snapshot), rtol=1e-4, atol=1e-5
    )
    client.close()
