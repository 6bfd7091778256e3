"""onnxruntime backend on ``tensor(string)``: BYTES in as text, BYTES out as Triton returns them."""

from __future__ import annotations

import numpy as np
import pytest

from fixtures_models import context_for, write_string_concat_onnx
from headrace.backends.onnx import OnnxRuntimeBackend
from headrace.config import parse_config
from headrace.errors import InvalidInput

CONFIG = """
name: "strings"
backend: "onnxruntime"
max_batch_size: 8
input [ { name: "IN" data_type: TYPE_STRING dims: [ 1 ] } ]
output [
  { name: "SAME" data_type: TYPE_STRING dims: [ 1 ] },
  { name: "TWICE" data_type: TYPE_STRING dims: [ 1 ] }
]
"""


@pytest.fixture
def backend(tmp_path) -> OnnxRuntimeBackend:
    version_dir = tmp_path / "strings" / "1"
    version_dir.mkdir(parents=True)
    write_string_concat_onnx(version_dir / "model.onnx")
    return OnnxRuntimeBackend(context_for(parse_config(CONFIG), version_dir))


def _bytes(*values: bytes) -> np.ndarray:
    array = np.empty((len(values), 1), dtype=np.object_)
    for index, value in enumerate(values):
        array[index, 0] = value
    return array


def test_bytes_reach_the_model_as_text_and_come_back_as_bytes(backend) -> None:
    out = backend.execute({"IN": _bytes(b"427", "é✓".encode(), b"")})
    assert out["SAME"].dtype == np.object_
    assert out["SAME"].tolist() == [[b"427"], ["é✓".encode()], [b""]]
    assert out["TWICE"].tolist() == [[b"427427"], ["é✓é✓".encode()], [b""]]


def test_str_elements_pass_as_they_are(backend) -> None:
    out = backend.execute({"IN": np.array([["abc"]], dtype=np.object_)})
    assert out["TWICE"].tolist() == [[b"abcabc"]]


def test_bytes_that_are_not_utf8_are_refused_with_the_input_named(backend) -> None:
    with pytest.raises(InvalidInput, match=r"input 'IN' .*element 1 is not UTF-8"):
        backend.execute({"IN": _bytes(b"ok", b"\xff\xfe")})
