"""headrace.config: text round trips, syntax errors, I/O, JSON form, specs and helpers."""

from __future__ import annotations

import json
import os

import pytest

from headrace import config as hc
from headrace.errors import InvalidConfig
from headrace.types import DataType, TensorSpec

RICH = """
name: "mlp"
platform: "onnxruntime_onnx"
backend: "onnxruntime"
max_batch_size: 16
version_policy { specific { versions: [1, 3] } }
input [
  { name: "x" data_type: TYPE_FP32 dims: [ -1, 64 ] },
  { name: "mask" data_type: TYPE_BOOL dims: [ 64 ] optional: true },
  { name: "ids" data_type: TYPE_STRING dims: [ 1 ] reshape { shape: [] } }
]
output [ { name: "y" data_type: TYPE_FP16 dims: [ 10 ] label_filename: "labels.txt" } ]
dynamic_batching {
  preferred_batch_size: [ 4, 8 ]
  max_queue_delay_microseconds: 500
  priority_levels: 3
  default_priority_level: 2
  default_queue_policy { timeout_action: REJECT default_timeout_microseconds: 1000 }
  priority_queue_policy {
    key: 1
    value { timeout_action: DELAY default_timeout_microseconds: 250 allow_timeout_override: true max_queue_size: 32 }
  }
}
instance_group [ { count: 2 kind: KIND_CPU }, { name: "gpu_group" count: 1 kind: KIND_GPU gpus: [ 0 ] } ]
parameters { key: "intra_op_thread_count" value { string_value: "2" } }
"""


def rich() -> hc.ModelConfig:
    return hc.parse_config(RICH, "models/mlp/config.pbtxt")


# --- text ------------------------------------------------------------------------------------


def test_rich_config_round_trips_through_text() -> None:
    first = rich()
    text = hc.format_config(first)
    second = hc.parse_config(text)
    assert second == first
    assert hc.format_config(second) == text
    assert first.dynamic_batching.priority_queue_policy[1].max_queue_size == 32
    assert first.parameters["intra_op_thread_count"].string_value == "2"
    assert list(first.version_policy.specific.versions) == [1, 3]


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ('name: "mlp"\nmax_batch: 4\n', ["line 2", "unknown field 'max_batch'"]),
        ('input [ { name: "x" data_type: TYPE_FP33 } ]', ["line 1", "'TYPE_FP33'"]),
        (
            'name: "m"\ndynamic_batching { }\nsequence_batching { }',
            ["line 3", "'sequence_batching' and 'dynamic_batching'"],
        ),
        ('max_batch_size: "eight"', ["line 1", "max_batch_size"]),
        ('name: "m"\ninput { name: "x" ', ["line 2", '"}"']),
        ('name: "a"\nname: "b"', ["line 2", "'name' is given more than once"]),
    ],
)
def test_syntax_errors_name_file_line_and_token(text: str, expected: list[str]) -> None:
    with pytest.raises(InvalidConfig) as info:
        hc.parse_config(text, "models/mlp/config.pbtxt")
    message = str(info.value)
    assert message.startswith("models/mlp/config.pbtxt: line ")
    for part in expected:
        assert part in message
    assert info.value.source == "models/mlp/config.pbtxt"


# --- files -----------------------------------------------------------------------------------


def test_write_then_read_local_path(tmp_path) -> None:
    path = tmp_path / "model" / "config.pbtxt"
    hc.write_config(rich(), str(path))
    assert hc.read_config(str(path)) == rich()
    assert os.listdir(path.parent) == ["config.pbtxt"]  # no temporary file left behind


def test_write_replaces_an_existing_file(tmp_path) -> None:
    path = str(tmp_path / "config.pbtxt")
    hc.write_config(hc.new_config("old"), path)
    hc.write_config(hc.new_config("new"), path)
    assert hc.read_config(path).name == "new"


def test_write_then_read_file_url(tmp_path) -> None:
    url = f"file://{tmp_path}/m/config.pbtxt"
    hc.write_config(rich(), url)
    assert (tmp_path / "m" / "config.pbtxt").exists()
    assert hc.read_config(url) == rich()


def test_write_then_read_memory_url(tmp_path) -> None:
    url = f"memory://headrace-tests/{tmp_path.name}/mlp/config.pbtxt"
    hc.write_config(rich(), url)
    assert hc.read_config(url) == rich()


def test_read_missing_file_names_the_path(tmp_path) -> None:
    path = str(tmp_path / "absent" / "config.pbtxt")
    with pytest.raises(InvalidConfig, match=r"absent/config\.pbtxt"):
        hc.read_config(path)


def test_read_syntax_error_names_the_path(tmp_path) -> None:
    path = tmp_path / "config.pbtxt"
    path.write_text('name: "m"\nmax_batch: 1\n')
    with pytest.raises(InvalidConfig) as info:
        hc.read_config(str(path))
    assert str(info.value).startswith(f"{path}: line 2")


# --- JSON ------------------------------------------------------------------------------------


def completed() -> hc.ModelConfig:
    config = rich()
    hc.fill_defaults(config)
    return config


