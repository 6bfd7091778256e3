"""What every reader promises: a fixed number of rows, read back by row range.

Readers give random access by row range (``read(start, stop)``) instead of one stream, so a
job can be cut into shards that are read independently, by several threads or Ray tasks, and a
resumed job reads only the shards it has not finished. Row ``i`` of a dataset always has row id
``i``. A reader never loads the whole dataset: files are memory-mapped or read in slices.

Readers are built from a :class:`DataSpec` (plain strings, picklable) so that Ray workers can
open their own copy with :func:`~headrace.batch.readers.open_reader`, which picks the reader;
each reader opens its files on first use. The readers import this module, never the reverse.
"""

from __future__ import annotations

import os
from abc import ABC, abstractmethod
from collections.abc import Iterator
from dataclasses import dataclass

import numpy as np

from headrace.errors import InvalidInput

__all__ = ["Batch", "DataSpec", "Reader", "file_stamp"]

Columns = dict[str, np.ndarray]


@dataclass(frozen=True)
class Batch:
    """Consecutive rows: their ids and one array per column (row dimension first)."""

    row_ids: np.ndarray
    columns: Columns

    def __len__(self) -> int:
        return len(self.row_ids)


@dataclass(frozen=True)
class DataSpec:
    """Where the rows come from: a path (or ``seeds:START:STOP``) and reader options.

    ``columns`` selects columns (Parquet, HDF5, .npz); empty means every column. ``image_size``
    is ``(height, width)`` for image folders (empty keeps each file's size, which must then
    agree across files).
    """

    source: str
    columns: tuple[str, ...] = ()
    image_size: tuple[int, ...] = ()
    decode_threads: int = 4


class Reader(ABC):
    """A dataset of ``num_rows`` rows with named columns."""

    @property
    @abstractmethod
    def num_rows(self) -> int:
        """How many rows the dataset holds."""

    @abstractmethod
    def read(self, start: int, stop: int) -> Batch:
        """Rows ``[start, stop)``; safe to call from several threads."""

    @abstractmethod
    def fingerprint(self) -> str:
        """Changes whenever the rows would (files, sizes, modification times, selection)."""

    def iter_batches(self, start: int, stop: int, batch_size: int) -> Iterator[Batch]:
        """Rows ``[start, stop)`` in batches of ``batch_size`` (the last may be short)."""
        if batch_size < 1:
            raise InvalidInput(f"batch size must be >= 1, got {batch_size}")
        for first in range(start, stop, batch_size):
            yield self.read(first, min(first + batch_size, stop))

    def close(self) -> None:
        """Release open files."""

    def _check_range(self, start: int, stop: int) -> None:
        if not 0 <= start <= stop <= self.num_rows:
            raise InvalidInput(f"row range [{start}, {stop}) is outside [0, {self.num_rows})")


def file_stamp(path: str) -> str:
    """``path:size:mtime_ns``: cheap, and changes whenever the file is rewritten."""
    try:
        info = os.stat(path)
    except OSError as exc:
        raise InvalidInput(f"cannot read input {path!r}: {exc}") from exc
    return f"{os.path.abspath(path)}:{info.st_size}:{info.st_mtime_ns}"
