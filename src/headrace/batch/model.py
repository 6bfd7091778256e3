"""The model instances of a job, placed as every door places them.

Which model a job runs is resolved by :mod:`headrace.repository.resolve`; where its instances
go is :mod:`headrace.engine.placement`'s decision: the model's ``instance_group`` by default,
or ``--instances N`` on ``--device D`` when given.
"""

from __future__ import annotations

from headrace.engine.instance import ModelInstance
from headrace.engine.placement import (
    InstanceSpec,
    PlacementOptions,
    build_instances,
    plan_instances,
)
from headrace.repository.resolve import ResolvedModel

__all__ = ["make_instances", "plan_job_instances"]


def plan_job_instances(model: ResolvedModel, *, count: int, device: str) -> list[InstanceSpec]:
    """The instances a job runs: ``count`` (0: the model's instance groups) on ``device``
    ("": the groups' devices)."""
    return plan_instances(model.config, count=count or None, device=device)


def make_instances(
    model: ResolvedModel, specs: list[InstanceSpec], *, num_buffers: int
) -> list[ModelInstance]:
    """One loaded instance per spec; closes those built so far when one fails."""
    from headrace.backends import load_backend

    options = PlacementOptions(num_buffers=num_buffers)
    return build_instances(specs, load_backend, model.context(), options)
