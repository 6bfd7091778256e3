"""Export a torch module to a servable file (ONNX or TorchScript) and describe its tensors.

``input_shapes`` give each input's shape with ``None`` for a variable dimension; a leading
``None`` on every input means the model batches, and the returned specs then leave the batch
dimension out, as a configuration's ``dims`` do. Output dtypes and shapes are found by running
the module on example inputs twice, with different sizes for the variable dimensions: an output
dimension that changes between the runs is variable (``-1``). The module is put in
``eval()`` mode first, since what is served is inference.
"""

from __future__ import annotations

import warnings
from collections.abc import Mapping, Sequence
from typing import Any, NamedTuple

from headrace.backends.signature import DEFAULT_MAX_BATCH_SIZE
from headrace.errors import InvalidConfig, require
from headrace.types import DataType, TensorSpec

__all__ = ["ExportedModel", "export_onnx", "export_torchscript"]

Shape = tuple[int | None, ...]

# Sizes that stand in for variable dimensions in the two example runs (distinct on purpose).
_FIRST_SIZES = (2, 3)
_SECOND_SIZES = (3, 5)


class ExportedModel(NamedTuple):
    """What a configuration needs about an exported model."""

    inputs: list[TensorSpec]
    outputs: list[TensorSpec]
    #: A max_batch_size for the configuration: 0 when the model does not batch.
    max_batch_size_hint: int


def export_onnx(
    module: Any,
    path: str,
    *,
    input_shapes: Mapping[str, Shape],
    output_names: Sequence[str],
    input_dtypes: Mapping[str, DataType] | None = None,
    opset: int | None = None,
) -> ExportedModel:
    """Write ``module`` as ONNX (TorchScript-based exporter) with dynamic axes for ``None`` dims."""
    torch = require("torch", "torch")
    dtypes = _dtypes(input_shapes, input_dtypes)
    batched = _batched(input_shapes)
    described = _describe(torch, module, input_shapes, dtypes, output_names, batched)
    example = _examples(torch, module, input_shapes, dtypes, _FIRST_SIZES)
    dynamic_axes = {
        name: _dynamic_axes(name, shape, batched) for name, shape in input_shapes.items()
    }
    for spec in described.outputs:
        dynamic_axes[spec.name] = _dynamic_axes(spec.name, spec.shape(batched), batched)
    with warnings.catch_warnings():
        # The legacy exporter is deprecated in favour of dynamo, which needs onnxscript.
        warnings.simplefilter("ignore", DeprecationWarning)
        warnings.simplefilter("ignore", FutureWarning)
        torch.onnx.export(
            module,
            tuple(example),
            path,
            input_names=list(input_shapes),
            output_names=list(output_names),
            dynamic_axes={name: axes for name, axes in dynamic_axes.items() if axes},
            opset_version=opset,
            dynamo=False,
        )
    return described


def export_torchscript(
    module: Any,
    path: str,
    *,
    input_shapes: Mapping[str, Shape],
    output_names: Sequence[str],
    input_dtypes: Mapping[str, DataType] | None = None,
) -> ExportedModel:
    """Write ``module`` as TorchScript (``torch.jit.trace``), checked at a second input size.

    Raises :class:`InvalidConfig` when the traced module disagrees with the original at other
    sizes (tracing baked a shape in); script the module yourself and save it instead.
    """
    torch = require("torch", "torch")
    dtypes = _dtypes(input_shapes, input_dtypes)
    batched = _batched(input_shapes)
    described = _describe(torch, module, input_shapes, dtypes, output_names, batched)
    example = _examples(torch, module, input_shapes, dtypes, _FIRST_SIZES)
    with torch.no_grad(), warnings.catch_warnings():
        # torch.jit is deprecated upstream, yet TorchScript is what Triton's backend loads.
        warnings.simplefilter("ignore", DeprecationWarning)
        traced = torch.jit.trace(module, tuple(example), check_trace=False)
        other = _examples(torch, module, input_shapes, dtypes, _SECOND_SIZES)
        want = _run(module, other, output_names)
        try:
            got = _flatten(traced(*other), output_names)
        except Exception as exc:
            raise InvalidConfig(
                f"the traced module fails at other input sizes ({exc}); script it with "
                "torch.jit.script and save that instead"
            ) from exc
        for name, a, b in zip(output_names, got, want):
            if not _same(torch, a, b):
                raise InvalidConfig(
                    f"the traced module gives output '{name}' different from the original at "
                    "other input sizes; script it with torch.jit.script and save that instead"
                )
        traced.save(path)
    return described


