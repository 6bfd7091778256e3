"""Triton's rules for a model configuration, checked before a model loads.

Each failure is an :class:`InvalidConfig` naming the file, the field path (``input[1].dims``)
and the offending value. Fields that :func:`headrace.config.defaults.fill_defaults` supplies
(version policy, instance groups, instance counts) may still be unset: they are checked only
when present, so the same check serves a config before and after completion.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import NoReturn, TypeAlias

from tritonclient.grpc import model_config_pb2 as pb

from headrace.config.platforms import ENSEMBLE_PLATFORM, check_platform_backend, platform_of_backend
from headrace.errors import InvalidConfig

__all__ = ["validate_config"]

ModelConfig: TypeAlias = pb.ModelConfig

_WILDCARD = -1
_TENSORRT_PLATFORM = platform_of_backend("tensorrt")
_CORRID_TYPES = frozenset(
    {pb.TYPE_UINT64, pb.TYPE_INT64, pb.TYPE_UINT32, pb.TYPE_INT32, pb.TYPE_STRING}
)
_Control = pb.ModelSequenceBatching.Control


class _Checker:
    """Carries the source name so each rule reads as one line."""

    def __init__(self, source: str) -> None:
        self.source = source

    def fail(self, field: str, message: str) -> NoReturn:
        raise InvalidConfig(message, source=self.source, field=field)


def validate_config(config: ModelConfig, source: str = "") -> None:
    """Check ``config``; raise InvalidConfig naming ``source``, the field and the value."""
    check = _Checker(source)
    _check_name(check, config.name)
    check_platform_backend(config.platform, config.backend, source)
    if config.max_batch_size < 0:
        check.fail("max_batch_size", f"must be >= 0, got {config.max_batch_size}")
    batched = config.max_batch_size > 0
    # Triton 2.51 loads a python-backend model that lists no inputs or outputs (its model.py
    # decides at run time; NVIDIA's simple_http_model_control.py reloads one so); the other
    # backends need their tensors declared or auto-completed.
    declared = config.backend != "python"
    if declared or config.input:
        _check_tensors(check, "input", config.input, batched, config.platform)
    if declared or config.output:
        _check_tensors(check, "output", config.output, batched, config.platform)
    _check_version_policy(check, config)
    _check_dynamic_batching(check, config)
    _check_sequence_batching(check, config)
    _check_ensemble(check, config)
    _check_instance_groups(check, config)
    _check_response_cache(check, config)


def _check_name(check: _Checker, name: str) -> None:
    if not name:
        check.fail("name", "model configuration must specify 'name'")
    if name in (".", "..") or any(char in name for char in "/\\\0"):
        check.fail("name", f"model name {name!r} is not a valid directory name")


def _check_tensors(
    check: _Checker, kind: str, tensors: Sequence, batched: bool, platform: str
) -> None:
    if not tensors:
        check.fail(kind, f"a model needs at least one {kind}")
    seen: dict[str, int] = {}
    for index, tensor in enumerate(tensors):
        path = f"{kind}[{index}]"
        if not tensor.name:
            check.fail(f"{path}.name", f"{kind} must specify 'name'")
        if tensor.name in seen:
            check.fail(
                f"{path}.name",
                f"duplicate {kind} name {tensor.name!r} (also {kind}[{seen[tensor.name]}])",
            )
        seen[tensor.name] = index
        label = f"{kind} {tensor.name!r}"
        _check_data_type(check, f"{path}.data_type", label, tensor.data_type)
        if not tensor.dims:
            check.fail(f"{path}.dims", f"{label} must specify 'dims'")
        _check_dims(check, f"{path}.dims", label, tensor.dims)
        if tensor.HasField("reshape"):
            _check_reshape(check, f"{path}.reshape", label, tensor, batched)
        formatted = kind == "input" and tensor.format != pb.ModelInput.FORMAT_NONE
        if formatted and len(tensor.dims) != 3:
            check.fail(
                f"{path}.format",
                f"{label} with format {pb.ModelInput.Format.Name(tensor.format)} needs "
                f"3 dims, got {list(tensor.dims)}",
            )
        if tensor.is_shape_tensor and platform != _TENSORRT_PLATFORM:
            check.fail(
                f"{path}.is_shape_tensor",
                f"{label}: shape tensors are only supported for TensorRT, not {platform!r}",
            )


def _check_data_type(check: _Checker, field: str, label: str, value: int) -> None:
    if value == pb.TYPE_INVALID or value not in pb.DataType.values():
        name = pb.DataType.Name(value) if value in pb.DataType.values() else str(value)
        check.fail(field, f"{label} must specify a valid 'data_type', got {name}")


def _check_dims(check: _Checker, field: str, label: str, dims: Iterable[int]) -> None:
    values = list(dims)
    for dim in values:
        if dim < 1 and dim != _WILDCARD:
            check.fail(
                field,
                f"{label}: dimension {dim} in {values} must be >= 1, or -1 for a "
                "variable-size dimension",
            )


def _segments(dims: Iterable[int]) -> list[int]:
    """Element counts of the runs between variable-size dimensions."""
    counts = [1]
    for dim in dims:
        if dim == _WILDCARD:
            counts.append(1)
        else:
            counts[-1] *= dim
    return counts


def _check_reshape(check: _Checker, field: str, label: str, tensor, batched: bool) -> None:  # type: ignore[no-untyped-def]
    shape = list(tensor.reshape.shape)
    if not shape and not batched:
        check.fail(
            field,
            f"{label}: an empty reshape needs a batching model (scalar tensors are not supported)",
        )
    _check_dims(check, f"{field}.shape", label, shape)
    if _segments(tensor.dims) != _segments(shape):
        check.fail(
            field,
            f"{label}: dims {list(tensor.dims)} and reshape {shape} do not hold the same "
            "number of elements",
        )


def _check_version_policy(check: _Checker, config: ModelConfig) -> None:
    policy = config.version_policy
    choice = policy.WhichOneof("policy_choice")
    if choice == "latest" and policy.latest.num_versions < 1:
        check.fail(
            "version_policy.latest.num_versions",
            f"must be >= 1, got {policy.latest.num_versions}",
        )
    if choice == "specific":
        versions = list(policy.specific.versions)
        if not versions:
            check.fail("version_policy.specific.versions", "must list at least one version")
        for index, version in enumerate(versions):
            if version < 1:
                check.fail(
                    f"version_policy.specific.versions[{index}]",
                    f"model versions are >= 1, got {version}",
                )


def _check_preferred(check: _Checker, field: str, sizes: Iterable[int], maximum: int) -> None:
    for index, size in enumerate(sizes):
        if not 1 <= size <= maximum:
            check.fail(
                f"{field}[{index}]",
                f"preferred batch size {size} must be in [1, max_batch_size={maximum}]",
            )


def _check_dynamic_batching(check: _Checker, config: ModelConfig) -> None:
    if not config.HasField("dynamic_batching"):
        return
    batching = config.dynamic_batching
    # Triton accepts a dynamic batcher on a non-batching model: it queues (with priorities and
    # timeouts) but never merges, so existing repositories that do this still load.
    if config.max_batch_size > 0:
        _check_preferred(
            check,
            "dynamic_batching.preferred_batch_size",
            batching.preferred_batch_size,
            config.max_batch_size,
        )
    levels = batching.priority_levels
    if levels > 0:
        if not 1 <= batching.default_priority_level <= levels:
            check.fail(
                "dynamic_batching.default_priority_level",
                f"must be in [1, priority_levels={levels}], got {batching.default_priority_level}",
            )
        for level in sorted(batching.priority_queue_policy):
            if not 1 <= level <= levels:
                check.fail(
                    f"dynamic_batching.priority_queue_policy[{level}]",
                    f"priority level {level} must be in [1, priority_levels={levels}]",
                )
    policies = [("dynamic_batching.default_queue_policy", batching.default_queue_policy)]
    policies += [
        (f"dynamic_batching.priority_queue_policy[{level}]", policy)
        for level, policy in sorted(batching.priority_queue_policy.items())
    ]
    for field, policy in policies:
        if policy.timeout_action not in pb.ModelQueuePolicy.TimeoutAction.values():
            check.fail(f"{field}.timeout_action", f"unknown timeout action {policy.timeout_action}")
        delays = policy.timeout_action == pb.ModelQueuePolicy.DELAY
        if batching.preserve_ordering and delays and policy.default_timeout_microseconds:
            check.fail(
                f"{field}.timeout_action",
                "DELAY cannot be used when 'preserve_ordering' is true",
            )
    if batching.preserve_ordering and levels > 1:
        check.fail(
            "dynamic_batching.priority_levels",
            f"'preserve_ordering' allows one priority level, got {levels}",
        )


def _check_sequence_batching(check: _Checker, config: ModelConfig) -> None:
    if not config.HasField("sequence_batching"):
        return
    sequence = config.sequence_batching
    if sequence.HasField("oldest"):
        _check_preferred(
            check,
            "sequence_batching.oldest.preferred_batch_size",
            sequence.oldest.preferred_batch_size,
            config.max_batch_size,
        )
    if sequence.HasField("direct"):
        utilization = sequence.direct.minimum_slot_utilization
        if not 0.0 <= utilization <= 1.0:
            check.fail(
                "sequence_batching.direct.minimum_slot_utilization",
                f"must be in [0.0, 1.0], got {utilization}",
            )
    names: set[str] = set()
    kinds: set[int] = set()
    for index, control_input in enumerate(sequence.control_input):
        path = f"sequence_batching.control_input[{index}]"
        if not control_input.name:
            check.fail(f"{path}.name", "control tensor must have a name")
        if control_input.name in names:
            check.fail(f"{path}.name", f"control tensor {control_input.name!r} given twice")
        names.add(control_input.name)
        for position, control in enumerate(control_input.control):
            field = f"{path}.control[{position}]"
            if control.kind in kinds:
                kind = _Control.Kind.Name(control.kind)
                check.fail(f"{field}.kind", f"more than one {kind} control")
            kinds.add(control.kind)
            _check_control(check, field, control)


def _check_control(check: _Checker, field: str, control) -> None:  # type: ignore[no-untyped-def]
    lists = {
        "int32_false_true": len(control.int32_false_true),
        "fp32_false_true": len(control.fp32_false_true),
        "bool_false_true": len(control.bool_false_true),
    }
    given = [name for name, size in lists.items() if size]
    if control.kind == _Control.CONTROL_SEQUENCE_CORRID:
        if given:
            check.fail(f"{field}.{given[0]}", "a CORRID control takes 'data_type', not values")
        if control.data_type not in _CORRID_TYPES:
            name = pb.DataType.Name(control.data_type)
            check.fail(
                f"{field}.data_type",
                f"CORRID data type must be TYPE_UINT64, TYPE_INT64, TYPE_UINT32, TYPE_INT32 "
                f"or TYPE_STRING, got {name}",
            )
        return
    if len(given) != 1:
        check.fail(
            field,
            "give exactly one of 'int32_false_true', 'fp32_false_true', 'bool_false_true', "
            f"got {given or 'none'}",
        )
    if lists[given[0]] != 2:
        check.fail(f"{field}.{given[0]}", f"needs exactly 2 entries, got {lists[given[0]]}")


def _check_ensemble(check: _Checker, config: ModelConfig) -> None:
    is_ensemble = config.HasField("ensemble_scheduling")
    if config.platform == ENSEMBLE_PLATFORM and not is_ensemble:
        check.fail("ensemble_scheduling", "platform 'ensemble' needs 'ensemble_scheduling'")
    if not is_ensemble:
        return
    if config.platform != ENSEMBLE_PLATFORM:
        check.fail(
            "platform",
            f"ensemble_scheduling needs platform 'ensemble', got {config.platform!r}",
        )
    if config.instance_group:
        check.fail("instance_group", "an ensemble takes no instance groups")
    if config.HasField("optimization"):
        check.fail("optimization", "an ensemble takes no optimization settings")
    if config.model_warmup:
        check.fail("model_warmup", "an ensemble takes no model_warmup")
    steps = config.ensemble_scheduling.step
    if not steps:
        check.fail("ensemble_scheduling.step", "an ensemble needs at least one step")
    written: dict[str, int] = {}
    for index, step in enumerate(steps):
        path = f"ensemble_scheduling.step[{index}]"
        if not step.model_name:
            check.fail(f"{path}.model_name", "each step must name a model")
        if not step.input_map:
            check.fail(f"{path}.input_map", f"step {step.model_name!r} maps no inputs")
        if not step.output_map:
            check.fail(f"{path}.output_map", f"step {step.model_name!r} maps no outputs")
        for tensor in step.output_map.values():
            if tensor in written:
                check.fail(
                    f"{path}.output_map",
                    f"ensemble tensor {tensor!r} is already written by step {written[tensor]}",
                )
            written[tensor] = index
    _check_ensemble_flow(check, config)


def _check_ensemble_flow(check: _Checker, config: ModelConfig) -> None:
    """Triton's data-flow rules: every ensemble input is read, every output is computable
    from the inputs, and every other tensor is both computable and read by a step (so a
    cycle of steps, which never becomes ready, is refused)."""
    steps = config.ensemble_scheduling.step
    readers: dict[str, int] = {}
    writers: dict[str, int] = {}
    for index, step in enumerate(steps):
        for tensor in step.input_map.values():
            readers.setdefault(tensor, index)
        for tensor in step.output_map.values():
            writers.setdefault(tensor, index)
    for index, tensor in enumerate(config.input):
        if tensor.name not in readers:
            check.fail(f"input[{index}]", f"ensemble input {tensor.name!r} is not read by any step")
    ready = {tensor.name for tensor in config.input}
    pending = list(steps)
    progress = True
    while pending and progress:
        progress = False
        for step in list(pending):
            if all(tensor in ready for tensor in step.input_map.values()):
                ready.update(step.output_map.values())
                pending.remove(step)
                progress = True
    outputs = {tensor.name for tensor in config.output}
    for index, tensor in enumerate(config.output):
        if tensor.name not in ready:
            check.fail(
                f"output[{index}]",
                f"ensemble output {tensor.name!r} is not written by any runnable step",
            )
    for tensor, index in sorted(readers.items(), key=lambda item: item[1]):
        if tensor in ready:
            continue
        path = f"ensemble_scheduling.step[{index}].input_map"
        if tensor not in writers:
            check.fail(
                path,
                f"ensemble tensor {tensor!r} read by step {index} ({steps[index].model_name!r}) "
                "is neither an ensemble input nor written by any step",
            )
        writer = writers[tensor]
        check.fail(
            f"ensemble_scheduling.step[{writer}]",
            f"ensemble tensor {tensor!r} is never ready: step {writer} "
            f"({steps[writer].model_name!r}) that writes it can never run (its inputs form a "
            "cycle or are never written)",
        )
    for tensor, index in sorted(writers.items(), key=lambda item: item[1]):
        if tensor not in readers and tensor not in outputs:
            check.fail(
                f"ensemble_scheduling.step[{index}].output_map",
                f"ensemble tensor {tensor!r} written by step {index} "
                f"({steps[index].model_name!r}) is neither read by a step nor an ensemble output",
            )


def _check_instance_groups(check: _Checker, config: ModelConfig) -> None:
    group_cls = pb.ModelInstanceGroup
    for index, group in enumerate(config.instance_group):
        path = f"instance_group[{index}]"
        if group.count < 0:
            check.fail(f"{path}.count", f"must be >= 1 (or 0 for the default), got {group.count}")
        if group.kind not in group_cls.Kind.values():
            check.fail(f"{path}.kind", f"unknown instance group kind {group.kind}")
        if group.kind in (group_cls.KIND_CPU, group_cls.KIND_MODEL) and group.gpus:
            kind = group_cls.Kind.Name(group.kind)
            check.fail(f"{path}.gpus", f"{kind} group cannot list GPUs, got {list(group.gpus)}")
        for gpu in group.gpus:
            if gpu < 0:
                check.fail(f"{path}.gpus", f"GPU ids are >= 0, got {gpu}")


def _check_response_cache(check: _Checker, config: ModelConfig) -> None:
    """Triton refuses the cache where one request may not have exactly one stateless answer."""
    if not config.response_cache.enable:
        return
    if config.model_transaction_policy.decoupled:
        check.fail(
            "response_cache.enable",
            f"Response Cache does not currently support model {config.name} with 'decoupled' "
            "transaction policy. Please disable the response cache.",
        )
    if config.HasField("sequence_batching"):
        check.fail(
            "response_cache.enable",
            f"Response Cache does not currently support model {config.name} with sequence "
            "batching scheduler. Please disable the response cache.",
        )
