"""bench tune's choice on known inputs: grid, cost, Pareto front, the pick; config rewriting."""

from __future__ import annotations

import pytest

from headrace.bench.tune import Measurement, Setting, choose, cost, grid, pareto_front
from headrace.bench.tune_run import apply_setting, model_setting
from headrace.config.text import format_config, parse_config
from headrace.errors import InvalidInput

_S = Setting(1, 8, 0)


def _m(
    throughput: float | None, p99: float | None, cpu_s: float = 1.0, **kw: object
) -> Measurement:
    return Measurement(_S, 4, throughput=throughput, p99_ms=p99, inferences=1000, wall_s=2.0,
                       cpu_s=cpu_s, **kw)  # type: ignore[arg-type]  # fmt: skip


def test_grid_puts_the_baseline_first_once_and_checks_values() -> None:
    base = Setting(1, 8, 0)
    settings = grid((1, 2), (8,), (0, 100), base)
    assert settings == [base, Setting(1, 8, 100), Setting(2, 8, 0), Setting(2, 8, 100)]
    with pytest.raises(InvalidInput, match="--instances"):
        grid((0,), (8,), (0,))


def test_grid_searches_threads_and_drops_the_backends_own_share() -> None:
    settings = grid((1, 2), (8,), (0,), None, (0, 1))
    assert settings == [Setting(1, 8, 0, 0), Setting(1, 8, 0, 1), Setting(2, 8, 0, 0),
                        Setting(2, 8, 0, 1)]  # fmt: skip
    # on 2 cores, 2 instances get 1 thread each anyway: 1 is the same setting as 0
    assert grid((1, 2), (8,), (0,), None, (0, 1), cores=2) == settings[:3]
    assert grid((2,), (8,), (0,), None, (1,), cores=2) == [Setting(2, 8, 0, 1)]  # no 0 to share
    with pytest.raises(InvalidInput, match="--intra-op-threads"):
        grid((1,), (8,), (0,), None, (-1,))


def test_cost_per_million_inferences() -> None:
    point = _m(500.0, 3.0, cpu_s=0.5)
    assert cost(point, "device-seconds-per-million") == pytest.approx(500.0)
    assert cost(point, "instance-seconds-per-million") == pytest.approx(2000.0)
    assert cost(_m(None, None), "device-seconds-per-million") is None
    with pytest.raises(InvalidInput, match="--cost 'dollars'"):
        cost(point, "dollars")


def test_pareto_front_keeps_only_undominated_measured_points() -> None:
    points = [
        _m(100.0, 5.0),  # front: the lowest p99
        _m(200.0, 8.0),  # front
        _m(150.0, 9.0),  # dominated by #1
        _m(300.0, 20.0),  # front: the highest throughput
        _m(None, None, error="died"),
        _m(200.0, 8.0),  # equal to #1: neither dominates the other
    ]
    assert pareto_front(points) == [0, 1, 3, 5]


def test_choose_cheapest_under_the_bound_and_the_baseline_to_beat() -> None:
    points = [
        _m(100.0, 5.0, cpu_s=2.0, baseline=True),
        _m(200.0, 8.0, cpu_s=1.0),
        _m(250.0, 9.0, cpu_s=1.0),  # as cheap as #1 and faster: the tie goes here
        _m(900.0, 30.0, cpu_s=0.1),  # cheapest and fastest, but over the bound
    ]
    choice = choose(points, 10.0, "device-seconds-per-million")
    assert (choice.best, choice.fastest, choice.baseline) == (2, 2, 0)
    assert choose(points, 1.0, "device-seconds-per-million").best is None


_CONFIG = """
name: "m"
platform: "onnxruntime_onnx"
max_batch_size: 64
input { name: "x" data_type: TYPE_FP32 dims: 4 }
output { name: "y" data_type: TYPE_FP32 dims: 1 }
instance_group { count: 3 kind: KIND_CPU }
dynamic_batching { max_queue_delay_microseconds: 100 preferred_batch_size: [4, 64] }
"""


def test_model_setting_and_apply_setting_round_trip() -> None:
    config = parse_config(_CONFIG)
    assert model_setting(config) == Setting(3, 64, 100)
    tuned = parse_config(format_config(apply_setting(config, Setting(2, 8, 500))))
    assert [(g.count, g.kind) for g in tuned.instance_group] == [(2, config.instance_group[0].kind)]
    assert tuned.max_batch_size == 8
    assert tuned.dynamic_batching.max_queue_delay_microseconds == 500
    assert list(tuned.dynamic_batching.preferred_batch_size) == [4]  # 64 is over the new max
    assert config.max_batch_size == 64  # the model's own config is left alone
    assert not apply_setting(config, Setting(1, 8, -1)).HasField("dynamic_batching")


def test_threads_are_the_onnxruntime_parameter_and_0_removes_it() -> None:
    config = parse_config(_CONFIG)
    one = apply_setting(config, Setting(1, 8, 0, 1))
    assert one.parameters["intra_op_thread_count"].string_value == "1"
    assert model_setting(one) == Setting(1, 8, 0, 1)
    assert "intra_op_thread_count" not in apply_setting(one, Setting(1, 8, 0, 0)).parameters
    torch_model = parse_config(_CONFIG.replace("onnxruntime_onnx", "pytorch_libtorch"))
    torch_model.parameters["intra_op_thread_count"].string_value = "3"
    assert model_setting(torch_model).intra_op_threads == 0  # not a knob of that backend
    with pytest.raises(InvalidInput, match="onnxruntime models only"):
        apply_setting(torch_model, Setting(1, 8, 0, 2))


def test_side_by_side_compares_medians_over_rounds() -> None:
    from headrace.bench.tune import SideBySide

    own = Setting(2, 64, -1)
    chosen = [_m(t, p) for t, p in ((300.0, 4.0), (330.0, 5.0), (310.0, 6.0))]
    baseline = [
        Measurement(own, 4, throughput=t, p99_ms=p, inferences=1000, wall_s=2.0, cpu_s=2.0)
        for t, p in ((100.0, 9.0), (150.0, 12.0), (None, None))
    ]
    pair = SideBySide(4, tuple(chosen), tuple(baseline))
    assert pair.median("chosen", "throughput") == 310.0
    assert pair.median("baseline", "throughput") == 125.0  # the unmeasured round left out
    assert pair.gain() == pytest.approx(310.0 / 125.0)
    data = pair.as_dict("device-seconds-per-million", 10.0)
    assert data["chosen"]["within_bound"] and not data["baseline"]["within_bound"]
    assert data["baseline"]["config"] == own.as_dict()
    assert data["chosen"]["cost"] == pytest.approx(1000.0)
    assert len(data["baseline"]["rounds"]) == 3
    assert data["rounds_won"] == 2  # the third round's baseline was not measured
    assert SideBySide(4, (), tuple(baseline)).gain() is None
