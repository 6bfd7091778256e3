"""Gathers results into shards and writes each shard the moment its last row arrives.

Pieces of a shard may arrive in any order and from any worker (several local instances, or
Ray batches that mix shards); a shard is written sorted by row id, then recorded in the
manifest. One thread calls ``add`` (the writer thread or the Ray driver loop).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

import numpy as np

from headrace.batch.manifest import Manifest, ShardRecord
from headrace.batch.writers import ShardResult, ShardWriter
from headrace.errors import InternalError

__all__ = ["ShardCollector"]


class ShardCollector:
    """Accumulates rows per shard; ``on_rows(n)`` is told of every piece (for progress)."""

    def __init__(
        self,
        manifest: Manifest,
        writer: ShardWriter,
        outputs: tuple[str, ...],
        on_rows: Callable[[int], None] | None = None,
    ) -> None:
        self.manifest = manifest
        self.writer = writer
        self.outputs = outputs
        self.on_rows = on_rows
        self._pieces: dict[int, list[ShardResult]] = {}
        self._counts: dict[int, int] = {}
        self.shards_written = 0

    def add(self, shard: int, row_ids: np.ndarray, outputs: Mapping[str, Any]) -> None:
        """One piece of ``shard``: its row ids and every model output for those rows."""
        piece = ShardResult(
            shard,
            np.asarray(row_ids, dtype=np.int64),
            {name: np.asarray(outputs[name]) for name in self.outputs},
        )
        self._pieces.setdefault(shard, []).append(piece)
        self._counts[shard] = self._counts.get(shard, 0) + len(piece.row_ids)
        if self.on_rows is not None:
            self.on_rows(len(piece.row_ids))
        start, stop = self.manifest.shard_range(shard)
        if self._counts[shard] > stop - start:
            raise InternalError(
                f"shard {shard} received {self._counts[shard]} rows, expects {stop - start}"
            )
        if self._counts[shard] == stop - start:
            self._write(shard, start, stop)

    def unfinished(self) -> list[int]:
        """Shards that received some rows but not all of them."""
        return sorted(self._pieces)

    def _write(self, shard: int, start: int, stop: int) -> None:
        pieces = self._pieces.pop(shard)
        del self._counts[shard]
        row_ids = np.concatenate([p.row_ids for p in pieces])
        order = np.argsort(row_ids, kind="stable")
        row_ids = row_ids[order]
        if not np.array_equal(row_ids, np.arange(start, stop)):
            raise InternalError(f"shard {shard} rows are not exactly [{start}, {stop})")
        outputs = {
            name: np.concatenate([p.outputs[name] for p in pieces])[order] for name in self.outputs
        }
        files = self.writer.write(ShardResult(shard, row_ids, outputs))
        self.manifest.record(ShardRecord(shard, start, stop, files))
        self.shards_written += 1
