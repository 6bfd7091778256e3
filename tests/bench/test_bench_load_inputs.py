"""Load-generator requests built from model metadata: shapes, dtypes, BYTES, both wires."""

from __future__ import annotations

import json

import numpy as np
import pytest
from tritonclient.grpc import service_pb2

from headrace.bench.load import LoadPoint, LoadSettings, _plans, split_address
from headrace.bench.load_cli import parse_points, parse_shape
from headrace.bench.load_inputs import (
    ModelTarget,
    grpc_request_bytes,
    http_request,
    random_inputs,
)
from headrace.errors import InvalidConfig, InvalidInput

METADATA = {
    "name": "m",
    "inputs": [
        {"name": "X", "datatype": "FP32", "shape": [-1, 4]},
        {"name": "S", "datatype": "BYTES", "shape": [-1, -1]},
        {"name": "I", "datatype": "INT64", "shape": [-1, 2]},
    ],
    "outputs": [{"name": "Y", "datatype": "FP32", "shape": [-1, 1]}],
}


def target() -> ModelTarget:
    return ModelTarget.from_metadata(METADATA, max_batch_size=8, shapes={"S": [3]})


def test_metadata_gives_dims_without_the_batch_dimension() -> None:
    t = target()
    assert [(s.name, s.datatype, s.dims) for s in t.inputs] == [
        ("X", "FP32", (4,)),
        ("S", "BYTES", (3,)),
        ("I", "INT64", (2,)),
    ]
    assert t.outputs == ("Y",)


def test_variable_dims_need_a_shape_and_unknown_names_are_refused() -> None:
    with pytest.raises(InvalidInput, match="--shape S:DIMS"):
        ModelTarget.from_metadata(METADATA, max_batch_size=8)
    with pytest.raises(InvalidInput, match=r"--shape names \['Z'\]"):
        ModelTarget.from_metadata(METADATA, 8, shapes={"S": [1], "Z": [2]})


def test_random_inputs_have_the_right_dtype_and_shape() -> None:
    values = random_inputs(target(), batch_size=5, string_length=7)
    assert values["X"].dtype == np.float32 and values["X"].shape == (5, 4)
    assert values["I"].dtype == np.int64 and values["I"].shape == (5, 2)
    assert values["S"].shape == (5, 3)
    assert all(isinstance(v, bytes) and len(v) == 7 for v in values["S"].reshape(-1))


def test_a_model_without_batching_takes_batch_size_one_only() -> None:
    plain = ModelTarget.from_metadata(
        {"name": "p", "inputs": [{"name": "X", "datatype": "FP32", "shape": [4]}]}, 0
    )
    assert random_inputs(plain, 1)["X"].shape == (4,)
    with pytest.raises(InvalidInput, match="--batch-size must be 1, got 2"):
        random_inputs(plain, 2)


def test_http_body_is_the_binary_extension() -> None:
    values = random_inputs(target(), batch_size=2, string_length=5)
    path, headers, body = http_request(target(), values)
    assert path == "/v2/models/m/infer"
    size = int(headers["Inference-Header-Content-Length"])
    header = json.loads(body[:size])
    assert [i["parameters"]["binary_data_size"] for i in header["inputs"]] == [
        2 * 4 * 4,
        2 * 3 * (4 + 5),
        2 * 2 * 8,
    ]
    assert header["outputs"] == [{"name": "Y", "parameters": {"binary_data": True}}]
    x = np.frombuffer(body[size : size + 32], dtype="<f4").reshape(2, 4)
    np.testing.assert_array_equal(x, values["X"])


def test_grpc_request_round_trips() -> None:
    values = random_inputs(target(), batch_size=1)
    request = service_pb2.ModelInferRequest.FromString(grpc_request_bytes(target(), values, "7"))
    assert (request.model_name, request.id) == ("m", "7")
    assert [list(t.shape) for t in request.inputs] == [[1, 4], [1, 3], [1, 2]]
    first = np.frombuffer(request.raw_input_contents[0], dtype="<f4").reshape(1, 4)
    np.testing.assert_array_equal(first, values["X"])


def test_load_is_split_over_the_processes() -> None:
    settings = LoadSettings("127.0.0.1:1", "m", processes=4)
    plans = _plans(settings, target(), LoadPoint(concurrency=10))
    assert [p.concurrency for p in plans] == [3, 3, 2, 2]
    assert [p.concurrency for p in _plans(settings, target(), LoadPoint(concurrency=2))] == [1, 1]
    rated = _plans(settings, target(), LoadPoint(request_rate=100.0))
    assert [p.rate for p in rated] == [25.0] * 4
    assert [p.rate_offset_s for p in rated] == pytest.approx([0, 0.01, 0.02, 0.03])


def test_settings_and_points_name_the_bad_value() -> None:
    with pytest.raises(InvalidConfig, match="--streaming needs --protocol grpc"):
        LoadSettings("h:1", "m", streaming=True)
    with pytest.raises(InvalidConfig, match="--max-trials must be >= 3"):
        LoadSettings("h:1", "m", max_trials=2)
    with pytest.raises(InvalidConfig, match="concurrency or a request rate"):
        LoadPoint()
    assert split_address("http://127.0.0.1:8000/") == "127.0.0.1:8000"


def test_cli_parses_lists_ranges_and_shapes() -> None:
    ints = parse_points(int)
    assert ints("1,4,16") == [1, 4, 16]
    assert ints("1:9:4") == [1, 5, 9]
    assert ints("2:4") == [2, 3, 4]
    assert parse_points(float)("50:100:25") == [50.0, 75.0, 100.0]
    assert parse_shape("IMG:3,224,224") == ("IMG", [3, 224, 224])
    import argparse

    for bad in ("0,4", "4:1", "a"):
        with pytest.raises(argparse.ArgumentTypeError):
            ints(bad)
    with pytest.raises(argparse.ArgumentTypeError, match="NAME:DIMS"):
        parse_shape("16")
