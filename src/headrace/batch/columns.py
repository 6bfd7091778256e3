"""From dataset columns to model inputs: the user's preprocessing hook, renaming, casting.

A batch's columns pass, in order, through the optional hook (``--preprocess module:function``
or ``path/to/file.py:function``; it takes and returns a ``dict[str, np.ndarray]`` with the
same number of rows), then ``--map INPUT=COLUMN`` renames, then each model input is taken by
name (a model with one input takes a batch's only column whatever its name, so a plain
``.npy`` file feeds a one-input model), cast to the input's data type and, when only the row
layout differs (a flat list of 64 values for a ``[8, 8]`` input), reshaped. Anything else is refused with both shapes named.
"""

from __future__ import annotations

import importlib
import importlib.util
import os
import sys
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import numpy as np

from headrace.batch.dataset import Batch
from headrace.errors import InvalidInput
from headrace.types import DataType, TensorSpec

__all__ = ["InputMapper", "Preprocess", "load_hook"]

Preprocess = Callable[[dict[str, np.ndarray]], Mapping[str, Any]]


def load_hook(spec: str) -> Preprocess:
    """The function ``spec`` names: ``package.module:function`` or ``file.py:function``."""
    module_name, sep, function = spec.rpartition(":")
    if not sep or not module_name or not function:
        raise InvalidInput(
            f"preprocess hook must be MODULE:FUNCTION or FILE.py:FUNCTION, got {spec!r}"
        )
    try:
        module = (
            _load_file(module_name)
            if module_name.endswith(".py")
            else importlib.import_module(module_name)
        )
    except ImportError as exc:
        raise InvalidInput(f"cannot import preprocess module {module_name!r}: {exc}") from exc
    hook = getattr(module, function, None)
    if not callable(hook):
        raise InvalidInput(
            f"preprocess hook {spec!r}: {module_name!r} has no function {function!r}"
        )
    return hook  # type: ignore[no-any-return]


def _load_file(path: str) -> Any:
    if not os.path.isfile(path):
        raise ImportError(f"no file {path!r}")
    name = "headrace_hook_" + os.path.splitext(os.path.basename(path))[0]
    if name in sys.modules:
        return sys.modules[name]
    spec = importlib.util.spec_from_file_location(name, path)
    if spec is None or spec.loader is None:
        raise ImportError(f"cannot load {path!r}")
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    spec.loader.exec_module(module)
    return module


class InputMapper:
    """Turns a :class:`Batch` into the model's input arrays (callable, thread-safe)."""

    def __init__(
        self,
        inputs: Sequence[TensorSpec],
        *,
        rename: Mapping[str, str] | None = None,
        preprocess: Preprocess | None = None,
    ) -> None:
        self.inputs = list(inputs)
        self.rename = dict(rename or {})
        self.preprocess = preprocess
        unknown = sorted(set(self.rename) - {spec.name for spec in self.inputs})
        if unknown:
            names = [spec.name for spec in self.inputs]
            raise InvalidInput(f"--map names unknown model inputs {unknown} (inputs: {names})")

    def __call__(self, batch: Batch) -> dict[str, np.ndarray]:
        columns: Mapping[str, Any] = batch.columns
        if self.preprocess is not None:
            columns = self.preprocess(dict(columns))
            if not isinstance(columns, Mapping):
                raise InvalidInput(f"preprocess hook returned {type(columns).__name__}, not a dict")
        return {spec.name: self._convert(spec, columns, len(batch)) for spec in self.inputs}

    def _convert(self, spec: TensorSpec, columns: Mapping[str, Any], rows: int) -> np.ndarray:
        column = self.rename.get(spec.name, spec.name)
        if column not in columns and self._takes_only_column(spec, columns):
            column = next(iter(columns))
        if column not in columns:
            raise InvalidInput(
                f"model input '{spec.name}' needs column {column!r}; the batch has "
                f"{sorted(columns)} (rename with --map {spec.name}=COLUMN or use --preprocess)"
            )
        array = np.asarray(columns[column])
        if array.ndim == 0 or array.shape[0] != rows:
            raise InvalidInput(
                f"column {column!r} has shape {list(array.shape)}, expected {rows} rows first"
            )
        array = _cast(array, spec.datatype, column)
        if _matches(array.shape[1:], spec.dims):
            return np.ascontiguousarray(array)
        known = all(d >= 0 for d in spec.dims)
        if known and int(np.prod(array.shape[1:], dtype=np.int64)) == int(
            np.prod(spec.dims, dtype=np.int64)
        ):
            return np.ascontiguousarray(array).reshape((rows, *spec.dims))
        raise InvalidInput(
            f"column {column!r} rows have shape {list(array.shape[1:])}, "
            f"model input '{spec.name}' expects {list(spec.dims)}"
        )

    def _takes_only_column(self, spec: TensorSpec, columns: Mapping[str, Any]) -> bool:
        """One model input, one column, no ``--map`` for it: they belong together."""
        return len(self.inputs) == 1 and len(columns) == 1 and spec.name not in self.rename


def _cast(array: np.ndarray, datatype: DataType, column: str) -> np.ndarray:
    target = datatype.numpy_dtype
    if array.dtype == target:
        return array
    if datatype is DataType.BYTES:
        return array.astype(np.object_)
    if array.dtype.kind in "OSU":
        raise InvalidInput(
            f"column {column!r} holds {array.dtype} values, model expects {datatype.value}"
        )
    return array.astype(target)


def _matches(shape: Sequence[int], dims: Sequence[int]) -> bool:
    return len(shape) == len(dims) and all(d == -1 or d == s for s, d in zip(shape, dims))
