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
