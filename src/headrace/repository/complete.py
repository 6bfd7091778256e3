"""Turn a configuration as written (possibly partial, possibly absent) into a served one.

The order is Triton's: fill the name from the directory, normalise platform/backend, let the
backend auto-complete inputs/outputs/``max_batch_size`` from the model file, apply the
defaults that do not depend on the file, then validate. Each step raises
:class:`~headrace.errors.InvalidConfig` naming the file and the field.

When ``config.pbtxt`` is absent (Triton's ``--strict-model-config=false``), the backend is
inferred from the model file name, as Triton's auto-generated configuration does.
"""

from __future__ import annotations

import os
from collections.abc import Collection, Sequence

from tritonclient.grpc import model_config_pb2

from headrace.config.platforms import (
    BACKENDS,
    ENSEMBLE_PLATFORM,
    backend_of_platform,
    backend_row,
)
from headrace.errors import InvalidConfig

__all__ = [
    "ENSEMBLE_PLATFORM",
    "backend_for_files",
    "complete_config",
    "expected_model_files",
]


def backend_for_files(files: Collection[str], source: str = "") -> str:
    """The backend a version directory's file names imply (``model.onnx`` -> onnxruntime).

    ``model.py`` next to ``model.pt`` is a plain PyTorch model (the pytorch backend's layout);
    ``model.py`` alone is a Triton python-backend model. The table's order decides.
    """
    implying = [row for row in BACKENDS if row.implied_by]
    for row in implying:
        if row.implied_by in files:
            return row.name
    known = ", ".join(row.implied_by for row in implying)
    raise InvalidConfig(
        f"cannot infer a backend without config.pbtxt: found {sorted(files)}, expected one of {known}",
        source=source,
        field="backend",
    )


def expected_model_files(config: model_config_pb2.ModelConfig) -> tuple[str, ...]:
    """File names of which one must be in a version directory; () when none is needed.

    Only backends headrace executes are checked (others are refused by name when loaded).
    """
    row = backend_row(config.backend or backend_of_platform(config.platform))
    if config.platform == ENSEMBLE_PLATFORM or row is None or row.implementation is None:
        return ()
    model_file = config.default_model_filename or row.model_file
    variant = row.variant
    if variant is None:
        return (model_file,)
    if variant.parameter in config.parameters:
        named = config.parameters[variant.parameter].string_value
        if ":" in named:
            return ()  # an installed class: nothing to find on disk
    return (model_file, variant.source_file)


def check_model_files(
    config: model_config_pb2.ModelConfig, version_dir_files: Collection[str], source: str
) -> None:
    """Raise InvalidConfig when a version directory lacks the model file its backend needs."""
    expected = expected_model_files(config)
    if expected and not any(name in version_dir_files for name in expected):
        wanted = " or ".join(repr(name) for name in expected)
        raise InvalidConfig(
            f"no model file: expected {wanted}, found {sorted(version_dir_files) or 'nothing'}",
            source=source,
            field="default_model_filename" if config.default_model_filename else "",
        )


def complete_config(
    config: model_config_pb2.ModelConfig,
    *,
    model_name: str,
    version_dir: str,
    source: str,
    gpus: Sequence[int] = (),
) -> model_config_pb2.ModelConfig:
    """A completed, validated copy of ``config`` for the local ``version_dir``.

    ``gpus`` are the device ids instance groups may use (none: CPU only, deterministic).
    """
    from headrace import config as cfg
    from headrace.backends import backend_class_for

    completed = model_config_pb2.ModelConfig()
    completed.CopyFrom(config)
    if not completed.name:
        completed.name = model_name
    elif completed.name != model_name:
        raise InvalidConfig(
            f"name {completed.name!r} does not match the model directory {model_name!r}",
            source=source,
            field="name",
        )
    files = os.listdir(version_dir) if os.path.isdir(version_dir) else []
    if not completed.platform and not completed.backend and not completed.ensemble_scheduling.step:
        # As Triton: a config (a load request's override too) that names neither takes the
        # backend its model file implies; with no such file the check below refuses it.
        implied = [row.name for row in BACKENDS if row.implied_by and row.implied_by in files]
        if implied:
            completed.backend = implied[0]
    cfg.platform_backend(completed, source)
    check_model_files(completed, files, version_dir)
    if completed.platform != ENSEMBLE_PLATFORM:
        backend_class_for(completed, version_dir).autocomplete(completed, version_dir)
    cfg.fill_defaults(completed, gpus=gpus, source=source)
    cfg.validate_config(completed, source)
    return completed
