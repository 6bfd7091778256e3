"""Triton python-backend models from tests/data/python_models run through TritonPythonBackend."""

from __future__ import annotations

import json
import shutil
import sys
import threading
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from google.protobuf import text_format
from tritonclient.grpc import model_config_pb2

from headrace.backends import triton_python_backend_utils as pb_utils
from headrace.backends.base import BackendContext
from headrace.backends.python import TritonPythonBackend
from headrace.errors import (
    InternalError,
    InvalidConfig,
    InvalidInput,
    ModelExecutionError,
)
from headrace.types import DETACHED, InferenceRequest, RequestedOutput, WorkItem

MODELS = Path(__file__).resolve().parent.parent / "data" / "python_models"


@pytest.fixture
def repo(tmp_path: Path) -> Path:
    """A private copy of the example repository (imports write __pycache__ next to files)."""
    target = tmp_path / "repo"
    shutil.copytree(MODELS, target)
    return target


def read_config(repo: Path, name: str) -> model_config_pb2.ModelConfig:
    text = (repo / name / "config.pbtxt").read_text()
    return text_format.Parse(text, model_config_pb2.ModelConfig())


def load(
    repo: Path,
    name: str,
    config: model_config_pb2.ModelConfig | None = None,
    instance_name: str = "",
) -> TritonPythonBackend:
    config = config if config is not None else read_config(repo, name)
    TritonPythonBackend.autocomplete(config, str(repo / name / "1"))
    context = BackendContext(
        model_name=name,
        version=1,
        model_dir=str(repo / name),
        version_dir=str(repo / name / "1"),
        config=config,
        instance_name=instance_name,
    )
    return TritonPythonBackend(context)


def test_add_sub_computes_sum_and_difference(repo: Path) -> None:
    backend = load(repo, "add_sub")
    a = np.array([1, 2, 3, 4], dtype=np.float32)
    b = np.array([0.5, 0.5, 1, 1], dtype=np.float32)
    out = backend.execute({"INPUT0": a, "INPUT1": b})
    np.testing.assert_allclose(out["OUTPUT0"], a + b)
    np.testing.assert_allclose(out["OUTPUT1"], a - b)
    assert out["OUTPUT0"].dtype == np.float32
    backend.unload()


def test_execute_requests_returns_one_result_per_request(repo: Path) -> None:
    backend = load(repo, "add_sub")
    requests = [
        {"INPUT0": np.full(4, i, dtype=np.float32), "INPUT1": np.ones(4, dtype=np.float32)}
        for i in range(3)
    ]
    results = backend.execute_requests([WorkItem(r) for r in requests])
    assert [float(r["OUTPUT0"][0]) for r in results] == [1.0, 2.0, 3.0]  # type: ignore[index]
    assert [float(r["OUTPUT1"][0]) for r in results] == [-1.0, 0.0, 1.0]  # type: ignore[index]


def test_bytes_identity_keeps_object_arrays_of_bytes(repo: Path) -> None:
    backend = load(repo, "bytes_identity")
    data = np.array([b"alpha", b"", b"\x00\xffbin"], dtype=np.object_)
    out = backend.execute({"IN": data})["OUT"]
    assert out.dtype == np.object_
    assert list(out) == [b"alpha", b"", b"\x00\xffbin"]


def test_auto_complete_config_fills_a_minimal_config(repo: Path) -> None:
    config = read_config(repo, "auto_add_sub")
    assert not config.input and config.max_batch_size == 0
    TritonPythonBackend.autocomplete(config, str(repo / "auto_add_sub" / "1"))
    assert config.max_batch_size == 8
    assert config.HasField("dynamic_batching")
    assert [(i.name, i.data_type, list(i.dims)) for i in config.input] == [
        ("INPUT0", model_config_pb2.TYPE_FP32, [4]),
        ("INPUT1", model_config_pb2.TYPE_FP32, [4]),
    ]
    assert [o.name for o in config.output] == ["OUTPUT0", "OUTPUT1"]
    backend = load(repo, "auto_add_sub", config)
    batch = np.arange(8, dtype=np.float32).reshape(2, 4)
    out = backend.execute({"INPUT0": batch, "INPUT1": batch})
    np.testing.assert_allclose(out["OUTPUT0"], batch * 2)
    np.testing.assert_allclose(out["OUTPUT1"], np.zeros((2, 4)))


