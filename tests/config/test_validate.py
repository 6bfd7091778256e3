"""headrace.config.validate_config: Triton's rules, each error naming file, field and value."""

from __future__ import annotations

import pytest

from headrace import config as hc
from headrace.errors import InvalidConfig

SOURCE = "models/mlp/config.pbtxt"

BASE = """
name: "mlp"
backend: "onnxruntime"
max_batch_size: 8
input [ { name: "x" data_type: TYPE_FP32 dims: [ -1, 4 ] } ]
output [ { name: "y" data_type: TYPE_FP32 dims: [ 2 ] } ]
"""

ENSEMBLE = """
name: "pipe"
platform: "ensemble"
max_batch_size: 8
input [ { name: "raw" data_type: TYPE_FP32 dims: [ 4 ] } ]
output [ { name: "clean" data_type: TYPE_FP32 dims: [ 4 ] } ]
ensemble_scheduling {
  step [
    { model_name: "mlp" model_version: -1
      input_map { key: "x" value: "raw" } output_map { key: "y" value: "mid" } },
    { model_name: "denoise" model_version: -1
      input_map { key: "in" value: "mid" } output_map { key: "out" value: "clean" } }
  ]
}
"""

SEQUENCE = """
name: "stream"
backend: "python"
max_batch_size: 4
input [ { name: "x" data_type: TYPE_FP32 dims: [ 1 ] } ]
output [ { name: "y" data_type: TYPE_FP32 dims: [ 1 ] } ]
sequence_batching {
  oldest { max_candidate_sequences: 4 preferred_batch_size: [ 2 ] }
  control_input [
    { name: "START" control [ { kind: CONTROL_SEQUENCE_START int32_false_true: [ 0, 1 ] } ] },
    { name: "CORRID" control [ { kind: CONTROL_SEQUENCE_CORRID data_type: TYPE_UINT64 } ] }
  ]
}
"""


def check(text: str) -> None:
    hc.validate_config(hc.parse_config(text, SOURCE), SOURCE)


@pytest.mark.parametrize("text", [BASE, ENSEMBLE, SEQUENCE])
def test_valid_configs_pass_before_and_after_defaults(text: str) -> None:
    config = hc.parse_config(text, SOURCE)
    hc.validate_config(config, SOURCE)
    hc.fill_defaults(config)
    hc.validate_config(config, SOURCE)


INVALID = [
    # (extra or replacement text, field path, value the message must name)
    ('name: "a/b"', "name", "'a/b'"),
    ('name: ".."', "name", "'..'"),
    ("max_batch_size: -1", "max_batch_size", "-1"),
    ('input [ { name: "z" data_type: TYPE_FP32 dims: [ 4, 0 ] } ]', "input[1].dims", "0"),
    ('input [ { name: "x" data_type: TYPE_FP32 dims: [ 4 ] } ]', "input[1].name", "'x'"),
    ('input [ { name: "z" dims: [ 4 ] } ]', "input[1].data_type", "TYPE_INVALID"),
    ('input [ { name: "z" data_type: TYPE_FP32 } ]', "input[1].dims", "'z'"),
    ('output [ { name: "" data_type: TYPE_FP32 dims: [ 1 ] } ]', "output[1].name", "name"),
    (
        'input [ { name: "z" data_type: TYPE_FP32 dims: [ 2, 3 ] reshape { shape: [ 5 ] } } ]',
        "input[1].reshape",
        "[5]",
    ),
    (
        'input [ { name: "z" data_type: TYPE_FP32 dims: [ 2, -3 ] } ]',
        "input[1].dims",
        "-3",
    ),
    (
        'input [ { name: "z" data_type: TYPE_FP32 format: FORMAT_NCHW dims: [ 2 ] } ]',
        "input[1].format",
        "[2]",
    ),
    ("dynamic_batching { preferred_batch_size: [ 4, 16 ] }", "preferred_batch_size[1]", "16"),
    ("dynamic_batching { preferred_batch_size: [ 0 ] }", "preferred_batch_size[0]", "0"),
    (
        "dynamic_batching { priority_levels: 2 default_priority_level: 3 }",
        "dynamic_batching.default_priority_level",
        "3",
    ),
    (
        "dynamic_batching { priority_levels: 2 default_priority_level: 1 "
        "priority_queue_policy { key: 5 value { } } }",
        "dynamic_batching.priority_queue_policy[5]",
        "5",
    ),
    (
        "dynamic_batching { preserve_ordering: true priority_levels: 2 default_priority_level: 1 }",
        "dynamic_batching.priority_levels",
        "2",
    ),
    (
        "dynamic_batching { preserve_ordering: true "
        "default_queue_policy { timeout_action: DELAY default_timeout_microseconds: 5 } }",
        "dynamic_batching.default_queue_policy.timeout_action",
        "DELAY",
    ),
    ("instance_group [ { count: -2 } ]", "instance_group[0].count", "-2"),
    ("instance_group [ { kind: KIND_CPU gpus: [ 0 ] } ]", "instance_group[0].gpus", "[0]"),
    ("version_policy { specific { versions: [ 2, 0 ] } }", "versions[1]", "0"),
    ("version_policy { latest { num_versions: 0 } }", "num_versions", "0"),
    ('platform: "pytorch_libtorch"', "platform", "'pytorch_libtorch'"),
    (
        "sequence_batching { oldest { preferred_batch_size: [ 9 ] } }",
        "sequence_batching.oldest.preferred_batch_size[0]",
        "9",
    ),
    (
        'sequence_batching { control_input [ { name: "S" control [ '
        "{ kind: CONTROL_SEQUENCE_START int32_false_true: [ 0, 1, 2 ] } ] } ] }",
        "sequence_batching.control_input[0].control[0].int32_false_true",
        "3",
    ),
    (
        'sequence_batching { control_input [ { name: "C" control [ '
        "{ kind: CONTROL_SEQUENCE_CORRID data_type: TYPE_FP32 } ] } ] }",
        "control[0].data_type",
        "TYPE_FP32",
    ),
    (
        "sequence_batching { direct { minimum_slot_utilization: 1.5 } }",
        "minimum_slot_utilization",
        "1.5",
    ),
]


