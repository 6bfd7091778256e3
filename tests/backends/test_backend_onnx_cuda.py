"""onnxruntime on a GPU: the missing-provider error, thread bounds, I/O binding, the CUDA pipeline.

The binding runs on the CPU here (onnxruntime binds ``cpu`` buffers the same way it binds
``cuda`` ones); the tests marked ``gpu`` run the same models through the engine's CUDA pipeline
and compare with the CPU, within TF32's precision (onnxruntime's CUDA provider may use TF32
for float32 matrix products on Ampere and later GPUs).
"""

from __future__ import annotations

from types import SimpleNamespace

import numpy as np
import onnxruntime as ort
import pytest
import torch
from tritonclient.grpc import model_config_pb2

from fixtures_models import MLP, AddSub, context_for, model_config
from headrace.backends.onnx import GPU_INTRA_OP_THREADS, OnnxRuntimeBackend, intra_op_threads
from headrace.backends.onnx_binding import TensorBinding, binds_every_tensor, known_dims
from headrace.backends.signature import add_tensor
from headrace.backends.threads import threads_per_cpu_instance
from headrace.engine.instance import ModelInstance
from headrace.errors import ErrorCode, InvalidConfig, InvalidInput, ModelExecutionError
from headrace.repository.export import export_onnx
from headrace.types import DataType


@pytest.fixture
def mlp(tmp_path):
    version_dir = tmp_path / "mlp" / "1"
    version_dir.mkdir(parents=True)
    exported = export_onnx(
        MLP().eval(),
        str(version_dir / "model.onnx"),
        input_shapes={"x": (None, 64)},
        output_names=["y"],
    )
    return model_config("mlp", exported, backend="onnxruntime"), version_dir


@pytest.fixture
def addsub(tmp_path):
    version_dir = tmp_path / "addsub" / "1"
    version_dir.mkdir(parents=True)
    exported = export_onnx(
        AddSub(),
        str(version_dir / "model.onnx"),
        input_shapes={"a": (None, 4), "b": (None, 4)},
        output_names=["sum", "diff"],
    )
    return model_config("addsub", exported, backend="onnxruntime"), version_dir


@pytest.fixture
def relu(tmp_path):
    """y = relu(x) over [batch, n] with n symbolic: an output shape only the run can tell."""
    from onnx import TensorProto, helper, save

    version_dir = tmp_path / "relu" / "1"
    version_dir.mkdir(parents=True)
    x = helper.make_tensor_value_info("x", TensorProto.FLOAT, ["batch", "n"])
    y = helper.make_tensor_value_info("y", TensorProto.FLOAT, ["batch", "n"])
    graph = helper.make_graph([helper.make_node("Relu", ["x"], ["y"])], "relu", [x], [y])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    save(model, str(version_dir / "model.onnx"))
    config = model_config_pb2.ModelConfig(name="relu", backend="onnxruntime", max_batch_size=8)
    add_tensor(config.input, "x", DataType.FP32, (-1,))
    add_tensor(config.output, "y", DataType.FP32, (-1,))
    return config, version_dir


def _session(version_dir):
    return ort.InferenceSession(str(version_dir / "model.onnx"), providers=["CPUExecutionProvider"])


def _cuda_provider() -> bool:
    if "CUDAExecutionProvider" in ort.get_available_providers():
        return True
    devices = ort.get_ep_devices() if hasattr(ort, "get_ep_devices") else []
    return any(device.ep_name == "CUDAExecutionProvider" for device in devices)


# --- asking for a GPU without onnxruntime-gpu -------------------------------------------------


def test_cuda_without_the_provider_is_a_config_error_naming_the_extra(mlp, monkeypatch):
    config, version_dir = mlp
    monkeypatch.setattr(ort, "get_available_providers", lambda: ["CPUExecutionProvider"])
    monkeypatch.setattr(ort, "get_ep_devices", list, raising=False)
    with pytest.raises(InvalidConfig) as caught:
        OnnxRuntimeBackend(context_for(config, version_dir, "cuda:0"))
    error = caught.value
    assert error.code is ErrorCode.INVALID_ARGUMENT and error.field == "instance_group"
    assert "no CUDAExecutionProvider" in error.message
    assert "pip install 'headrace[gpu]'" in error.message and "onnxruntime-gpu" in error.message


