"""The JSON bodies of the KServe v2 / Triton HTTP endpoints other than infer.

Plain dicts with Triton's field names, built from the protocol-free dataclasses of
:mod:`headrace.server.core`; the gRPC frontend builds the same shapes as protobuf messages.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from headrace.server.core import (
        Duration,
        ModelMetadata,
        ModelStatistics,
        RepositoryIndexEntry,
        ServerMetadata,
    )
    from headrace.types import TensorSpec

__all__ = [
    "model_metadata_json",
    "repository_index_json",
    "server_metadata_json",
    "statistics_json",
]


def server_metadata_json(meta: ServerMetadata) -> dict[str, Any]:
    return {"name": meta.name, "version": meta.version, "extensions": list(meta.extensions)}


def _tensor_json(spec: TensorSpec, batched: bool) -> dict[str, Any]:
    return {
        "name": spec.name,
        "datatype": spec.datatype.value,
        "shape": list(spec.shape(batched)),
    }


def model_metadata_json(meta: ModelMetadata) -> dict[str, Any]:
    """Triton's model metadata; shapes carry a leading -1 when the model batches."""
    return {
        "name": meta.name,
        "versions": list(meta.versions),
        "platform": meta.platform,
        "inputs": [_tensor_json(spec, meta.batched) for spec in meta.inputs],
        "outputs": [_tensor_json(spec, meta.batched) for spec in meta.outputs],
    }


def _duration(d: Duration) -> dict[str, int]:
    return {"count": d.count, "ns": d.ns}


def _model_stats(s: ModelStatistics) -> dict[str, Any]:
    return {
        "name": s.name,
        "version": s.version,
        "last_inference": s.last_inference_ms,
        "inference_count": s.inference_count,
        "execution_count": s.execution_count,
        "inference_stats": {
            "success": _duration(s.success),
            "fail": _duration(s.fail),
            "queue": _duration(s.queue),
            "compute_input": _duration(s.compute_input),
            "compute_infer": _duration(s.compute_infer),
            "compute_output": _duration(s.compute_output),
            "cache_hit": _duration(s.cache_hit),
            "cache_miss": _duration(s.cache_miss),
        },
        "batch_stats": [
            {
                "batch_size": b.batch_size,
                "compute_input": _duration(b.compute_input),
                "compute_infer": _duration(b.compute_infer),
                "compute_output": _duration(b.compute_output),
            }
            for b in s.batch_stats
        ],
    }


def statistics_json(stats: Iterable[ModelStatistics]) -> dict[str, Any]:
    """Triton's statistics extension body: ``{"model_stats": [...]}``."""
    return {"model_stats": [_model_stats(s) for s in stats]}


def repository_index_json(entries: Iterable[RepositoryIndexEntry]) -> list[dict[str, str]]:
    """Triton's repository index: name always; version, state and reason when known."""
    out: list[dict[str, str]] = []
    for entry in entries:
        item = {"name": entry.name}
        if entry.version:
            item["version"] = entry.version
        if entry.state:
            item["state"] = entry.state
        if entry.reason:
            item["reason"] = entry.reason
        out.append(item)
    return out