def test_auto_complete_keeps_what_config_pbtxt_already_says(repo: Path) -> None:
    config = read_config(repo, "auto_add_sub")
    config.max_batch_size = 4
    config.input.add(name="INPUT0", data_type=model_config_pb2.TYPE_FP32, dims=[4])
    config.dynamic_batching.max_queue_delay_microseconds = 100
    TritonPythonBackend.autocomplete(config, str(repo / "auto_add_sub" / "1"))
    assert config.max_batch_size == 8
    assert config.dynamic_batching.max_queue_delay_microseconds == 100
    assert [(i.name, list(i.dims)) for i in config.input] == [("INPUT0", [4]), ("INPUT1", [4])]
    assert config.name == "auto_add_sub" and config.backend == "python"


def test_auto_complete_conflict_is_invalid_config(repo: Path) -> None:
    config = read_config(repo, "auto_add_sub")
    config.max_batch_size = 16
    with pytest.raises(InvalidConfig, match="auto_complete_config") as info:
        TritonPythonBackend.autocomplete(config, str(repo / "auto_add_sub" / "1"))
    assert "max_batch_size 16" in str(info.value)
    assert "model.py" in str(info.value)


def test_model_error_fails_only_its_own_request(repo: Path) -> None:
    backend = load(repo, "negative_error")
    good = {"X": np.array([[4.0, 9.0]])}
    bad = {"X": np.array([[1.0, -2.0]])}
    huge = {"X": np.array([[1e7, 1.0]])}
    results = backend.execute_requests([WorkItem(r) for r in (good, bad, huge, good)])
    np.testing.assert_allclose(results[0]["SQRT"], [[2.0, 3.0]])  # type: ignore[index]
    assert isinstance(results[1], ModelExecutionError)
    assert str(results[1]) == "negative value -2.0 in input X"
    assert isinstance(results[2], InvalidInput)
    assert "too large" in str(results[2])
    np.testing.assert_allclose(results[3]["SQRT"], [[2.0, 3.0]])  # type: ignore[index]
    with pytest.raises(ModelExecutionError, match="negative value"):
        backend.execute(bad)


def test_raising_execute_fails_every_request_of_the_call(repo: Path) -> None:
    backend = load(repo, "raising")
    ok = {"X": np.array([[2]], dtype=np.int32)}
    unlucky = {"X": np.array([[13]], dtype=np.int32)}
    results = backend.execute_requests([WorkItem(ok), WorkItem(unlucky)])
    assert all(isinstance(r, ModelExecutionError) for r in results)
    assert "unlucky input 13" in str(results[0]) and "'raising'" in str(results[0])
    assert isinstance(results[0], ModelExecutionError)
    assert isinstance(results[0].__cause__, RuntimeError)
    # the backend keeps serving after a failed call
    np.testing.assert_array_equal(backend.execute(ok)["Y"], [[4]])


def test_model_instance_drives_request_lists(repo: Path) -> None:
    from headrace.engine.instance import ModelInstance

    instance = ModelInstance(load(repo, "negative_error"))
    future = instance.submit_requests([{"X": np.array([[1.0, 4.0]])}, {"X": np.array([[-1.0, 0]])}])
    first, second = future.result(timeout=10)
    np.testing.assert_allclose(first["SQRT"], [[1.0, 2.0]])  # type: ignore[index]
    assert isinstance(second, ModelExecutionError)
    instance.close()


def lifecycle_config(repo: Path, marker: Path) -> model_config_pb2.ModelConfig:
    config = read_config(repo, "lifecycle")
    config.parameters["marker_file"].string_value = str(marker)
    return config