@pytest.mark.filterwarnings("ignore:Specified provider")
@pytest.mark.parametrize("listed_as", ["provider", "plugin EP device"])
def test_a_cuda_provider_that_falls_back_to_the_cpu_is_a_config_error(mlp, monkeypatch, listed_as):
    if _cuda_provider():
        pytest.skip("this onnxruntime really has the CUDA provider")
    config, version_dir = mlp
    if listed_as == "provider":
        providers = ["CUDAExecutionProvider", "CPUExecutionProvider"]
        monkeypatch.setattr(ort, "get_available_providers", lambda: providers)
    else:  # a provider loaded as a plugin library is not in get_available_providers()
        devices = [SimpleNamespace(ep_name="CUDAExecutionProvider")]
        monkeypatch.setattr(ort, "get_ep_devices", lambda: devices, raising=False)
    # this onnxruntime cannot start it, falls back to the CPU, and the backend refuses that
    with pytest.raises(InvalidConfig, match="could not start its CUDAExecutionProvider on cuda:0"):
        OnnxRuntimeBackend(context_for(config, version_dir, "cuda:0"))


def test_on_the_cpu_the_backend_keeps_to_numpy(mlp):
    config, version_dir = mlp
    backend = OnnxRuntimeBackend(context_for(config, version_dir))
    assert backend.accepts_torch is False and backend.compute_stream is None


# --- threads ----------------------------------------------------------------------------------


def test_intra_op_threads_are_bounded_on_cpu_and_gpu(mlp):
    config, version_dir = mlp
    assert intra_op_threads(config, "cpu") == threads_per_cpu_instance(config)
    assert intra_op_threads(config, "cuda:0") == GPU_INTRA_OP_THREADS == 1
    backend = OnnxRuntimeBackend(context_for(config, version_dir))
    options = backend.session.get_session_options()
    assert options.intra_op_num_threads == threads_per_cpu_instance(config)


def test_intra_op_thread_count_overrides_both(mlp):
    config, _ = mlp
    config.parameters["intra_op_thread_count"].string_value = "3"
    assert intra_op_threads(config, "cpu") == intra_op_threads(config, "cuda:1") == 3


# --- I/O binding, on CPU buffers --------------------------------------------------------------


@pytest.mark.parametrize("batch", [1, 7])
def test_binding_writes_into_preallocated_outputs_like_session_run(mlp, batch):
    config, version_dir = mlp
    session = _session(version_dir)
    x = torch.randn(batch, 64, generator=torch.Generator().manual_seed(batch))
    out = TensorBinding(session, config, "cpu").run({"x": x})
    (want,) = session.run(["y"], {"x": x.numpy()})
    assert isinstance(out["y"], torch.Tensor) and out["y"].shape == (batch, 1)
    np.testing.assert_array_equal(out["y"].numpy(), want)


def test_binding_casts_and_takes_numpy_next_to_tensors(addsub):
    config, version_dir = addsub
    session = _session(version_dir)
    a = torch.arange(28, dtype=torch.float64).reshape(7, 4)  # the graph takes float32
    b = np.ones((7, 4), dtype=np.float32)
    out = TensorBinding(session, config, "cpu").run({"a": a, "b": b})
    assert out["sum"].dtype == torch.float32 and out["diff"].dtype == torch.float32
    np.testing.assert_allclose(out["sum"].numpy(), a.numpy() + 1)
    np.testing.assert_allclose(out["diff"].numpy(), a.numpy() - 1)


def test_outputs_of_unknown_shape_come_back_through_dlpack(relu):
    config, version_dir = relu
    session = _session(version_dir)
    binding = TensorBinding(session, config, "cpu")
    for n in (3, 5):  # a different width each run: nothing can be preallocated
        x = torch.randn(4, n, generator=torch.Generator().manual_seed(n))
        out = binding.run({"x": x})
        assert isinstance(out["y"], torch.Tensor) and out["y"].shape == (4, n)
        np.testing.assert_array_equal(out["y"].numpy(), x.clamp(min=0).numpy())


def test_without_dlpack_outputs_of_unknown_shape_come_back_on_the_host(relu):
    config, version_dir = relu
    binding = TensorBinding(_session(version_dir), config, "cpu")
    binding._dlpack = False  # what an onnxruntime built without DLPack gets
    x = torch.randn(2, 3, generator=torch.Generator().manual_seed(0))
    out = binding.run({"x": x})
    assert isinstance(out["y"], np.ndarray)
    np.testing.assert_array_equal(out["y"], x.clamp(min=0).numpy())


def test_binding_refuses_unknown_inputs_and_reports_model_errors(mlp):
    config, version_dir = mlp
    binding = TensorBinding(_session(version_dir), config, "cpu")
    with pytest.raises(InvalidInput, match="model 'mlp' has no input 'z'"):
        binding.run({"z": torch.zeros(1, 64)})
    # onnxruntime's own error: the backend wraps it in a ModelExecutionError
    with pytest.raises(RuntimeError, match="invalid dimensions for input: x"):
        binding.run({"x": torch.zeros(2, 3)})
    out = binding.run({"x": torch.zeros(2, 64)})  # the binding was cleared after the failure
    assert out["y"].shape == (2, 1)


