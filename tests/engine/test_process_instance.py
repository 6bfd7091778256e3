"""Model instances in worker processes: tensors through shared memory, sinks forwarded back,
errors kept apart, a dead worker replaced."""

from __future__ import annotations

import os
import shutil
import signal
import threading
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from google.protobuf import text_format
from tritonclient.grpc import model_config_pb2

from headrace.backends.base import BackendContext
from headrace.backends.python import TritonPythonBackend
from headrace.engine.process_instance import ProcessExecutor, ProcessInstance
from headrace.engine.shared_tensors import OutputRing, SharedBuffer, pack, packed_size, unpack
from headrace.errors import InternalError, InvalidInput, ModelExecutionError, Unavailable
from headrace.server.models.sources import load_repository_backend
from headrace.types import Outputs, WorkItem

MODELS = Path(__file__).resolve().parent.parent / "data" / "python_models"

CRASHING_MODEL = """
import os, signal
import numpy as np
import triton_python_backend_utils as pb_utils


class TritonPythonModel:
    def execute(self, requests):
        responses = []
        for request in requests:
            x = pb_utils.get_input_tensor_by_name(request, "X").as_numpy()
            if x[0] < 0:
                os.kill(os.getpid(), signal.SIGKILL)
            out = pb_utils.Tensor("Y", (x * 2).astype(np.float32))
            responses.append(pb_utils.InferenceResponse(output_tensors=[out]))
        return responses
"""

TICKING_MODEL = """
import threading, time
import numpy as np
import triton_python_backend_utils as pb_utils


class TritonPythonModel:
    def execute(self, requests):
        for request in requests:
            threading.Thread(target=self.tick, args=(request,), daemon=True).start()
        return None

    def tick(self, request):
        sender = request.get_response_sender()
        for n in range(2000):  # about 20 s unless cancelled
            if sender.is_cancelled():
                break
            out = pb_utils.Tensor("Y", np.array([n], dtype=np.float32))
            sender.send(pb_utils.InferenceResponse(output_tensors=[out]))
            time.sleep(0.01)
        sender.send(flags=pb_utils.TRITONSERVER_RESPONSE_COMPLETE_FINAL)
"""

CRASHING_CONFIG = """
name: "crashing"
backend: "python"
input [ { name: "X" data_type: TYPE_FP32 dims: [ -1 ] } ]
output [ { name: "Y" data_type: TYPE_FP32 dims: [ -1 ] } ]
"""


@pytest.fixture
def repo(tmp_path: Path) -> Path:
    target = tmp_path / "repo"
    shutil.copytree(MODELS, target)
    crashing = target / "crashing"
    (crashing / "1").mkdir(parents=True)
    (crashing / "config.pbtxt").write_text(CRASHING_CONFIG)
    (crashing / "1" / "model.py").write_text(CRASHING_MODEL)
    ticking = target / "ticking"
    (ticking / "1").mkdir(parents=True)
    (ticking / "config.pbtxt").write_text(
        CRASHING_CONFIG.replace("crashing", "ticking")
        + "model_transaction_policy { decoupled: true }\n"
    )
    (ticking / "1" / "model.py").write_text(TICKING_MODEL)
    return target


def context(repo: Path, name: str) -> BackendContext:
    config = text_format.Parse(
        (repo / name / "config.pbtxt").read_text(), model_config_pb2.ModelConfig()
    )
    TritonPythonBackend.autocomplete(config, str(repo / name / "1"))
    return BackendContext(
        model_name=name,
        version=1,
        model_dir=str(repo / name),
        version_dir=str(repo / name / "1"),
        config=config,
        instance_name=f"{name}_0",
    )


class RecordingSink:
    """Collects what a model sends through a request's sink."""

    def __init__(self) -> None:
        self.events: list[tuple[str, Any, bool]] = []
        self.final = threading.Event()
        self.cancelled = False

    def send(self, outputs: Outputs | None, *, final: bool = True, parameters: Any = None) -> None:
        self.events.append(("send", outputs, final))
        if final:
            self.final.set()

    def fail(self, error: BaseException, *, final: bool = True) -> None:
        self.events.append(("fail", error, final))
        if final:
            self.final.set()

    @property
    def done(self) -> bool:
        return self.final.is_set() or self.cancelled


@pytest.fixture
def instances() -> Any:
    opened: list[ProcessInstance] = []

    def start(repo: Path, name: str, **options: Any) -> ProcessInstance:
        instance = ProcessInstance(load_repository_backend, context(repo, name), **options)
        opened.append(instance)
        return instance

    yield start
    for instance in opened:
        instance.close()


