"""CPU instances share the cores instead of each taking all of them."""

from __future__ import annotations

from unittest import mock

from tritonclient.grpc import model_config_pb2

from headrace.backends import threads
from headrace.config import parse_config

CPU = model_config_pb2.ModelInstanceGroup.KIND_CPU
GPU = model_config_pb2.ModelInstanceGroup.KIND_GPU


def _config(*groups: tuple[int, int]) -> model_config_pb2.ModelConfig:
    config = parse_config('name: "m" backend: "onnxruntime"')
    for count, kind in groups:
        config.instance_group.add(count=count, kind=kind)
    return config


def test_instances_share_the_usable_cores() -> None:
    with mock.patch.object(threads, "usable_cpus", return_value=8):
        assert threads.threads_per_cpu_instance(_config()) == 8
        assert threads.threads_per_cpu_instance(_config((2, CPU), (1, CPU))) == 2
        assert threads.threads_per_cpu_instance(_config((4, CPU), (2, GPU))) == 2
        assert threads.threads_per_cpu_instance(_config((16, CPU))) == 1
    assert threads.cpu_instance_count(_config((0, CPU))) == 1  # count 0 means the default


def test_onnx_sessions_get_their_share_unless_configured(tmp_path) -> None:
    from fixtures_models import MLP, context_for, model_config
    from headrace.backends.onnx import OnnxRuntimeBackend
    from headrace.repository.export import export_onnx

    version_dir = tmp_path / "mlp" / "1"
    version_dir.mkdir(parents=True)
    exported = export_onnx(
        MLP(), str(version_dir / "model.onnx"), input_shapes={"x": (None, 64)}, output_names=["y"]
    )
    config = model_config("mlp", exported, backend="onnxruntime")
    config.instance_group.add(count=2, kind=CPU)
    with mock.patch.object(threads, "usable_cpus", return_value=4):
        shared = OnnxRuntimeBackend(context_for(config, version_dir))
        config.parameters["intra_op_thread_count"].string_value = "3"
        configured = OnnxRuntimeBackend(context_for(config, version_dir))
    assert shared.session.get_session_options().intra_op_num_threads == 2
    assert configured.session.get_session_options().intra_op_num_threads == 3


class _FakeTorch:
    def __init__(self, threads: int) -> None:
        self.threads = threads

    def get_num_threads(self) -> int:
        return self.threads

    def set_num_threads(self, threads: int) -> None:
        self.threads = threads


def test_torch_threads_are_only_ever_lowered_and_only_when_torch_is_loaded() -> None:
    import sys

    fake = _FakeTorch(8)
    with (
        mock.patch.dict(sys.modules, {"torch": fake}),
        mock.patch.object(threads, "usable_cpus", return_value=8),
    ):
        threads.limit_torch_threads(_config((4, CPU)))
        assert fake.threads == 2
        threads.limit_torch_threads(_config((1, CPU)))  # would be 8: never raised
        assert fake.threads == 2
    with mock.patch.dict(sys.modules, {"torch": None}):
        threads.limit_torch_threads(_config((4, CPU)))  # not loaded: nothing happens


def test_python_models_and_bound_functions_get_their_share_of_torch_threads(tmp_path) -> None:
    from headrace.backends import callable as callable_backend
    from headrace.backends import python as python_backend

    (tmp_path / "1").mkdir()
    (tmp_path / "1" / "model.py").write_text(
        "class TritonPythonModel:\n    def execute(self, requests):\n        return []\n"
    )
    config = parse_config(
        'name: "m" backend: "python" max_batch_size: 4 '
        'input [{name: "x" data_type: TYPE_FP32 dims: [1]}] '
        'output [{name: "y" data_type: TYPE_FP32 dims: [1]}]'
    )
    from headrace.backends.base import BackendContext

    context = BackendContext("m", 1, str(tmp_path), str(tmp_path / "1"), config)
    with mock.patch.object(python_backend, "limit_torch_threads") as limit:
        python_backend.TritonPythonBackend(context).unload()
    limit.assert_called_once_with(config)
    with mock.patch.object(callable_backend, "limit_torch_threads") as limit:
        callable_backend.CallableBackend(lambda x: {"y": x}, config)
    limit.assert_called_once_with(config)
