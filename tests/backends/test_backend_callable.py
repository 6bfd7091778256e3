"""Python callables as models: return styles, parity with a torch module, and return errors."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from tritonclient.grpc import model_config_pb2

from fixtures_models import MLP
from headrace.backends.callable import CallableBackend
from headrace.backends.signature import add_tensor
from headrace.errors import InvalidConfig, ModelExecutionError
from headrace.types import DataType


def _config(outputs=("sum", "diff"), max_batch_size=8):
    config = model_config_pb2.ModelConfig(name="fn", max_batch_size=max_batch_size)
    add_tensor(config.input, "a", DataType.FP32, (4,))
    add_tensor(config.input, "b", DataType.FP32, (4,))
    for name in outputs:
        add_tensor(config.output, name, DataType.FP32, (4,))
    return config


A = np.arange(12, dtype=np.float32).reshape(3, 4)
B = np.ones((3, 4), dtype=np.float32)


@pytest.mark.parametrize(
    "fn",
    [
        lambda a, b: {"diff": a - b, "sum": a + b, "ignored": a},
        lambda a, b: (a + b, a - b),
        lambda a, b: [a + b, a - b],
    ],
    ids=["dict", "tuple", "list"],
)
def test_return_styles(fn):
    out = CallableBackend(fn, _config()).execute({"a": A, "b": B})
    assert list(out) == ["sum", "diff"]
    np.testing.assert_array_equal(out["sum"], A + B)
    np.testing.assert_array_equal(out["diff"], A - B)


def test_single_array_for_a_single_output():
    out = CallableBackend(lambda a, b: a * b, _config(outputs=("prod",))).execute({"a": A, "b": B})
    np.testing.assert_array_equal(out["prod"], A * B)


@pytest.mark.parametrize("batch", [1, 7])
def test_wrapping_a_torch_module_matches_it(batch):
    module = MLP().eval()

    def infer(x: np.ndarray) -> dict[str, np.ndarray]:
        with torch.no_grad():
            return {"y": module(torch.from_numpy(x)).numpy()}

    config = model_config_pb2.ModelConfig(name="mlp", max_batch_size=16)
    add_tensor(config.input, "x", DataType.FP32, (64,))
    add_tensor(config.output, "y", DataType.FP32, (1,))
    x = np.random.default_rng(batch).standard_normal((batch, 64), dtype=np.float32)
    out = CallableBackend(infer, config).execute({"x": x})
    with torch.no_grad():
        np.testing.assert_allclose(out["y"], module(torch.from_numpy(x)).numpy(), atol=1e-5)


def test_missing_output_is_named():
    backend = CallableBackend(lambda a, b: {"sum": a + b}, _config())
    with pytest.raises(ModelExecutionError, match=r"missing \['diff'\]"):
        backend.execute({"a": A, "b": B})


def test_wrong_count_and_bare_value_are_refused():
    with pytest.raises(ModelExecutionError, match="returned 1 values, expected 2"):
        CallableBackend(lambda a, b: (a,), _config()).execute({"a": A, "b": B})
    with pytest.raises(ModelExecutionError, match="returned a single ndarray, expected 2"):
        CallableBackend(lambda a, b: a, _config()).execute({"a": A, "b": B})


def test_wrong_batch_size_is_named():
    backend = CallableBackend(lambda a, b: {"sum": a + b, "diff": (a - b)[:1]}, _config())
    with pytest.raises(
        ModelExecutionError, match=r"batch of 3, but output 'diff' has shape \[1, 4\]"
    ):
        backend.execute({"a": A, "b": B})


def test_unbatched_models_skip_the_batch_check():
    backend = CallableBackend(lambda a, b: (a.sum(keepdims=True), b), _config(max_batch_size=0))
    out = backend.execute({"a": A, "b": B})
    assert out["sum"].shape == (1, 1)


def test_exceptions_in_the_callable_fail_the_batch():
    def broken(a, b):
        raise ValueError("bad input scale")

    with pytest.raises(ModelExecutionError, match="raised ValueError: bad input scale"):
        CallableBackend(broken, _config()).execute({"a": A, "b": B})


def test_constructor_checks_callable_and_outputs():
    with pytest.raises(InvalidConfig, match="is not callable"):
        CallableBackend(42, _config())  # type: ignore[arg-type]
    with pytest.raises(InvalidConfig, match="declares no outputs"):
        CallableBackend(lambda a, b: a, _config(outputs=()))