def _same(torch: Any, got: Any, want: Any) -> bool:
    if got.shape != want.shape or got.dtype != want.dtype:
        return False
    if got.is_floating_point():
        return bool(torch.allclose(got, want, atol=1e-5, rtol=1e-4))
    return bool(torch.equal(got, want))


def _dtypes(shapes: Mapping[str, Shape], given: Mapping[str, DataType] | None) -> dict[str, Any]:
    given = dict(given or {})
    unknown = sorted(set(given) - set(shapes))
    if unknown:
        raise InvalidConfig(f"input_dtypes names {unknown}, which are not in input_shapes")
    return {name: given.get(name, DataType.FP32) for name in shapes}


def _batched(shapes: Mapping[str, Shape]) -> bool:
    if not shapes:
        raise InvalidConfig("input_shapes is empty; a model needs at least one input")
    return all(len(shape) > 0 and shape[0] is None for shape in shapes.values())


def _examples(
    torch: Any,
    module: Any,
    shapes: Mapping[str, Shape],
    dtypes: Mapping[str, DataType],
    sizes: tuple[int, int],
) -> list[Any]:
    """Random inputs on the module's device; the first ``None`` gets ``sizes[0]``, others ``sizes[1]``."""
    device = _device(torch, module)
    tensors = []
    for name, shape in shapes.items():
        concrete = [
            (sizes[0] if index == 0 else sizes[1]) if dim is None else dim
            for index, dim in enumerate(shape)
        ]
        dtype = dtypes[name].torch_dtype
        if dtype.is_floating_point:
            tensors.append(torch.randn(concrete, dtype=dtype, device=device))
        elif dtype == torch.bool:
            tensors.append(torch.randint(0, 2, concrete, device=device).bool())
        else:
            tensors.append(torch.randint(0, 8, concrete, dtype=dtype, device=device))
    return tensors


def _device(torch: Any, module: Any) -> Any:
    for tensor in [*module.parameters(), *module.buffers()]:
        return tensor.device
    return torch.device("cpu")


def _run(module: Any, example: list[Any], names: Sequence[str]) -> list[Any]:
    return _flatten(module(*example), names)


def _flatten(result: Any, names: Sequence[str]) -> list[Any]:
    if isinstance(result, Mapping):
        missing = [name for name in names if name not in result]
        if missing:
            raise InvalidConfig(f"the module returned keys {list(result)}, missing {missing}")
        values = [result[name] for name in names]
    elif isinstance(result, tuple | list):
        values = list(result)
    else:
        values = [result]
    if len(values) != len(names):
        raise InvalidConfig(
            f"the module returned {len(values)} outputs, output_names lists {len(names)} "
            f"{list(names)}"
        )
    return values


def _describe(
    torch: Any,
    module: Any,
    shapes: Mapping[str, Shape],
    dtypes: Mapping[str, DataType],
    output_names: Sequence[str],
    batched: bool,
) -> ExportedModel:
    module.eval()
    with torch.no_grad():
        first = _run(module, _examples(torch, module, shapes, dtypes, _FIRST_SIZES), output_names)
        second = _run(module, _examples(torch, module, shapes, dtypes, _SECOND_SIZES), output_names)
    inputs = [
        TensorSpec(
            name, dtypes[name], _spec_dims(tuple(-1 if d is None else d for d in shape), batched)
        )
        for name, shape in shapes.items()
    ]
    outputs = []
    for name, a, b in zip(output_names, first, second):
        if a.dim() != b.dim():
            raise InvalidConfig(f"output '{name}' changes rank with the input sizes")
        dims = tuple(x if x == y else -1 for x, y in zip(a.shape, b.shape))
        if batched and (not dims or dims[0] != -1 or a.shape[0] != _FIRST_SIZES[0]):
            raise InvalidConfig(
                f"output '{name}' has shape {list(a.shape)} for a batch of {_FIRST_SIZES[0]}; "
                "a batching model's outputs must lead with the batch dimension"
            )
        outputs.append(TensorSpec(name, DataType.from_torch(a.dtype), _spec_dims(dims, batched)))
    return ExportedModel(inputs, outputs, DEFAULT_MAX_BATCH_SIZE if batched else 0)


def _spec_dims(dims: tuple[int, ...], batched: bool) -> tuple[int, ...]:
    return dims[1:] if batched else dims


def _dynamic_axes(name: str, shape: Sequence[int | None], batched: bool) -> dict[int, str]:
    """ONNX dynamic axes: one shared ``batch`` axis, a named axis per other variable dim."""
    return {
        index: "batch" if batched and index == 0 else f"{name}_dim{index}"
        for index, dim in enumerate(shape)
        if dim is None or dim == -1
    }
