"""headrace.config.fill_defaults and platform_backend: Triton's own defaults."""

from __future__ import annotations

import pytest

from headrace import config as hc
from headrace.errors import InvalidConfig

Group = hc.model_config_pb2.ModelInstanceGroup


def model(backend: str = "", platform: str = "", max_batch_size: int = 4) -> hc.ModelConfig:
    config = hc.new_config("m", backend=backend, platform=platform, max_batch_size=max_batch_size)
    hc.add_tensor(config, "input", "x", "FP32", [2])
    hc.add_tensor(config, "output", "y", "FP32", [2])
    return config


@pytest.mark.parametrize(
    ("platform", "backend", "want_platform", "want_backend"),
    [
        ("onnxruntime_onnx", "", "onnxruntime_onnx", "onnxruntime"),
        ("", "onnxruntime", "onnxruntime_onnx", "onnxruntime"),
        ("pytorch_libtorch", "", "pytorch_libtorch", "pytorch"),
        ("", "pytorch", "pytorch_libtorch", "pytorch"),
        ("", "python", "", "python"),
        ("pytorch_libtorch", "pytorch", "pytorch_libtorch", "pytorch"),
    ],
)
def test_platform_backend_fills_the_missing_side(
    platform: str, backend: str, want_platform: str, want_backend: str
) -> None:
    config = model(backend=backend, platform=platform)
    assert hc.platform_backend(config) == want_backend
    assert (config.platform, config.backend) == (want_platform, want_backend)


def test_platform_backend_of_an_ensemble() -> None:
    assert hc.platform_backend(hc.new_config("e", platform="ensemble")) == "ensemble"
    with pytest.raises(InvalidConfig, match="'python'"):
        hc.platform_backend(hc.new_config("e", platform="ensemble", backend="python"))


def test_platform_backend_refuses_mismatch_and_nothing() -> None:
    with pytest.raises(InvalidConfig, match=r"'onnxruntime_onnx'.*'pytorch'"):
        hc.platform_backend(model(backend="pytorch", platform="onnxruntime_onnx"))
    with pytest.raises(InvalidConfig, match="'platform' or 'backend'"):
        hc.platform_backend(model())


@pytest.mark.parametrize(
    ("backend", "filename"),
    [("onnxruntime", "model.onnx"), ("pytorch", "model.pt"), ("python", "model.py")],
)
def test_default_model_filename(backend: str, filename: str) -> None:
    config = model(backend=backend)
    hc.fill_defaults(config)
    assert config.default_model_filename == filename


def test_explicit_model_filename_is_kept() -> None:
    config = model(backend="python")
    config.default_model_filename = "main.py"
    hc.fill_defaults(config)
    assert config.default_model_filename == "main.py"


def test_defaults_without_gpu() -> None:
    config = model(backend="python")
    config.dynamic_batching.SetInParent()
    hc.fill_defaults(config)
    assert config.version_policy.latest.num_versions == 1
    assert list(config.dynamic_batching.preferred_batch_size) == [4]
    assert config.optimization.input_pinned_memory.enable
    assert config.optimization.output_pinned_memory.enable
    [group] = config.instance_group
    assert (group.name, group.kind, group.count, list(group.gpus)) == ("m", Group.KIND_CPU, 1, [])


def test_onnxruntime_gets_two_cpu_instances_as_in_triton() -> None:
    config = model(backend="onnxruntime")
    hc.fill_defaults(config)
    assert config.instance_group[0].count == 2


def test_defaults_with_gpus_use_every_gpu() -> None:
    config = model(backend="onnxruntime")
    hc.fill_defaults(config, gpus=(0, 1))
    [group] = config.instance_group
    assert (group.kind, group.count, list(group.gpus)) == (Group.KIND_GPU, 1, [0, 1])


def test_explicit_groups_get_names_kinds_and_counts() -> None:
    config = model(backend="python")
    first = config.instance_group.add()
    second = config.instance_group.add(name="pinned", kind=Group.KIND_AUTO, count=3)
    second.gpus.append(5)  # not present: KIND_AUTO falls back to CPU
    config.instance_group.add(kind=Group.KIND_GPU)
    hc.fill_defaults(config, gpus=(0,))
    assert (first.name, first.kind, first.count) == ("m_0", Group.KIND_GPU, 1)
    assert list(first.gpus) == [0]
    assert (second.name, second.kind, second.count) == ("pinned", Group.KIND_CPU, 3)
    third = config.instance_group[2]
    assert (third.name, list(third.gpus)) == ("m_2", [0])


def test_explicit_version_policy_and_preferred_sizes_are_kept() -> None:
    config = model(backend="python", max_batch_size=8)
    config.version_policy.all.SetInParent()
    config.dynamic_batching.preferred_batch_size.append(2)
    hc.fill_defaults(config)
    assert config.version_policy.WhichOneof("policy_choice") == "all"
    assert list(config.dynamic_batching.preferred_batch_size) == [2]


def test_sequence_batching_defaults() -> None:
    config = model(backend="python")
    config.sequence_batching.oldest.max_candidate_sequences = 2
    hc.fill_defaults(config)
    assert config.sequence_batching.max_sequence_idle_microseconds == 1_000_000
    assert list(config.sequence_batching.oldest.preferred_batch_size) == [4]


def test_ensembles_get_no_instance_groups_or_pinned_memory() -> None:
    config = hc.new_config("e", platform="ensemble", max_batch_size=2)
    config.ensemble_scheduling.step.add(model_name="m")
    hc.fill_defaults(config)
    assert not config.instance_group
    assert not config.HasField("optimization")
    assert config.version_policy.latest.num_versions == 1


def test_available_gpus_is_a_tuple_of_ids() -> None:
    gpus = hc.available_gpus()
    assert isinstance(gpus, tuple)
    assert all(isinstance(gpu, int) and gpu >= 0 for gpu in gpus)
