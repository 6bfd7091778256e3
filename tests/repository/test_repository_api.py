"""The Python API round trip on a local path, a file:// URL and a memory:// URL."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
from tritonclient.grpc import model_config_pb2

from headrace.config import parse_config
from headrace.errors import InvalidConfig, ModelNotFound
from headrace.repository import ModelEntry, ModelRepository
from headrace.types import DataType

torch = pytest.importorskip("torch")
pytest.importorskip("onnxruntime")

from headrace.repository.example_models import MLP, NoiseRemover, seeded  # noqa: E402

Group = model_config_pb2.ModelInstanceGroup


@pytest.fixture(params=["local", "file", "memory"])
def repo(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[ModelRepository]:
    root = {
        "local": str(tmp_path / "repo"),
        "file": f"file://{tmp_path}/repo",
        "memory": f"memory://api-{uuid.uuid4().hex}/repo",
    }[request.param]
    repository = ModelRepository(root, cache_dir=str(tmp_path / "cache"))
    yield repository
    repository.delete()


def tensors(
    config: model_config_pb2.ModelConfig, kind: str
) -> list[tuple[str, DataType, list[int]]]:
    names = model_config_pb2.DataType.Name
    return [
        (t.name, DataType.from_name(names(t.data_type)), list(t.dims))
        for t in getattr(config, kind)
    ]


def config_on_disk(entry: ModelEntry) -> model_config_pb2.ModelConfig:
    text = entry.storage.read_bytes(entry.name, "config.pbtxt").decode()
    return parse_config(text, entry.config_path)


def run_version(entry: ModelEntry, version: int, x: np.ndarray) -> np.ndarray:
    """Load the version through its backend (from the localised directory) and run it."""
    from headrace.backends import load_backend
    from headrace.backends.base import BackendContext

    config = entry.completed_config(version)
    backend = load_backend(
        BackendContext(
            model_name=entry.name,
            version=version,
            model_dir=entry.path,
            version_dir=entry.local_version_dir(version),
            config=config,
        )
    )
    try:
        outputs = backend.execute({config.input[0].name: x})
    finally:
        backend.unload()
    return np.asarray(outputs[config.output[0].name])


def test_onnx_round_trip(repo: ModelRepository) -> None:
    entry = repo.add("mlp")
    assert "mlp" in repo and repo.names() == ["mlp"]
    first = seeded(MLP, 0)
    assert entry.export_version(first, input_shapes={"x": (None, 64)}, output_names=["y"]) == 1

    completed = entry.completed_config()
    assert completed.platform == "onnxruntime_onnx" and completed.backend == "onnxruntime"
    assert completed.max_batch_size > 0
    assert tensors(completed, "input") == [("x", DataType.FP32, [64])]
    assert tensors(completed, "output") == [("y", DataType.FP32, [1])]

    x = np.random.default_rng(0).standard_normal((5, 64)).astype(np.float32)
    with torch.no_grad():
        expected = first(torch.from_numpy(x)).numpy()
    np.testing.assert_allclose(run_version(entry, 1, x), expected, atol=1e-5)

    # A second version needs only the module: shapes and names come from the config.
    second = seeded(MLP, 1)
    assert entry.export_version(second) == 2
    assert entry.available_versions() == [1, 2]
    assert entry.versions() == [2]
    with torch.no_grad():
        expected2 = second(torch.from_numpy(x)).numpy()
    np.testing.assert_allclose(run_version(entry, 2, x), expected2, atol=1e-5)

    entry.config.add_instance_group(count=3, kind="cpu")
    on_disk = config_on_disk(repo["mlp"])
    assert [(g.count, g.kind) for g in on_disk.instance_group] == [(3, Group.KIND_CPU)]
    assert [g.count for g in repo["mlp"].completed_config().instance_group] == [3]

    entry.config.set_version_policy(all=True)
    assert repo["mlp"].versions() == [1, 2]

    report = repo.scan()
    assert report.ok, report.problems
    assert report.names() == ["mlp"]


def test_torchscript_round_trip(repo: ModelRepository) -> None:
    entry = repo.add("ts", max_batch_size=16)
    module = seeded(NoiseRemover, 2)
    version = entry.export_version(
        module,
        input_shapes={"INPUT__0": (None, 64)},
        output_names=["OUTPUT__0"],
        format="torchscript",
    )
    assert version == 1
    completed = entry.completed_config()
    assert completed.platform == "pytorch_libtorch"
    assert completed.max_batch_size == 16  # the value given to add() wins over the export's
    assert tensors(completed, "input") == [("INPUT__0", DataType.FP32, [64])]
    assert tensors(completed, "output") == [("OUTPUT__0", DataType.FP32, [64])]
    x = np.random.default_rng(1).standard_normal((3, 64)).astype(np.float32)
    with torch.no_grad():
        expected = module(torch.from_numpy(x)).numpy()
    np.testing.assert_allclose(run_version(entry, 1, x), expected, atol=1e-5)

    assert entry.export_version(seeded(NoiseRemover, 3), format="torchscript", version=5) == 5
    assert entry.available_versions() == [1, 5]

    repo.remove("ts")
    assert "ts" not in repo


def test_delete_removes_the_repository(repo: ModelRepository) -> None:
    repo.add("a", backend="python")
    assert repo.storage.exists()
    repo.delete()
    assert not repo.storage.exists()
    assert repo.names() == []


def test_add_writes_tensors_and_rejects_bad_names(repo: ModelRepository) -> None:
    entry = repo.add(
        "addsub",
        backend="python",
        max_batch_size=8,
        inputs=[("INPUT0", "FP32", [4]), ("INPUT1", DataType.FP32, (4,))],
        outputs=[("OUTPUT0", "TYPE_FP32", [4])],
    )
    on_disk = config_on_disk(entry)
    assert on_disk.name == "addsub" and on_disk.backend == "python"
    assert on_disk.max_batch_size == 8
    assert [t.name for t in on_disk.input] == ["INPUT0", "INPUT1"]
    with pytest.raises(InvalidConfig, match="already exists"):
        repo.add("addsub")
    for bad in ("", "a/b", ".hidden", ".."):
        with pytest.raises(InvalidConfig, match="directory name"):
            repo.add(bad)
    with pytest.raises(ModelNotFound, match="'nope'"):
        repo["nope"]


def test_entry_config_edits_are_validated_and_persisted(repo: ModelRepository) -> None:
    entry = repo.add("m", backend="python", max_batch_size=8)
    config = entry.config
    config.set_dynamic_batching(
        preferred_batch_sizes=[2, 4],
        max_queue_delay_us=500,
        priority_levels=2,
        default_priority_level=1,
    )
    config.set_parameter("threads", 4)
    config.set_parameter("fast", True)
    config.add_instance_group(count=2, kind="gpu", gpus=[0])
    config.set_max_batch_size(16)
    config.set_version_policy(specific=[3, 1])
    on_disk = config_on_disk(entry)
    assert list(on_disk.dynamic_batching.preferred_batch_size) == [2, 4]
    assert on_disk.dynamic_batching.max_queue_delay_microseconds == 500
    assert on_disk.dynamic_batching.priority_levels == 2
    assert on_disk.parameters["threads"].string_value == "4"
    assert on_disk.parameters["fast"].string_value == "true"
    assert [(g.count, g.kind, list(g.gpus)) for g in on_disk.instance_group] == [
        (2, Group.KIND_GPU, [0])
    ]
    assert on_disk.max_batch_size == 16
    assert list(on_disk.version_policy.specific.versions) == [1, 3]

    with pytest.raises(InvalidConfig, match=r"\[32\] outside 1..max_batch_size \(16\)"):
        config.set_dynamic_batching(preferred_batch_sizes=[32])
    with pytest.raises(InvalidConfig, match="unknown kind 'tpu'"):
        config.add_instance_group(kind="tpu")
    with pytest.raises(InvalidConfig, match="must be >= 1, got 0"):
        config.add_instance_group(count=0)
    with pytest.raises(InvalidConfig, match="exactly one"):
        config.set_version_policy(latest=2, all=True)
    with pytest.raises(InvalidConfig, match="max_batch_size: must be >= 0, got -1"):
        config.set_max_batch_size(-1)
    unbatched = repo.add("u", backend="python")
    with pytest.raises(InvalidConfig, match="needs max_batch_size > 0"):
        unbatched.config.set_dynamic_batching()


def test_export_errors_name_what_is_missing(repo: ModelRepository) -> None:
    entry = repo.add("e")
    with pytest.raises(InvalidConfig, match="input_shapes is required"):
        entry.export_version(seeded(MLP))
    with pytest.raises(InvalidConfig, match="unknown export format 'tflite'"):
        entry.export_version(
            seeded(MLP), input_shapes={"x": (None, 64)}, output_names=["y"], format="tflite"
        )  # type: ignore[arg-type]
    entry.export_version(seeded(MLP), input_shapes={"x": (None, 64)}, output_names=["y"])
    with pytest.raises(InvalidConfig, match="version 1 of model 'e' exists"):
        entry.export_version(seeded(MLP), version=1)
    assert entry.export_version(seeded(MLP), version=1, overwrite=True) == 1
    with pytest.raises(InvalidConfig, match="share one backend"):
        entry.export_version(seeded(MLP), format="torchscript", version=2)
    assert entry.available_versions() == [1]  # nothing half-written stays behind


def test_add_version_file(repo: ModelRepository) -> None:
    entry = repo.add("py", backend="python")
    path = entry.add_version_file(1, "model.py", b"# model")
    assert path.endswith("model.py")
    entry.add_version_file(1, "helpers/util.py", b"# helper")
    assert entry.storage.read_bytes("py", "1", "helpers", "util.py") == b"# helper"
    assert entry.available_versions() == [1]
    for bad in ("../escape.py", "/abs.py", ""):
        with pytest.raises(InvalidConfig, match="relative path"):
            entry.add_version_file(1, bad, b"")
    with pytest.raises(InvalidConfig, match="version must be an integer >= 1"):
        entry.add_version_file(0, "model.py", b"")
    with pytest.raises(InvalidConfig, match="has no version 9"):
        entry.local_version_dir(9)
