"""From ``entry.export_version(module, ...)`` to a model file plus an updated configuration.

Kept apart from :mod:`headrace.repository.export` (which only knows torch and files): this
module knows configurations. It fills missing export arguments from the configuration (so a
second version needs only the module) and writes the export's tensors, platform and batch size
back into a copy of the configuration.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from typing import Any, Literal

from tritonclient.grpc import model_config_pb2

from headrace.config.platforms import default_model_filename, platform_of_backend
from headrace.errors import InvalidConfig
from headrace.types import DataType

__all__ = ["EXPORT_FORMATS", "ExportFormat", "run_export"]

ExportFormat = Literal["onnx", "torchscript"]


def _target(backend: str) -> tuple[str, str, str]:
    """(file name, platform, backend) of ``backend``, from the table of backends."""
    platform = platform_of_backend(backend)
    return default_model_filename(platform, backend), platform, backend


#: format -> (file name, platform, backend), as Triton names them.
EXPORT_FORMATS: dict[str, tuple[str, str, str]] = {
    "onnx": _target("onnxruntime"),
    "torchscript": _target("pytorch"),
}


def run_export(
    module: Any,
    config: model_config_pb2.ModelConfig,
    out_dir: str,
    *,
    format: str,
    input_shapes: Mapping[str, tuple[int | None, ...]] | None,
    output_names: list[str] | None,
    input_dtypes: Mapping[str, Any] | None,
    source: str,
    has_other_versions: bool,
) -> model_config_pb2.ModelConfig:
    """Export ``module`` into ``out_dir`` and return the configuration updated from it."""
    from headrace.repository import export

    try:
        filename, platform, backend = EXPORT_FORMATS[format]
    except KeyError:
        raise InvalidConfig(
            f"unknown export format {format!r}; expected one of {sorted(EXPORT_FORMATS)}"
        ) from None
    _check_platform(config, platform, backend, source, has_other_versions)
    shapes = dict(input_shapes) if input_shapes is not None else _shapes_from(config, source)
    names = list(output_names) if output_names is not None else _outputs_from(config, source)
    dtypes = _dtypes(input_dtypes, config if input_shapes is None else None)
    os.makedirs(out_dir, exist_ok=True)
    target = os.path.join(out_dir, config.default_model_filename or filename)
    exporter = export.export_onnx if format == "onnx" else export.export_torchscript
    exported = exporter(
        module, target, input_shapes=shapes, output_names=names, input_dtypes=dtypes
    )
    return _updated(config, exported, platform, backend, source)


def _check_platform(
    config: model_config_pb2.ModelConfig,
    platform: str,
    backend: str,
    source: str,
    has_other_versions: bool,
) -> None:
    current = config.platform or config.backend
    if current in ("", platform, backend) or not has_other_versions:
        return
    raise InvalidConfig(
        f"model is configured for {current!r} but this export writes {platform!r}; "
        "all versions of a model share one backend",
        source=source,
        field="platform" if config.platform else "backend",
    )


def _shapes_from(
    config: model_config_pb2.ModelConfig, source: str
) -> dict[str, tuple[int | None, ...]]:
    if not config.input:
        raise InvalidConfig(
            "input_shapes is required for the first export (the configuration has no inputs)",
            source=source,
            field="input",
        )
    lead: tuple[int | None, ...] = (None,) if config.max_batch_size > 0 else ()
    return {
        tensor.name: lead + tuple(None if d == -1 else int(d) for d in tensor.dims)
        for tensor in config.input
    }


def _outputs_from(config: model_config_pb2.ModelConfig, source: str) -> list[str]:
    if not config.output:
        raise InvalidConfig(
            "output_names is required for the first export (the configuration has no outputs)",
            source=source,
            field="output",
        )
    return [tensor.name for tensor in config.output]


def _dtypes(
    given: Mapping[str, Any] | None, config: model_config_pb2.ModelConfig | None
) -> dict[str, DataType] | None:
    if given is not None:
        return {name: _as_datatype(value) for name, value in given.items()}
    if config is None:
        return None
    names = model_config_pb2.DataType.Name
    return {tensor.name: DataType.from_name(names(tensor.data_type)) for tensor in config.input}


def _as_datatype(value: Any) -> DataType:
    if isinstance(value, DataType):
        return value
    if isinstance(value, str):
        return DataType.from_name(value)
    if hasattr(value, "is_floating_point"):  # a torch.dtype
        return DataType.from_torch(value)
    return DataType.from_numpy(value)


def _updated(
    config: model_config_pb2.ModelConfig,
    exported: Any,
    platform: str,
    backend: str,
    source: str,
) -> model_config_pb2.ModelConfig:
    from headrace.config import add_tensor

    result = model_config_pb2.ModelConfig()
    result.CopyFrom(config)
    result.platform = platform
    result.backend = backend
    hint = int(exported.max_batch_size_hint)
    if result.max_batch_size == 0:
        result.max_batch_size = hint
    elif hint == 0:
        raise InvalidConfig(
            f"max_batch_size is {result.max_batch_size} but the export has no batch dimension; "
            "give every input shape a leading None",
            source=source,
            field="max_batch_size",
        )
    del result.input[:]
    del result.output[:]
    for spec in exported.inputs:
        add_tensor(result, "input", spec.name, spec.datatype, spec.dims)
    for spec in exported.outputs:
        add_tensor(result, "output", spec.name, spec.datatype, spec.dims)
    return result