def test_known_dims_prefer_static_model_dims_then_the_config():
    assert known_dims(["batch", 1], [1], batched=True) == (1,)
    assert known_dims(["batch", "n"], [16], batched=True) == (16,)
    assert known_dims(["batch", "n"], [-1], batched=True) == (-1,)
    assert known_dims([3, 64], [-1, 64], batched=False) == (3, 64)
    assert known_dims(["batch", 10], [2, 5], batched=True) == (10,)  # a reshape: the model's
    assert known_dims([], [4], batched=True) == (4,)  # rank unknown to onnxruntime
    assert known_dims(None, [], batched=True) is None


def test_string_tensors_are_not_bindable(tmp_path, mlp):
    from onnx import TensorProto, helper, save

    x = helper.make_tensor_value_info("x", TensorProto.STRING, ["batch", 1])
    y = helper.make_tensor_value_info("y", TensorProto.STRING, ["batch", 1])
    graph = helper.make_graph([helper.make_node("Identity", ["x"], ["y"])], "echo", [x], [y])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    save(model, str(tmp_path / "echo.onnx"))
    strings = ort.InferenceSession(str(tmp_path / "echo.onnx"), providers=["CPUExecutionProvider"])
    assert binds_every_tensor(strings) is False
    assert binds_every_tensor(_session(mlp[1])) is True


# --- on a GPU ---------------------------------------------------------------------------------


def _cuda_backend(config, version_dir):
    if not _cuda_provider():
        pytest.skip("onnxruntime has no CUDAExecutionProvider (install headrace[gpu])")
    return OnnxRuntimeBackend(context_for(config, version_dir, "cuda:0"))


@pytest.mark.gpu
@pytest.mark.parametrize("model", ["mlp", "addsub", "relu"])
def test_the_cuda_pipeline_matches_the_cpu(model, request):
    from headrace.engine.cuda import CudaStages

    config, version_dir = request.getfixturevalue(model)
    backend = _cuda_backend(config, version_dir)
    assert backend.accepts_torch is True
    assert isinstance(backend.compute_stream, torch.cuda.Stream)
    assert backend.session.get_providers()[0] == "CUDAExecutionProvider"
    assert backend.session.get_session_options().intra_op_num_threads == GPU_INTRA_OP_THREADS
    cpu = OnnxRuntimeBackend(context_for(config, version_dir))
    instance = ModelInstance(backend, num_buffers=3)
    assert instance.on_gpu and isinstance(instance.pipeline._stages, CudaStages)
    rng = np.random.default_rng(0)
    width = {"mlp": 64, "addsub": 4, "relu": 9}[model]
    names = [tensor.name for tensor in config.input]
    batches = [
        [
            {name: rng.standard_normal((size, width)).astype(np.float32) for name in names}
            for size in sizes
        ]
        for sizes in ([1], [3, 4], [8], [2, 1, 5], [7])
        for _ in range(8)
    ]
    futures = [instance.submit_requests(requests) for requests in batches]  # many in flight
    for requests, future in zip(batches, futures):
        for inputs, result in zip(requests, future.result(timeout=120)):
            assert isinstance(result, dict)
            want = cpu.execute(inputs)
            for name, value in want.items():
                np.testing.assert_allclose(result[name], value, rtol=1e-3, atol=1e-3)
    instance.close()


@pytest.mark.gpu
def test_device_tensors_on_another_current_stream(mlp):
    config, version_dir = mlp
    backend = _cuda_backend(config, version_dir)
    x = torch.randn(6, 64, generator=torch.Generator().manual_seed(1))
    (want,) = _session(version_dir).run(["y"], {"x": x.numpy()})
    other = torch.cuda.Stream(device="cuda:0")
    for current in (other, backend.compute_stream):  # unwired engine, wired engine
        with torch.cuda.stream(current):
            out = backend.execute({"x": x.to("cuda:0", non_blocking=True)})
            y = out["y"]
            assert y.device == torch.device("cuda:0")
            host = y.to("cpu", non_blocking=False)  # ordered on the current stream only
        np.testing.assert_allclose(host.numpy(), want, rtol=1e-3, atol=1e-3)


@pytest.mark.gpu
def test_numpy_on_a_cuda_backend_and_a_failing_bound_batch(mlp):
    config, version_dir = mlp
    backend = _cuda_backend(config, version_dir)
    out = backend.execute({"x": np.zeros((2, 64), dtype=np.float32)})
    assert isinstance(out["y"], np.ndarray) and out["y"].shape == (2, 1)
    with pytest.raises(ModelExecutionError, match="model 'mlp'"):
        backend.execute({"x": torch.zeros((2, 3), device="cuda:0")})
    backend.unload()