def test_initialize_receives_triton_args(repo: Path, tmp_path: Path) -> None:
    marker = tmp_path / "marker"
    backend = load(repo, "lifecycle", lifecycle_config(repo, marker), instance_name="lifecycle_0_1")
    out = backend.execute({"X": np.array([1], dtype=np.int64)})
    args = json.loads(out["ARGS"][0])
    assert args["model_name"] == "lifecycle"
    assert args["model_version"] == "1"
    assert args["model_repository"] == str(repo / "lifecycle")
    assert args["model_instance_kind"] == "CPU"
    assert args["model_instance_device_id"] == "0"
    assert args["model_instance_name"] == "lifecycle_0_1"
    assert all(isinstance(value, str) for value in args.values())
    config = json.loads(args["model_config"])
    assert config["name"] == "lifecycle"
    assert config["max_batch_size"] == 0
    assert config["input"][0] == {**config["input"][0], "name": "X", "data_type": "TYPE_INT64"}
    assert config["input"][0]["dims"] == [1]
    assert config["parameters"]["marker_file"]["string_value"] == str(marker)


def test_finalize_runs_once_on_unload(repo: Path, tmp_path: Path) -> None:
    marker = tmp_path / "marker"
    backend = load(repo, "lifecycle", lifecycle_config(repo, marker))
    assert not marker.exists()
    backend.unload()
    backend.unload()
    assert marker.read_text() == "finalized\n"


def test_request_metadata_reaches_the_model(repo: Path, tmp_path: Path) -> None:
    backend = load(repo, "lifecycle", lifecycle_config(repo, tmp_path / "m"))
    request = InferenceRequest(
        model_name="lifecycle",
        inputs={"X": np.array([7], dtype=np.int64)},
        id="req-7",
        outputs=(RequestedOutput("META"),),
        parameters={"temperature": 0.5},
        sequence_id=42,
        sequence_start=True,
    )
    (result,) = backend.execute_requests([WorkItem.from_request(request, DETACHED)])
    assert set(result) == {"META"}  # type: ignore[arg-type]
    meta = json.loads(result["META"][0])  # type: ignore[index]
    assert meta == {
        "request_id": "req-7",
        "correlation_id": 42,
        "flags": pb_utils.TRITONSERVER_REQUEST_FLAG_SEQUENCE_START,
        "start": True,
        "end": False,
        "parameters": {"temperature": 0.5},
        "requested": ["META"],
    }
    plain = backend.execute({"X": np.array([1], dtype=np.int64)})
    assert json.loads(plain["META"][0])["requested"] == ["ARGS", "CALLS", "META"]


def test_two_instances_keep_separate_module_state(repo: Path, tmp_path: Path) -> None:
    first = load(repo, "lifecycle", lifecycle_config(repo, tmp_path / "a"))
    second = load(repo, "lifecycle", lifecycle_config(repo, tmp_path / "b"))
    x = {"X": np.array([0], dtype=np.int64)}
    assert [int(first.execute(x)["CALLS"][0]) for _ in range(3)] == [1, 2, 3]
    assert int(second.execute(x)["CALLS"][0]) == 1


def test_same_file_names_in_two_models_do_not_collide(repo: Path) -> None:
    a = load(repo, "helper_a")
    b = load(repo, "helper_b")
    x = {"IN": np.array([1], dtype=np.int32)}
    assert a.execute(x)["WHO"][0] == b"helper_a"
    assert b.execute(x)["WHO"][0] == b"helper_b"
    assert "helper" not in sys.modules
    assert not any(entry.startswith(str(repo)) for entry in sys.path)
    assert sys.modules["triton_python_backend_utils"] is pb_utils


def test_unload_forgets_the_model_module(repo: Path) -> None:
    backend = load(repo, "add_sub")
    name = backend._module.__name__
    assert name in sys.modules
    backend.unload()
    assert name not in sys.modules


class Collected:
    """A response sink that records what it is sent (from any thread)."""

    def __init__(self) -> None:
        self.sent: list[tuple[str, Any, bool]] = []
        self.final = threading.Event()

    @property
    def done(self) -> bool:
        return self.final.is_set()

    def send(self, outputs: Any, *, final: bool = True, parameters: Any = None) -> None:
        self.sent.append(("response", outputs, final))
        if final:
            self.final.set()

    def fail(self, error: BaseException, *, final: bool = True) -> None:
        self.sent.append(("error", error, final))
        if final:
            self.final.set()


