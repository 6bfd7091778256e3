"""Export from torch: tensor specs, batching hints, dynamic axes and the files written."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import nn

from fixtures_models import MLP, AddSub, NoiseRemover
from headrace.errors import InvalidConfig
from headrace.repository.export import export_onnx, export_torchscript
from headrace.types import DataType, TensorSpec


def test_onnx_export_of_mlp_describes_a_batching_model(tmp_path):
    path = tmp_path / "model.onnx"
    inputs, outputs, hint = export_onnx(
        MLP(), str(path), input_shapes={"x": (None, 64)}, output_names=["y"]
    )
    assert inputs == [TensorSpec("x", DataType.FP32, (64,))]
    assert outputs == [TensorSpec("y", DataType.FP32, (1,))]
    assert hint > 0
    assert path.stat().st_size > 0


def test_onnx_export_keeps_batch_and_inner_axes_dynamic(tmp_path):
    import onnxruntime as ort

    path = tmp_path / "model.onnx"
    export_onnx(
        AddSub(),
        str(path),
        input_shapes={"a": (None, None), "b": (None, None)},
        output_names=["s", "d"],
    )
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    a = np.random.rand(5, 11).astype(np.float32)
    b = np.random.rand(5, 11).astype(np.float32)
    s, d = session.run(["s", "d"], {"a": a, "b": b})
    np.testing.assert_allclose(s, a + b, atol=1e-6)
    np.testing.assert_allclose(d, a - b, atol=1e-6)


def test_unbatched_export_keeps_full_dims_and_hints_zero(tmp_path):
    inputs, outputs, hint = export_torchscript(
        NoiseRemover(), str(tmp_path / "model.pt"), input_shapes={"x": (8, 64)}, output_names=["y"]
    )
    assert hint == 0
    assert inputs == [TensorSpec("x", DataType.FP32, (8, 64))]
    assert outputs == [TensorSpec("y", DataType.FP32, (8, 64))]


def test_output_dtype_and_variable_dims_come_from_running_the_module(tmp_path):
    class Counts(nn.Module):
        def forward(self, tokens: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
            return tokens.sum(dim=1), (tokens > 2).float()

    _, outputs, hint = export_torchscript(
        Counts(),
        str(tmp_path / "model.pt"),
        input_shapes={"tokens": (None, None)},
        output_names=["total", "mask"],
        input_dtypes={"tokens": DataType.INT32},
    )
    assert hint > 0
    assert outputs == [
        TensorSpec("total", DataType.INT64, ()),
        TensorSpec("mask", DataType.FP32, (-1,)),
    ]


def test_torchscript_export_round_trips(tmp_path):
    module = AddSub()
    path = tmp_path / "model.pt"
    export_torchscript(
        module, str(path), input_shapes={"a": (None, 4), "b": (None, 4)}, output_names=["s", "d"]
    )
    loaded = torch.jit.load(str(path))
    a, b = torch.randn(7, 4), torch.randn(7, 4)
    s, d = loaded(a, b)
    torch.testing.assert_close(s, a + b)
    torch.testing.assert_close(d, a - b)


def test_wrong_number_of_output_names_is_rejected(tmp_path):
    with pytest.raises(InvalidConfig, match=r"returned 2 outputs, output_names lists 1"):
        export_onnx(
            AddSub(),
            str(tmp_path / "model.onnx"),
            input_shapes={"a": (None, 4), "b": (None, 4)},
            output_names=["s"],
        )


def test_dtype_for_an_unknown_input_is_rejected(tmp_path):
    with pytest.raises(InvalidConfig, match=r"\['z'\]"):
        export_onnx(
            MLP(),
            str(tmp_path / "model.onnx"),
            input_shapes={"x": (None, 64)},
            output_names=["y"],
            input_dtypes={"z": DataType.FP16},
        )


def test_batching_model_must_return_the_batch_first(tmp_path):
    class Pooled(nn.Module):
        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return x.sum(dim=0)

    with pytest.raises(InvalidConfig, match=r"output 'y' has shape \[64\]"):
        export_onnx(
            Pooled(), str(tmp_path / "m.onnx"), input_shapes={"x": (None, 64)}, output_names=["y"]
        )


def test_trace_that_bakes_in_a_shape_is_refused(tmp_path):
    class ShapeBaked(nn.Module):
        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return x * torch.tensor(float(x.shape[0]))

    with pytest.warns(torch.jit.TracerWarning), pytest.raises(InvalidConfig, match=r"jit\.script"):
        export_torchscript(
            ShapeBaked(), str(tmp_path / "m.pt"), input_shapes={"x": (None, 4)}, output_names=["y"]
        )