def add_sub_item(a: np.ndarray, b: np.ndarray) -> WorkItem:
    return WorkItem({"INPUT0": a, "INPUT1": b})


def test_a_batch_runs_in_the_worker_and_comes_back(repo: Path, instances: Any) -> None:
    instance = instances(repo, "add_sub")
    assert instance.pid != os.getpid()
    a = np.arange(4, dtype=np.float32)
    b = np.ones(4, dtype=np.float32)
    timed = instance.submit_requests_timed([add_sub_item(a, b), add_sub_item(b, a)]).result(30)
    first, second = timed.results
    assert isinstance(first, dict) and isinstance(second, dict)
    np.testing.assert_array_equal(first["OUTPUT0"], a + b)
    np.testing.assert_array_equal(first["OUTPUT1"], a - b)
    np.testing.assert_array_equal(second["OUTPUT1"], b - a)
    assert timed.times.batch_size == 2


def test_large_tensors_grow_the_arena_and_skip_a_small_ring(repo: Path, instances: Any) -> None:
    """Inputs of 8 MiB take a larger arena; outputs over half the ring travel pickled."""
    instance = instances(repo, "add_sub", ring_bytes=1 << 20)
    rng = np.random.default_rng(0)
    for size in (4, 1 << 21, 1 << 16, 1 << 21):  # 8 MiB per input at the largest
        a = rng.standard_normal(size).astype(np.float32)
        b = rng.standard_normal(size).astype(np.float32)
        timed = instance.submit_requests_timed([add_sub_item(a, b)]).result(30)
        (result,) = timed.results
        assert isinstance(result, dict)
        np.testing.assert_array_equal(result["OUTPUT0"], a + b)
        np.testing.assert_array_equal(result["OUTPUT1"], a - b)


def test_bytes_tensors_travel_pickled(repo: Path, instances: Any) -> None:
    instance = instances(repo, "bytes_identity")
    value = np.array([b"alpha", b"", b"\x00\xff"], dtype=np.object_)
    name = next(iter(context(repo, "bytes_identity").config.input)).name
    timed = instance.submit_requests_timed([WorkItem({name: value})]).result(30)
    (result,) = timed.results
    assert isinstance(result, dict)
    (out,) = result.values()
    assert list(out) == list(value)


def test_decoupled_responses_reach_the_sink_in_order(repo: Path, instances: Any) -> None:
    instance = instances(repo, "repeat_decoupled")
    sinks = [RecordingSink() for _ in range(3)]
    items = [
        WorkItem({"IN": np.array([10], dtype=np.int32)}, sinks[0]),
        WorkItem({"IN": np.array([20], dtype=np.int32)}, sinks[1], parameters={"in_thread": True}),
        WorkItem({"IN": np.array([-1], dtype=np.int32)}, sinks[2]),
    ]
    timed = instance.submit_requests_timed(items).result(30)
    assert timed.results == [None, None, None]
    for sink in sinks:
        assert sink.final.wait(30)
    for sink, n in zip(sinks[:2], (10, 20)):
        sent = [event for event in sink.events if event[1] is not None]
        assert [int(event[1]["OUT"][0]) for event in sent] == [n, n + 1, n + 2]
        assert sink.events[-1] == ("send", None, True)
    kind, error, final = sinks[2].events[0]
    assert kind == "fail" and not final and "negative input -1" in str(error)


def test_a_cancelled_request_is_seen_by_the_model_in_the_worker(repo: Path, instances: Any) -> None:
    instance = instances(repo, "ticking")
    sink = RecordingSink()
    timed = instance.submit_requests_timed([WorkItem({"X": np.ones(1, np.float32)}, sink)])
    assert timed.result(30).results == [None]
    for _ in range(500):
        if len(sink.events) >= 3:
            break
        threading.Event().wait(0.01)
    sink.cancelled = True  # the client went away
    assert sink.final.wait(10), "the model never saw the cancellation"
    assert len(sink.events) < 1000
    assert sink.events[-1] == ("send", None, True)


def test_model_errors_keep_their_kind_and_fail_only_their_request(
    repo: Path, instances: Any
) -> None:
    instance = instances(repo, "negative_error")
    values = ([[4.0, 9.0]], [[-1.0, 1.0]], [[2e6, 1.0]])
    items = [WorkItem({"X": np.array(value, dtype=np.float64)}) for value in values]
    good, negative, large = instance.submit_requests_timed(items).result(30).results
    assert isinstance(good, dict)
    np.testing.assert_array_equal(good["SQRT"], [[2.0, 3.0]])
    assert type(negative) is ModelExecutionError and "negative value -1.0" in negative.message
    assert type(large) is InvalidInput and "is too large" in large.message