def test_json_uses_proto_names_numbers_and_prints_defaults() -> None:
    data = hc.config_to_json(completed())
    assert data["input"][0]["dims"] == [-1, 64]
    assert data["input"][0]["data_type"] == "TYPE_FP32"
    assert data["input"][2]["reshape"] == {"shape": []}
    assert data["input"][0]["optional"] is False  # default-valued fields are printed
    assert data["batch_input"] == [] and data["model_warmup"] == []
    assert data["version_policy"] == {"specific": {"versions": [1, 3]}}
    batching = data["dynamic_batching"]
    assert batching["max_queue_delay_microseconds"] == 500
    assert batching["priority_levels"] == 3
    assert batching["default_priority_level"] == 2
    assert batching["default_queue_policy"]["default_timeout_microseconds"] == 1000
    # map keys stay strings (JSON objects only have string keys), as in Triton
    assert batching["priority_queue_policy"]["1"]["default_timeout_microseconds"] == 250
    assert data["parameters"] == {"intra_op_thread_count": {"string_value": "2"}}
    assert list(data)[:6] == [
        "name",
        "platform",
        "backend",
        "runtime",
        "version_policy",
        "max_batch_size",
    ]


def test_json_sequence_and_ensemble_int64_fields_are_numbers() -> None:
    seq = hc.parse_config(
        'name: "s" backend: "python" max_batch_size: 2 '
        "sequence_batching { oldest { max_queue_delay_microseconds: 7 } "
        'state [ { input_name: "i" output_name: "o" data_type: TYPE_FP32 dims: [ 3 ] } ] }'
    )
    hc.fill_defaults(seq)
    data = hc.config_to_json(seq)["sequence_batching"]
    assert data["max_sequence_idle_microseconds"] == 1_000_000
    assert data["oldest"]["max_queue_delay_microseconds"] == 7
    assert data["state"][0]["dims"] == [3]
    ens = hc.parse_config(
        'name: "e" platform: "ensemble" ensemble_scheduling { step [ { model_name: "a" '
        'model_version: -1 input_map { key: "x" value: "x" } output_map { key: "y" value: "y" } } ] }'
    )
    assert hc.config_to_json(ens)["ensemble_scheduling"]["step"][0]["model_version"] == -1


def test_json_round_trips_through_text_json() -> None:
    config = completed()
    wire = json.dumps(hc.config_to_json(config))  # what the HTTP endpoint sends
    assert hc.config_from_json(json.loads(wire)) == config  # what tritonclient.http parses


def test_json_accepts_int64_as_strings_as_protobuf_writes_them() -> None:
    data = {"name": "m", "input": [{"name": "x", "data_type": "TYPE_FP32", "dims": ["-1", "4"]}]}
    assert list(hc.config_from_json(data).input[0].dims) == [-1, 4]


def test_json_unknown_field_is_invalid_config() -> None:
    with pytest.raises(InvalidConfig, match="max_batch"):
        hc.config_from_json({"name": "m", "max_batch": 3})


def test_json_of_empty_config_is_empty() -> None:
    assert hc.config_to_json(hc.ModelConfig()) == {}
    assert hc.config_from_json({}) == hc.ModelConfig()


# --- specs and helpers -----------------------------------------------------------------------


def test_input_and_output_specs() -> None:
    config = rich()
    assert hc.input_specs(config) == [
        TensorSpec("x", DataType.FP32, (-1, 64)),
        TensorSpec("mask", DataType.BOOL, (64,), optional=True),
        TensorSpec("ids", DataType.BYTES, (1,)),
    ]
    assert hc.output_specs(config) == [TensorSpec("y", DataType.FP16, (10,))]


def test_specs_refuse_a_missing_data_type() -> None:
    config = hc.parse_config('name: "m" input [ { name: "x" dims: [ 1 ] } ]')
    with pytest.raises(InvalidConfig, match=r"input\[0\]\.data_type"):
        hc.input_specs(config)


@pytest.mark.parametrize("dt", list(DataType))
def test_datatype_enum_round_trip(dt: DataType) -> None:
    value = hc.config_datatype(dt)
    assert hc.datatype_from_config(value) is dt


def test_datatype_from_config_refuses_invalid() -> None:
    with pytest.raises(InvalidConfig, match="0"):
        hc.datatype_from_config(0)
    with pytest.raises(InvalidConfig, match="999"):
        hc.datatype_from_config(999)


def test_new_config_and_add_tensor_build_a_valid_config() -> None:
    config = hc.new_config("adder", backend="python", max_batch_size=4)
    hc.add_tensor(config, "input", "a", DataType.INT32, [3], optional=True)
    hc.add_tensor(config, "input", "b", "TYPE_INT32", (3,))
    hc.add_tensor(config, "output", "sum", "INT32", [3])
    assert hc.batched(config)
    assert not hc.batched(hc.new_config("one"))
    assert hc.input_specs(config)[0] == TensorSpec("a", DataType.INT32, (3,), optional=True)
    hc.fill_defaults(config)
    hc.validate_config(config, "adder/config.pbtxt")


@pytest.mark.parametrize(
    ("args", "kwargs", "match"),
    [
        (("weights", "w", DataType.FP32, [1]), {}, "'weights'"),
        (("input", "w", "FLOAT", [1]), {}, "'FLOAT'"),
        (("output", "w", DataType.FP32, [1]), {"optional": True}, "'w'"),
    ],
)
def test_add_tensor_refuses_bad_arguments(args, kwargs, match: str) -> None:
    with pytest.raises(InvalidConfig, match=match):
        hc.add_tensor(hc.new_config("m"), *args, **kwargs)
