"""A python-backend model with implicit state returns its state output, declared or not."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
from google.protobuf import text_format
from tritonclient.grpc import model_config_pb2

from headrace.backends.base import BackendContext
from headrace.backends.python import TritonPythonBackend
from headrace.errors import ModelExecutionError
from headrace.types import WorkItem

MODELS = Path(__file__).resolve().parent.parent / "data" / "python_models"


def load(tmp_path: Path, drop_state: bool = False) -> TritonPythonBackend:
    shutil.copytree(MODELS / "seq_accumulate", tmp_path / "seq_accumulate")
    text = (tmp_path / "seq_accumulate" / "config.pbtxt").read_text()
    config = text_format.Parse(text, model_config_pb2.ModelConfig())
    if drop_state:
        del config.sequence_batching.state[:]
    context = BackendContext(
        model_name="seq_accumulate",
        version=1,
        model_dir=str(tmp_path / "seq_accumulate"),
        version_dir=str(tmp_path / "seq_accumulate" / "1"),
        config=config,
    )
    return TritonPythonBackend(context)


def request() -> WorkItem:
    inputs = {"INPUT": np.array([[2]], np.int32), "ACC_IN": np.array([[5]], np.int32)}
    return WorkItem(inputs, sequence_id=1, sequence_start=True)


def test_the_state_output_comes_back_with_the_outputs(tmp_path: Path) -> None:
    backend = load(tmp_path)
    try:
        (result,) = backend.execute_requests([request()])
    finally:
        backend.unload()
    assert isinstance(result, dict)
    assert {name: int(value[0, 0]) for name, value in result.items()} == {
        "OUTPUT": 7,
        "ACC_OUT": 7,
    }


def test_an_undeclared_output_that_is_no_state_is_still_refused(tmp_path: Path) -> None:
    backend = load(tmp_path, drop_state=True)
    try:
        (result,) = backend.execute_requests([request()])
    finally:
        backend.unload()
    assert isinstance(result, ModelExecutionError)
    assert "returned output 'ACC_OUT'" in str(result)
