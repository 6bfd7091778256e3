"""Readers for arrays on disk and for seeds: ``.npy``, ``.npz``, HDF5, ``seeds:START:STOP``.

``open_reader`` picks the reader for a :class:`~headrace.batch.dataset.DataSpec` by suffix:

| source                              | reader                                       |
| ----------------------------------- | -------------------------------------------- |
| ``x.npy``                           | one column named after the file stem, mmap   |
| ``x.npz``                           | a column per member (stored members mmap)    |
| ``x.h5`` / ``x.hdf5`` [``:/group``] | a column per dataset of the group (h5py)     |
| ``x.parquet`` or a folder of them   | :mod:`headrace.batch.parquet`                |
| a folder of images                  | :mod:`headrace.batch.images`                 |
| ``seeds:STOP`` / ``seeds:START:STOP`` | one INT64 column ``seed``                  |
"""

from __future__ import annotations

import os
import struct
import threading
import zipfile
from typing import Any

import numpy as np

from headrace.batch.dataset import Batch, DataSpec, Reader, file_stamp
from headrace.errors import InvalidInput, require

__all__ = ["ArraysReader", "HDF5Reader", "NpzReader", "SeedReader", "open_reader"]

_HDF5_SUFFIXES = (".h5", ".hdf5", ".hdf")


def open_reader(spec: DataSpec) -> Reader:
    """The reader for ``spec.source``; raises InvalidInput naming a source it cannot read."""
    source = spec.source
    if source.startswith("seeds:"):
        return SeedReader.parse(source)
    hdf5 = _split_hdf5(source)
    if hdf5 is not None:
        return HDF5Reader(hdf5[0], hdf5[1], spec.columns)
    if source.endswith(".npy"):
        name = os.path.splitext(os.path.basename(source))[0]
        return ArraysReader({name: _mmap_npy(source)}, [file_stamp(source)])
    if source.endswith(".npz"):
        return NpzReader(source, spec.columns)
    from headrace.batch.images import ImageFolderReader, is_image_folder
    from headrace.batch.parquet import ParquetReader, is_parquet

    if is_parquet(source):
        return ParquetReader(source, spec.columns)
    if is_image_folder(source):
        return ImageFolderReader(source, spec.image_size, spec.decode_threads)
    raise InvalidInput(
        f"cannot read {source!r}: expected .npy, .npz, .parquet (or a folder of them), "
        ".h5/.hdf5, a folder of images, or seeds:START:STOP"
    )


def _split_hdf5(source: str) -> tuple[str, str] | None:
    """``file.h5`` or ``file.h5:/group`` as (file, group); None for other sources."""
    for suffix in _HDF5_SUFFIXES:
        if source.endswith(suffix):
            return source, "/"
        marker = source.find(suffix + ":")
        if marker > 0:
            cut = marker + len(suffix)
            return source[:cut], source[cut + 1 :] or "/"
    return None


class ArraysReader(Reader):
    """Columns that already are (memory-mapped) arrays of equal length."""

    def __init__(self, columns: dict[str, Any], stamps: list[str]) -> None:
        if not columns:
            raise InvalidInput("the input has no columns")
        lengths = {name: len(array) for name, array in columns.items()}
        if len(set(lengths.values())) != 1:
            raise InvalidInput(f"input columns have different lengths: {lengths}")
        self.columns = columns
        self._rows = next(iter(lengths.values()))
        self._stamps = stamps

    @property
    def num_rows(self) -> int:
        return self._rows

    def read(self, start: int, stop: int) -> Batch:
        self._check_range(start, stop)
        return Batch(
            np.arange(start, stop, dtype=np.int64),
            {name: np.ascontiguousarray(array[start:stop]) for name, array in self.columns.items()},
        )

    def fingerprint(self) -> str:
        return "|".join([*self._stamps, *sorted(self.columns)])


def _mmap_npy(path: str) -> np.ndarray:
    try:
        array = np.load(path, mmap_mode="r", allow_pickle=False)
    except (OSError, ValueError) as exc:
        raise InvalidInput(f"cannot read {path!r} as .npy: {exc}") from exc
    if array.ndim == 0:
        raise InvalidInput(f"{path!r} holds a scalar; a dataset needs a row dimension")
    return array


class NpzReader(ArraysReader):
    """A ``.npz`` archive: stored members are memory-mapped, compressed ones read by slice."""

    def __init__(self, path: str, columns: tuple[str, ...]) -> None:
        try:
            archive = zipfile.ZipFile(path)
        except (OSError, zipfile.BadZipFile) as exc:
            raise InvalidInput(f"cannot read {path!r} as .npz: {exc}") from exc
        members = {n[:-4]: n for n in archive.namelist() if n.endswith(".npy")}
        wanted = columns or tuple(members)
        missing = [c for c in wanted if c not in members]
        if missing:
            raise InvalidInput(f"{path!r} has no arrays {missing} (arrays: {sorted(members)})")
        arrays = {c: _npz_member(path, archive, members[c]) for c in wanted}
        super().__init__(arrays, [file_stamp(path)])