def test_a_model_that_fails_to_load_says_why(tmp_path: Path) -> None:
    model = tmp_path / "broken"
    (model / "1").mkdir(parents=True)
    (model / "config.pbtxt").write_text(CRASHING_CONFIG.replace("crashing", "broken"))
    (model / "1" / "model.py").write_text(
        "class TritonPythonModel:\n"
        "    def initialize(self, args):\n"
        "        raise RuntimeError('no weights here')\n"
        "    def execute(self, requests):\n"
        "        return []\n"
    )
    with pytest.raises(InternalError, match="no weights here"):
        ProcessInstance(load_repository_backend, context(tmp_path, "broken"))


def test_a_dead_worker_fails_only_its_batch_and_is_replaced(repo: Path, instances: Any) -> None:
    instance = instances(repo, "crashing")
    first_pid = instance.pid
    ok = instance.submit_requests_timed([WorkItem({"X": np.ones(3, np.float32)})]).result(30)
    assert isinstance(ok.results[0], dict)
    dead = instance.submit_requests_timed([WorkItem({"X": -np.ones(3, np.float32)})]).result(30)
    (error,) = dead.results
    assert isinstance(error, Unavailable)
    assert f"pid {first_pid}" in error.message and "SIGKILL" in error.message
    deadline_results: list[Any] = []
    for _ in range(200):  # the restart takes a moment; until then batches fail at once
        timed = instance.submit_requests_timed([WorkItem({"X": np.ones(2, np.float32)})]).result(30)
        deadline_results = timed.results
        if isinstance(deadline_results[0], dict):
            break
        assert isinstance(deadline_results[0], Unavailable)
        threading.Event().wait(0.05)
    assert isinstance(deadline_results[0], dict)
    np.testing.assert_array_equal(deadline_results[0]["Y"], np.full(2, 2, np.float32))
    assert instance.pid != first_pid


def test_a_killed_worker_is_replaced_between_batches(repo: Path, instances: Any) -> None:
    instance = instances(repo, "add_sub")
    pid = instance.pid
    os.kill(pid, signal.SIGKILL)
    a = np.ones(4, dtype=np.float32)
    for _ in range(200):
        (result,) = instance.submit_requests_timed([add_sub_item(a, a)]).result(30).results
        if isinstance(result, dict):
            break
        assert isinstance(result, Unavailable)
        threading.Event().wait(0.05)
    assert isinstance(result, dict)
    assert instance.pid != pid


def test_the_executor_places_one_worker_per_instance(repo: Path) -> None:
    from headrace.engine.placement import PlacementOptions, place_instances

    base = context(repo, "add_sub")
    base.config.instance_group[0].count = 2
    placed = place_instances(
        base, load_repository_backend, PlacementOptions(), builder=ProcessExecutor()
    )
    try:
        assert [p.name for p in placed] == ["add_sub_0_0", "add_sub_0_1"]
        assert len({p.pid for p in placed}) == 2
    finally:
        for instance in placed:
            instance.close()


# -- the shared-memory pieces -----------------------------------------------------------------


def test_pack_and_unpack_round_trip() -> None:
    buffer = SharedBuffer(1 << 16)
    arrays = {
        "f": np.arange(12, dtype=np.float32).reshape(3, 4),
        "i": np.array([1, -2], dtype=np.int64),
        "empty": np.zeros((0, 5), dtype=np.float16),
        "text": np.array([b"x", b"yz"], dtype=np.object_),
    }
    packed = pack(arrays, buffer, 128)
    assert packed_size(arrays) == 64 + 64 + 0
    views = unpack(packed, buffer, copy=False)
    copies = unpack(packed, buffer, copy=True)
    for name, array in arrays.items():
        assert views[name].dtype == array.dtype and views[name].shape == array.shape
        assert list(copies[name].ravel()) == list(array.ravel())
    buffer.bytes[:] = 0
    assert copies["f"][2, 3] == 11 and views["f"][2, 3] == 0
    del views
    buffer.close()


def test_the_ring_waits_for_the_reader_and_wraps() -> None:
    ring = OutputRing(SharedBuffer(64 + 1024), wait_s=0.2)
    offset, mark = ring.allocate(600)
    assert offset == 64 and mark == 640
    with pytest.raises(Unavailable, match="has not read"):
        ring.allocate(600)  # 640 + 600 > 1024: waits for the reader, which never reads
    ring.release(mark)
    offset, mark = ring.allocate(600)  # does not fit before the end: starts over at 0
    assert offset == 64 and mark == 1024 + 640
    assert not ring.fits(600) and ring.fits(512)