@pytest.mark.parametrize("in_thread", [False, True])
def test_decoupled_model_answers_through_the_sink(repo: Path, in_thread: bool) -> None:
    backend = load(repo, "repeat_decoupled")
    assert backend.decoupled
    sinks = [Collected(), Collected()]
    items = [
        WorkItem({"IN": np.array([n], np.int32)}, sink, parameters={"in_thread": in_thread})
        for n, sink in zip((5, -1), sinks)
    ]
    assert backend.execute_requests(items) == [None, None]
    assert all(sink.final.wait(10) for sink in sinks)
    good, bad = (sink.sent for sink in sinks)
    assert [(kind, out["OUT"].tolist(), final) for kind, out, final in good[:3]] == [
        ("response", [5], False),
        ("response", [6], False),
        ("response", [7], False),
    ]
    assert good[3] == ("response", None, True)
    assert [(kind, str(value), final) for kind, value, final in bad[:1]] == [
        ("error", "negative input -1", False)
    ]
    assert bad[1] == ("response", None, True)
    backend.unload()


def test_a_decoupled_model_cannot_answer_merged_batches_directly(repo: Path) -> None:
    backend = load(repo, "repeat_decoupled")
    with pytest.raises(Exception, match="no response sink"):
        backend.execute({"IN": np.array([1], np.int32)})
    backend.unload()


def test_missing_model_file_names_the_path(repo: Path) -> None:
    (repo / "add_sub" / "1" / "model.py").unlink()
    with pytest.raises(InvalidConfig, match=r"model\.py"):
        load(repo, "add_sub")


def test_import_error_names_the_model(repo: Path) -> None:
    (repo / "add_sub" / "1" / "model.py").write_text("import not_a_module_anywhere\n")
    with pytest.raises(InvalidConfig, match=r"'add_sub'.*not_a_module_anywhere"):
        load(repo, "add_sub")


def test_initialize_failure_is_reported(repo: Path) -> None:
    path = repo / "add_sub" / "1" / "model.py"
    path.write_text(path.read_text().replace('"OUTPUT1")', '"NOPE")'))
    with pytest.raises(InternalError, match="'add_sub' failed to initialize"):
        load(repo, "add_sub")


def test_wrong_response_count_fails_every_request(repo: Path) -> None:
    path = repo / "raising" / "1" / "model.py"
    path.write_text(path.read_text().replace("return responses", "return responses[:1]"))
    backend = load(repo, "raising")
    x = {"X": np.array([[1]], dtype=np.int32)}
    results = backend.execute_requests([WorkItem(x), WorkItem(x)])
    assert all(isinstance(r, ModelExecutionError) for r in results)
    assert "1 responses for 2 requests" in str(results[0])


def test_undeclared_output_is_an_error(repo: Path) -> None:
    path = repo / "raising" / "1" / "model.py"
    path.write_text(path.read_text().replace('Tensor("Y"', 'Tensor("Z"'))
    backend = load(repo, "raising")
    with pytest.raises(ModelExecutionError, match=r"output 'Z'.*\['Y'\]"):
        backend.execute({"X": np.array([[1]], dtype=np.int32)})


def test_autocomplete_without_hook_leaves_config_alone(repo: Path) -> None:
    config = read_config(repo, "add_sub")
    before = config.SerializeToString(deterministic=True)
    TritonPythonBackend.autocomplete(config, str(repo / "add_sub" / "1"))
    assert config.SerializeToString(deterministic=True) == before


def test_auto_completed_decoupled_policy_makes_the_backend_decoupled(repo: Path) -> None:
    path = repo / "auto_add_sub" / "1" / "model.py"
    path.write_text(
        path.read_text().replace(
            "set_dynamic_batching()",
            'set_dynamic_batching()\n        auto_complete_model_config.set_model_transaction_policy({"decoupled": True})',
        )
    )
    config = read_config(repo, "auto_add_sub")
    TritonPythonBackend.autocomplete(config, str(repo / "auto_add_sub" / "1"))
    assert config.model_transaction_policy.decoupled
    assert load(repo, "auto_add_sub", config).decoupled
