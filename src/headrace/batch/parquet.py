"""Parquet input: one file or a folder of ``*.parquet`` files, read by row group.

Only the row groups a row range touches are read (``ParquetFile.iter_batches`` over those
groups, selected columns only), so memory stays at a few row groups per reader thread.
List columns (``list``/``fixed_size_list`` of numbers, e.g. 64 features per row) become 2-D
arrays; each thread keeps its own open files, since a ``ParquetFile`` is not shared safely.
"""

from __future__ import annotations

import bisect
import os
import threading
from collections.abc import Iterator
from typing import Any

import numpy as np

from headrace.batch.dataset import Batch, Reader, file_stamp
from headrace.errors import InvalidInput, require

__all__ = ["ParquetReader", "arrow_to_numpy", "is_parquet"]


def is_parquet(source: str) -> bool:
    """A ``.parquet`` file, or a folder holding at least one."""
    if source.endswith((".parquet", ".pq")):
        return True
    return os.path.isdir(source) and bool(_parquet_files(source))


def _parquet_files(folder: str) -> list[str]:
    return sorted(
        os.path.join(folder, name)
        for name in os.listdir(folder)
        if name.endswith((".parquet", ".pq")) and not name.startswith(".")
    )


class ParquetReader(Reader):
    """Rows of one or several Parquet files, in file order then row order."""

    def __init__(self, source: str, columns: tuple[str, ...]) -> None:
        self._pq = require("pyarrow.parquet", "data")
        self.files = _parquet_files(source) if os.path.isdir(source) else [source]
        self._local = threading.local()
        # Global first row of every row group, for bisecting a row range onto groups.
        self._group_starts: list[int] = []
        self._groups: list[tuple[int, int]] = []  # (file index, row group index)
        total = 0
        for index in range(len(self.files)):
            meta = self._file(index).metadata
            for group in range(meta.num_row_groups):
                self._group_starts.append(total)
                self._groups.append((index, group))
                total += meta.row_group(group).num_rows
        self._rows = total
        schema_names = self._file(0).schema_arrow.names if self.files else []
        missing = [c for c in columns if c not in schema_names]
        if missing:
            raise InvalidInput(f"{source!r} has no columns {missing} (columns: {schema_names})")
        self.columns = list(columns) or list(schema_names)

    @property
    def num_rows(self) -> int:
        return self._rows

    def read(self, start: int, stop: int) -> Batch:
        self._check_range(start, stop)
        return _batch(
            start, stop, [columns for _, columns in self._pieces(start, stop)], self.columns
        )

    def iter_batches(self, start: int, stop: int, batch_size: int) -> Iterator[Batch]:
        """Rows ``[start, stop)`` in batches, decoding each row group they touch once.

        The generic reader calls ``read`` per batch, which would decode a whole row group
        for every batch cut from it.
        """
        if batch_size < 1:
            raise InvalidInput(f"batch size must be >= 1, got {batch_size}")
        self._check_range(start, stop)
        parts: list[dict[str, np.ndarray]] = []
        buffered = 0
        first = start
        for rows, columns in self._pieces(start, stop):
            offset = 0
            while offset < rows:
                take = min(batch_size - buffered, rows - offset)
                parts.append(
                    {name: array[offset : offset + take] for name, array in columns.items()}
                )
                buffered += take
                offset += take
                if buffered == batch_size:
                    yield _batch(first, first + buffered, parts, self.columns)
                    first += buffered
                    parts, buffered = [], 0
        if buffered:
            yield _batch(first, first + buffered, parts, self.columns)

    def _pieces(self, start: int, stop: int) -> Iterator[tuple[int, dict[str, np.ndarray]]]:
        """(rows, columns) of each row group's part of ``[start, stop)``, in order."""
        group = max(bisect.bisect_right(self._group_starts, start) - 1, 0)
        position = start
        while position < stop and group < len(self._groups):
            group_start = self._group_starts[group]
            table = self._row_group(group)
            lo = position - group_start
            hi = min(stop - group_start, table.num_rows)
            piece = table.slice(lo, hi - lo)
            yield hi - lo, {name: arrow_to_numpy(piece.column(name)) for name in self.columns}
            position = group_start + hi
            group += 1

    def _row_group(self, group: int) -> Any:
        """A decoded row group; each thread keeps its last one, since neighbouring shards
        (row ranges) usually share a group."""
        cached = getattr(self._local, "group", None)
        if cached is not None and cached[0] == group:
            return cached[1]
        file_index, row_group = self._groups[group]
        table = self._file(file_index).read_row_group(row_group, columns=self.columns)
        self._local.group = (group, table)
        return table

    def fingerprint(self) -> str:
        return "|".join([*(file_stamp(p) for p in self.files), *self.columns])

    def _file(self, index: int) -> Any:
        files = getattr(self._local, "files", None)
        if files is None:
            files = self._local.files = {}
        if index not in files:
            path = self.files[index]
            try:
                files[index] = self._pq.ParquetFile(path)
            except (OSError, ValueError) as exc:
                raise InvalidInput(f"cannot read {path!r} as Parquet: {exc}") from exc
        return files[index]


def arrow_to_numpy(column: Any) -> np.ndarray:
    """A (chunked) Arrow column as a numpy array; list columns of equal length become 2-D."""
    pa = require("pyarrow", "data")
    if isinstance(column, pa.ChunkedArray):
        # One chunk (a row group's slice) converts without a copy; combining always copies.
        column = column.chunk(0) if column.num_chunks == 1 else column.combine_chunks()
    kind = column.type
    if pa.types.is_list(kind) or pa.types.is_large_list(kind) or pa.types.is_fixed_size_list(kind):
        rows = len(column)
        values = arrow_to_numpy(column.flatten())
        if rows and len(values) % rows:
            raise InvalidInput(f"list column of type {kind} has rows of different lengths")
        return values.reshape((rows, -1, *values.shape[1:]) if rows else (0, *values.shape[1:]))
    return np.asarray(column.to_numpy(zero_copy_only=False))


def _batch(start: int, stop: int, parts: list[dict[str, np.ndarray]], names: list[str]) -> Batch:
    """Rows ``[start, stop)`` from consecutive pieces (no copy when there is one piece)."""
    ids = np.arange(start, stop, dtype=np.int64)
    if len(parts) == 1:
        return Batch(ids, dict(parts[0]))
    if not parts:
        return Batch(ids, {name: np.empty(0) for name in names})
    return Batch(ids, {name: np.concatenate([part[name] for part in parts]) for name in names})