@pytest.mark.parametrize(("extra", "field", "value"), INVALID)
def test_invalid_config_names_file_field_and_value(extra: str, field: str, value: str) -> None:
    key = extra.split(":")[0]
    scalar = key in ("name", "max_batch_size")
    text = "\n".join(extra if line.startswith(f"{key}:") else line for line in BASE.splitlines())
    with pytest.raises(InvalidConfig) as info:
        check(text if scalar else BASE + extra)
    message = str(info.value)
    assert message.startswith(SOURCE), message
    assert field in info.value.field, message
    assert value in message, message


def test_missing_outputs_are_refused() -> None:
    config = hc.parse_config(BASE, SOURCE)
    del config.output[:]
    with pytest.raises(InvalidConfig, match=r"output: a model needs at least one output"):
        hc.validate_config(config, SOURCE)


def test_dynamic_batching_on_a_non_batching_model_loads_as_triton_allows() -> None:
    check(BASE.replace("max_batch_size: 8", "max_batch_size: 0") + "dynamic_batching { }")
    with pytest.raises(InvalidConfig, match=r"preferred_batch_size\[0\]"):
        check(BASE + "dynamic_batching { preferred_batch_size: [ 16 ] }")


def test_empty_reshape_needs_a_batching_model() -> None:
    text = BASE.replace("max_batch_size: 8", "") + (
        'input [ { name: "s" data_type: TYPE_FP32 dims: [ 1 ] reshape { shape: [ ] } } ]'
    )
    with pytest.raises(InvalidConfig, match=r"input\[1\]\.reshape"):
        check(text)
    check(BASE + 'input [ { name: "s" data_type: TYPE_FP32 dims: [ 1 ] reshape { } } ]')


def test_reshape_with_matching_variable_segments_passes() -> None:
    check(
        BASE + 'input [ { name: "r" data_type: TYPE_FP32 dims: [ 2, 4, -1, 6 ] '
        "reshape { shape: [ 8, -1, 1, 6 ] } } ]"
    )


def test_both_batchers_are_refused_at_parse_time() -> None:
    with pytest.raises(InvalidConfig, match="'sequence_batching' and 'dynamic_batching'"):
        hc.parse_config(BASE + "dynamic_batching { }\nsequence_batching { }", SOURCE)


@pytest.mark.parametrize(
    ("old", "new", "field"),
    [
        ('model_name: "denoise"', 'model_name: ""', "ensemble_scheduling.step[1].model_name"),
        (
            'input_map { key: "in" value: "mid" }',
            'input_map { key: "in" value: "nowhere" }',
            "output[0]",
        ),
        ('output_map { key: "out" value: "clean" }', "", "ensemble_scheduling.step[1].output_map"),
        ('platform: "ensemble"', 'backend: "python"', "platform"),
    ],
)
def test_invalid_ensembles(old: str, new: str, field: str) -> None:
    assert old in ENSEMBLE
    with pytest.raises(InvalidConfig) as info:
        check(ENSEMBLE.replace(old, new))
    assert field in info.value.field
    assert str(info.value).startswith(SOURCE)


def test_ensemble_with_instance_groups_is_refused() -> None:
    with pytest.raises(InvalidConfig, match="instance_group"):
        check(ENSEMBLE + "instance_group [ { count: 1 } ]")


def test_platform_without_ensemble_scheduling_is_refused() -> None:
    text = BASE.replace('backend: "onnxruntime"', 'platform: "ensemble"')
    with pytest.raises(InvalidConfig, match="ensemble_scheduling"):
        check(text)


def test_a_python_model_may_list_no_tensors_as_triton_loads_it() -> None:
    # NVIDIA's simple_http_model_control.py reloads a model with {"max_batch_size": "16"} only.
    config = hc.parse_config('name: "m"\nbackend: "python"\nmax_batch_size: 16\n', SOURCE)
    hc.validate_config(config, SOURCE)
    config.backend, config.platform = "onnxruntime", "onnxruntime_onnx"
    with pytest.raises(InvalidConfig, match=r"input: a model needs at least one input"):
        hc.validate_config(config, SOURCE)
