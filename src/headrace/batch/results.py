"""Read a finished (or partial) job's results back, shard by shard, as numpy arrays."""

from __future__ import annotations

import json
import os
from collections.abc import Iterator

import numpy as np

from headrace.batch.manifest import Manifest
from headrace.batch.parquet import arrow_to_numpy
from headrace.batch.writers import ROW_ID, SHAPE_KEY, ShardResult
from headrace.errors import InvalidInput, require

__all__ = ["iter_results", "load_results"]


def iter_results(out_dir: str) -> Iterator[ShardResult]:
    """Every shard the manifest lists, in shard order (parquet and npy formats)."""
    manifest = Manifest.load(out_dir)
    if manifest is None:
        raise InvalidInput(f"{out_dir!r} has no manifest.json; is it a 'headrace run' output?")
    for index in sorted(manifest.shards):
        record = manifest.shards[index]
        if manifest.format == "parquet":
            yield _read_parquet(os.path.join(out_dir, record.files[0]), index)
        elif manifest.format == "npy":
            arrays = {f.split(os.sep)[0]: np.load(os.path.join(out_dir, f)) for f in record.files}
            row_ids = arrays.pop(ROW_ID)
            yield ShardResult(index, row_ids, arrays)
        else:
            raise InvalidInput(f"results in format {manifest.format!r} are files, not arrays")


def load_results(out_dir: str) -> ShardResult:
    """All shards concatenated (index -1); fine for tests and small jobs."""
    shards = list(iter_results(out_dir))
    if not shards:
        return ShardResult(-1, np.empty(0, np.int64), {})
    names = list(shards[0].outputs)
    return ShardResult(
        -1,
        np.concatenate([s.row_ids for s in shards]),
        {name: np.concatenate([s.outputs[name] for s in shards]) for name in names},
    )


def _read_parquet(path: str, index: int) -> ShardResult:
    pq = require("pyarrow.parquet", "data")
    table = pq.read_table(path)
    outputs = {}
    for field in table.schema:
        values = arrow_to_numpy(table.column(field.name))
        metadata = field.metadata or {}
        if SHAPE_KEY in metadata:
            values = values.reshape((len(values), *json.loads(metadata[SHAPE_KEY])))
        outputs[field.name] = values
    row_ids = outputs.pop(ROW_ID)
    return ShardResult(index, row_ids, outputs)
