"""Placement: instance groups (or a door's overrides) to planned and built instances."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np
import pytest
from tritonclient.grpc import model_config_pb2

from headrace.backends.base import Backend, BackendContext
from headrace.engine.placement import (
    PlacementOptions,
    build_instances,
    place_instances,
    plan_instances,
)
from headrace.errors import InvalidInput
from headrace.types import Outputs

GROUP = model_config_pb2.ModelInstanceGroup


def config_with_groups() -> model_config_pb2.ModelConfig:
    config = model_config_pb2.ModelConfig(name="scale", max_batch_size=8)
    config.input.add(name="x", data_type=model_config_pb2.TYPE_FP32, dims=[4])
    config.output.add(name="y", data_type=model_config_pb2.TYPE_FP32, dims=[4])
    config.instance_group.add(name="cpus", count=2, kind=GROUP.KIND_CPU)
    config.instance_group.add(count=1, kind=GROUP.KIND_GPU, gpus=[1])
    config.instance_group.add(count=1, kind=GROUP.KIND_AUTO)
    return config


class Scale(Backend):
    name = "scale"
    built: list[BackendContext] = []

    def __init__(self, context: BackendContext) -> None:
        super().__init__(context)
        Scale.built.append(context)
        if context.instance_name.endswith("_boom"):
            raise RuntimeError("cannot load")

    def execute(self, inputs: Mapping[str, Any]) -> Outputs:
        return {"y": inputs["x"] * 2}


def test_groups_expand_per_kind_and_device() -> None:
    config = config_with_groups()
    on_gpus = [(s.name, s.device) for s in plan_instances(config, gpus=(0, 1))]
    assert on_gpus == [
        ("cpus_0", "cpu"),
        ("cpus_1", "cpu"),
        ("scale_1_0", "cuda:1"),
        ("scale_2_0_cuda0", "cuda:0"),
        ("scale_2_0_cuda1", "cuda:1"),
    ]
    assert [s.device for s in plan_instances(config, gpus=())] == ["cpu"] * 4


def test_no_group_is_one_instance_of_kind_auto() -> None:
    config = model_config_pb2.ModelConfig(name="m")
    assert [(s.name, s.kind) for s in plan_instances(config, gpus=())] == [("m_0_0", "cpu")]
    assert [(s.name, s.device) for s in plan_instances(config, gpus=(0,))] == [("m_0_0", "cuda:0")]


def test_a_door_can_override_count_and_device() -> None:
    config = config_with_groups()
    plan = plan_instances(config, gpus=(0, 1), count=3, device="cuda")
    assert [(s.name, s.device) for s in plan] == [
        ("scale_0_0", "cuda:0"),
        ("scale_0_1", "cuda:1"),
        ("scale_0_2", "cuda:0"),
    ]
    assert [s.device for s in plan_instances(config, gpus=(), device="cpu")] == ["cpu"] * 4
    assert [s.device for s in plan_instances(config, gpus=(), count=2)] == ["cpu", "cpu"]
    with pytest.raises(InvalidInput, match="torch sees no GPU"):
        plan_instances(config, gpus=(), count=1, device="cuda")
    with pytest.raises(InvalidInput, match="at least 1"):
        PlacementOptions(count=0)


def test_two_cpu_instances_are_built_and_each_executes() -> None:
    config = model_config_pb2.ModelConfig(name="scale", max_batch_size=8)
    config.instance_group.add(count=2, kind=GROUP.KIND_CPU)
    Scale.built = []
    base = BackendContext("scale", 1, "", "", config)
    instances = place_instances(base, Scale, PlacementOptions(num_buffers=1), gpus=())
    try:
        assert [i.name for i in instances] == ["scale_0_0", "scale_0_1"]
        assert [c.instance_name for c in Scale.built] == ["scale_0_0", "scale_0_1"]
        assert all(i.num_buffers == 1 for i in instances)
        x = np.ones((2, 4), np.float32)
        for instance in instances:
            np.testing.assert_array_equal(instance.execute({"x": x})["y"], x * 2)
    finally:
        for instance in instances:
            instance.close()


def test_a_failed_load_closes_the_instances_already_built() -> None:
    from headrace.engine.placement import InstanceSpec

    config = model_config_pb2.ModelConfig(name="scale", max_batch_size=8)
    base = BackendContext("scale", 1, "", "", config)
    closed: list[str] = []

    class Tracked(Scale):
        def unload(self) -> None:
            closed.append(self.context.instance_name)

    specs = [InstanceSpec("g", "g_0", "cpu"), InstanceSpec("g", "g_boom", "cpu")]
    with pytest.raises(Exception, match="cannot load"):
        build_instances(specs, Tracked, base)
    assert closed == ["g_0"]