def _npz_member(path: str, archive: zipfile.ZipFile, member: str) -> Any:
    info = archive.getinfo(member)
    with archive.open(member) as stream:
        shape, dtype, header = _npy_header(stream, f"{path}:{member}")
    if info.compress_type == zipfile.ZIP_STORED:
        with open(path, "rb") as raw:
            raw.seek(info.header_offset + 26)
            name_len, extra_len = struct.unpack("<HH", raw.read(4))
        offset = info.header_offset + 30 + name_len + extra_len + header
        return np.memmap(path, dtype=dtype, mode="r", offset=offset, shape=shape)
    return _CompressedArray(archive, member, shape, dtype, header)


def _npy_header(stream: Any, where: str) -> tuple[tuple[int, ...], np.dtype, int]:
    fmt = np.lib.format
    version = fmt.read_magic(stream)
    read_header = fmt.read_array_header_1_0 if version == (1, 0) else fmt.read_array_header_2_0
    shape, fortran, dtype = read_header(stream)
    if fortran or dtype.hasobject or not shape:
        raise InvalidInput(f"{where}: only C-ordered, non-object arrays with rows can be streamed")
    return tuple(shape), dtype, stream.tell()


class _CompressedArray:
    """Row slices of a deflated ``.npy`` member, decompressed on demand (forward seeks)."""

    def __init__(
        self,
        archive: zipfile.ZipFile,
        member: str,
        shape: tuple[int, ...],
        dtype: np.dtype,
        header: int,
    ) -> None:
        self.archive, self.member, self.shape, self.dtype = archive, member, shape, dtype
        self.header = header
        self.row_bytes = int(np.prod(shape[1:], dtype=np.int64)) * dtype.itemsize
        self._stream: Any = None
        self._lock = threading.Lock()

    def __len__(self) -> int:
        return self.shape[0]

    def __getitem__(self, rows: slice) -> np.ndarray:
        start, stop, _ = rows.indices(self.shape[0])
        count = max(stop - start, 0)
        with self._lock:
            position = self.header + start * self.row_bytes
            if self._stream is None or self._stream.tell() > position:
                self._stream = self.archive.open(self.member)
            self._stream.seek(position)
            data = self._stream.read(count * self.row_bytes)
        return np.frombuffer(data, dtype=self.dtype).reshape((count, *self.shape[1:]))


class HDF5Reader(Reader):
    """Datasets of one HDF5 group (h5py), sliced by row range under h5py's own lock."""

    def __init__(self, path: str, group: str, columns: tuple[str, ...]) -> None:
        h5py = require("h5py", "data")
        try:
            self._file = h5py.File(path, "r")
        except OSError as exc:
            raise InvalidInput(f"cannot read {path!r} as HDF5: {exc}") from exc
        node = self._file.get(group)
        if node is None or not isinstance(node, h5py.Group):
            raise InvalidInput(f"{path!r} has no group {group!r}")
        found = {name: obj for name, obj in node.items() if isinstance(obj, h5py.Dataset)}
        wanted = columns or tuple(sorted(found))
        missing = [c for c in wanted if c not in found]
        if missing:
            raise InvalidInput(f"{path}:{group} has no datasets {missing} (has {sorted(found)})")
        self._arrays = ArraysReader({c: found[c] for c in wanted}, [file_stamp(path), group])

    @property
    def num_rows(self) -> int:
        return self._arrays.num_rows

    def read(self, start: int, stop: int) -> Batch:
        return self._arrays.read(start, stop)

    def fingerprint(self) -> str:
        return self._arrays.fingerprint()

    def close(self) -> None:
        self._file.close()


class SeedReader(Reader):
    """Integer seeds ``START..STOP-1`` (one row each), for generative models."""

    def __init__(self, start: int, stop: int) -> None:
        if stop < start:
            raise InvalidInput(f"seeds:{start}:{stop} is an empty range")
        self.start, self.stop = start, stop

    @classmethod
    def parse(cls, source: str) -> SeedReader:
        """``seeds:STOP`` or ``seeds:START:STOP``."""
        parts = source.split(":")[1:]
        try:
            numbers = [int(p) for p in parts]
        except ValueError:
            numbers = []
        if len(numbers) not in (1, 2):
            raise InvalidInput(f"expected seeds:STOP or seeds:START:STOP, got {source!r}")
        return cls(0, numbers[0]) if len(numbers) == 1 else cls(numbers[0], numbers[1])

    @property
    def num_rows(self) -> int:
        return self.stop - self.start

    def read(self, start: int, stop: int) -> Batch:
        self._check_range(start, stop)
        ids = np.arange(start, stop, dtype=np.int64)
        return Batch(ids, {"seed": ids + self.start})

    def fingerprint(self) -> str:
        return f"seeds:{self.start}:{self.stop}"
