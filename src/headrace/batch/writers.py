"""Writers: one shard of results at a time, every file written atomically (temp, then rename).

A shard's results are the row ids of its rows and one array per model output, rows first.
Layouts under the output folder (``NAME`` is a model output, ``K`` the shard number):

| format    | files                                                                      |
| --------- | -------------------------------------------------------------------------- |
| parquet   | ``shard-K.parquet``: a ``row_id`` column and a column per output; outputs   |
|           | with more than a scalar per row are fixed-size lists, their row shape kept  |
|           | in the field metadata (``headrace.shape``)                                  |
| npy       | ``NAME/shard-K.npy`` per output and ``row_id/shard-K.npy``                  |
| images    | ``NAME/ROWID.png`` per row for image-shaped outputs (``H x W``, ``H x W x C``|
|           | or ``C x H x W``, C in 1, 3, 4); floats are mapped from ``value_range``     |

A shard counts as written only once the manifest lists it; files of a shard the manifest does
not list are simply rewritten when the job resumes.
"""

from __future__ import annotations

import functools
import json
import os
from abc import ABC, abstractmethod
from dataclasses import dataclass
from typing import ClassVar

import numpy as np

from headrace.errors import InvalidInput, require
from headrace.files import atomic_write

__all__ = [
    "FORMATS",
    "ImageWriter",
    "NpyWriter",
    "ParquetWriter",
    "ShardResult",
    "ShardWriter",
    "make_writer",
    "shard_name",
]

ROW_ID = "row_id"
SHAPE_KEY = b"headrace.shape"


@dataclass(frozen=True)
class ShardResult:
    """Everything one shard produced: row ids and the outputs for those rows, in order."""

    index: int
    row_ids: np.ndarray
    outputs: dict[str, np.ndarray]


def shard_name(index: int) -> str:
    return f"shard-{index:05d}"


class ShardWriter(ABC):
    """Writes shards under ``out_dir``; ``write`` returns the paths it wrote, relative."""

    format: ClassVar[str] = ""

    def __init__(self, out_dir: str) -> None:
        self.out_dir = out_dir

    @abstractmethod
    def write(self, shard: ShardResult) -> list[str]:
        """Write one shard atomically, file by file."""

    def _path(self, *parts: str) -> str:
        return os.path.join(self.out_dir, *parts)


class ParquetWriter(ShardWriter):
    format = "parquet"

    def write(self, shard: ShardResult) -> list[str]:
        pa = require("pyarrow", "data")
        pq = require("pyarrow.parquet", "data")
        fields = [pa.field(ROW_ID, pa.int64())]
        arrays = [pa.array(np.asarray(shard.row_ids, dtype=np.int64))]
        for name, values in shard.outputs.items():
            array, field = _arrow_column(pa, name, np.asarray(values))
            arrays.append(array)
            fields.append(field)
        table = pa.Table.from_arrays(arrays, schema=pa.schema(fields))
        relative = f"{shard_name(shard.index)}.parquet"
        atomic_write(self._path(relative), lambda tmp: pq.write_table(table, tmp))
        return [relative]


def _arrow_column(pa, name: str, values: np.ndarray):  # type: ignore[no-untyped-def]
    if values.ndim <= 1:
        return pa.array(values), pa.field(name, pa.from_numpy_dtype(values.dtype))
    row_shape = values.shape[1:]
    width = int(np.prod(row_shape))
    flat = pa.array(np.ascontiguousarray(values).reshape(-1))
    array = pa.FixedSizeListArray.from_arrays(flat, width)
    metadata = {SHAPE_KEY: json.dumps(list(row_shape)).encode()}
    return array, pa.field(name, array.type, metadata=metadata)


class NpyWriter(ShardWriter):
    format = "npy"

    def write(self, shard: ShardResult) -> list[str]:
        written = []
        for name, values in {ROW_ID: shard.row_ids, **shard.outputs}.items():
            relative = os.path.join(name, f"{shard_name(shard.index)}.npy")
            array = np.asarray(values)
            atomic_write(self._path(relative), functools.partial(_save_npy, array=array))
            written.append(relative)
        return written


def _save_npy(path: str, *, array: np.ndarray) -> None:
    with open(path, "wb") as handle:
        np.save(handle, array, allow_pickle=False)


class ImageWriter(ShardWriter):
    """PNG per row and image-shaped output; ``value_range`` maps floats onto 0..255."""

    format = "images"

    def __init__(self, out_dir: str, value_range: tuple[float, float] = (0.0, 1.0)) -> None:
        super().__init__(out_dir)
        self.value_range = value_range

    def write(self, shard: ShardResult) -> list[str]:
        image_module = require("PIL.Image", "data")
        written = []
        for name, values in shard.outputs.items():
            pixels = to_uint8_images(np.asarray(values), name, self.value_range)
            for row_id, pixel in zip(shard.row_ids, pixels):
                relative = os.path.join(name, f"{int(row_id):08d}.png")
                picture = image_module.fromarray(pixel)
                atomic_write(self._path(relative), functools.partial(picture.save, format="PNG"))
                written.append(relative)
        return written


def to_uint8_images(values: np.ndarray, name: str, value_range: tuple[float, float]) -> np.ndarray:
    """``values`` (rows first) as uint8 ``H x W`` or ``H x W x C`` images; refuses other shapes."""
    if values.ndim == 4 and values.shape[1] in (1, 3, 4) and values.shape[-1] not in (1, 3, 4):
        values = values.transpose(0, 2, 3, 1)  # C x H x W -> H x W x C
    if values.ndim == 4 and values.shape[-1] == 1:
        values = values[..., 0]
    if not (values.ndim == 3 or (values.ndim == 4 and values.shape[-1] in (3, 4))):
        raise InvalidInput(
            f"output '{name}' rows have shape {list(values.shape[1:])}, which is not an image "
            "(H x W, H x W x C or C x H x W with C in 1, 3, 4); use --format parquet or npy"
        )
    if values.dtype == np.uint8:
        return values
    low, high = value_range
    scaled = (values.astype(np.float64) - low) / (high - low)
    return (np.clip(scaled, 0.0, 1.0) * 255.0 + 0.5).astype(np.uint8)


FORMATS = ("parquet", "npy", "images")


def make_writer(
    format: str, out_dir: str, value_range: tuple[float, float] = (0.0, 1.0)
) -> ShardWriter:
    """The writer for ``format`` (one of :data:`FORMATS`)."""
    if format == "parquet":
        return ParquetWriter(out_dir)
    if format == "npy":
        return NpyWriter(out_dir)
    if format == "images":
        return ImageWriter(out_dir, value_range)
    raise InvalidInput(f"unknown output format {format!r}; expected one of {', '.join(FORMATS)}")
