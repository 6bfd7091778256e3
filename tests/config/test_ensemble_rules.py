"""Triton's ensemble rules: data flow in one config, and the ensemble against its steps."""

from __future__ import annotations

import pytest

import headrace.config as hc
from headrace.config.ensemble_rules import check_ensemble_steps, dims_agree
from headrace.errors import InvalidConfig

SOURCE = "models/pipe/config.pbtxt"

PIPE = """
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

MLP = """
name: "mlp" backend: "python" max_batch_size: 8
input [ { name: "x" data_type: TYPE_FP32 dims: [ 4 ] } ]
output [ { name: "y" data_type: TYPE_FP32 dims: [ 4 ] } ]
"""

DENOISE = """
name: "denoise" backend: "python" max_batch_size: 16
input [ { name: "in" data_type: TYPE_FP32 dims: [ -1 ] } ]
output [ { name: "out" data_type: TYPE_FP32 dims: [ 4 ] } ]
"""


def validate(text: str) -> None:
    hc.validate_config(hc.parse_config(text, SOURCE), SOURCE)


def against_steps(pipe: str = PIPE, mlp: str = MLP, denoise: str = DENOISE) -> None:
    check_ensemble_steps(
        hc.parse_config(pipe), [hc.parse_config(mlp), hc.parse_config(denoise)], SOURCE
    )


# -- one configuration ------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("extra", "field", "words"),
    [
        (
            'input [ { name: "spare" data_type: TYPE_FP32 dims: [ 1 ] } ]',
            "input[1]",
            "ensemble input 'spare' is not read by any step",
        ),
        ("optimization { priority: PRIORITY_MAX }", "optimization", "no optimization"),
        (
            'model_warmup [ { name: "w" batch_size: 1 } ]',
            "model_warmup",
            "no model_warmup",
        ),
    ],
)
def test_what_triton_refuses_in_an_ensemble(extra: str, field: str, words: str) -> None:
    with pytest.raises(InvalidConfig, match=words) as info:
        validate(PIPE + extra)
    assert info.value.field == field


def test_a_tensor_written_but_never_read_is_refused() -> None:
    text = PIPE.replace(
        'output_map { key: "y" value: "mid" }',
        'output_map { key: "y" value: "mid" } output_map { key: "z" value: "spare" }',
    )
    with pytest.raises(InvalidConfig, match="'spare' written by step 0") as info:
        validate(text)
    assert info.value.field == "ensemble_scheduling.step[0].output_map"


def test_a_cycle_of_steps_that_feeds_no_output_is_refused() -> None:
    loop = """
    { model_name: "a" model_version: -1
      input_map { key: "x" value: "back" } output_map { key: "y" value: "forth" } },
    { model_name: "b" model_version: -1
      input_map { key: "x" value: "forth" } output_map { key: "y" value: "back" } },
    """
    with pytest.raises(InvalidConfig, match="'back' is never ready: step 1 \\('b'\\)") as info:
        validate(PIPE.replace("step [\n", "step [\n" + loop))
    assert info.value.field == "ensemble_scheduling.step[1]"


def test_a_tensor_read_but_never_written_is_refused() -> None:
    text = PIPE.replace(
        'input_map { key: "in" value: "mid" }',
        'input_map { key: "in" value: "mid" } input_map { key: "more" value: "nowhere" }',
    )
    with pytest.raises(InvalidConfig, match="not written by any runnable step"):
        validate(text)  # the output it feeds is named first, as Triton does


def test_an_ensemble_output_may_also_feed_a_step() -> None:
    text = PIPE.replace(
        'output [ { name: "clean"',
        'output [ { name: "mid" data_type: TYPE_FP32 dims: [ 4 ] }, { name: "clean"',
    )
    validate(text)


# -- against the composing models -------------------------------------------------------------


def test_a_fitting_ensemble_passes() -> None:
    against_steps()


def test_dims_agree_where_neither_is_a_wildcard() -> None:
    assert dims_agree([4, -1], [-1, 3]) and not dims_agree([4], [4, 1])
    assert not dims_agree([4, 2], [4, 3])


@pytest.mark.parametrize(
    ("change", "field", "words"),
    [
        (("pipe", "max_batch_size: 8", "max_batch_size: 9"), "max_batch_size", "only 8"),
        (
            ("mlp", "TYPE_FP32 dims: [ 4 ] } ]\noutput", "TYPE_INT8 dims: [ 4 ] } ]\noutput"),
            "ensemble_scheduling.step[0].input_map[x]",
            "ensemble tensor 'raw'",
        ),
        (
            ("denoise", "dims: [ -1 ]", "dims: [ 5 ]"),
            "ensemble_scheduling.step[1].input_map[in]",
            "TYPE_FP32 [-1, 5]",
        ),
        (
            ("mlp", 'name: "x"', 'name: "x2"'),
            "ensemble_scheduling.step[0].input_map",
            "has no input 'x'",
        ),
        (
            ("denoise", 'name: "out"', 'name: "o"'),
            "ensemble_scheduling.step[1].output_map",
            "has no output 'out'",
        ),
        (
            (
                "denoise",
                "dims: [ -1 ] } ]",
                'dims: [ -1 ] }, { name: "k" data_type: TYPE_FP32 dims: [ 1 ] } ]',
            ),
            "ensemble_scheduling.step[1].input_map",
            "input 'k' of step 1 (model 'denoise') is not mapped",
        ),
    ],
)
def test_an_ensemble_that_does_not_fit_its_steps_is_refused(
    change: tuple[str, str, str], field: str, words: str
) -> None:
    texts = {"pipe": PIPE, "mlp": MLP, "denoise": DENOISE}
    which, old, new = change
    assert old in texts[which]
    texts[which] = texts[which].replace(old, new)
    with pytest.raises(InvalidConfig) as info:
        against_steps(**texts)
    assert info.value.field == field
    assert words in str(info.value) and str(info.value).startswith(SOURCE)


def test_an_optional_step_input_may_stay_unmapped() -> None:
    denoise = DENOISE.replace(
        "dims: [ -1 ] } ]",
        'dims: [ -1 ] }, { name: "k" data_type: TYPE_FP32 dims: [ 1 ] optional: true } ]',
    )
    against_steps(denoise=denoise)


def test_a_non_batching_step_meets_a_batching_ensemble_by_its_full_shape() -> None:
    flat = MLP.replace("max_batch_size: 8", "max_batch_size: 0").replace(
        "dims: [ 4 ]", "dims: [ -1, 4 ]"
    )
    against_steps(mlp=flat)
