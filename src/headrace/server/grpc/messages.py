"""The protobuf replies of the gRPC RPCs other than inference.

Built from the protocol-free dataclasses of :mod:`headrace.server.reports`, field for field as
:mod:`headrace.server.http.messages` builds the JSON bodies.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import TYPE_CHECKING, Any

from tritonclient.grpc import service_pb2

if TYPE_CHECKING:
    from headrace.server.memory import RegionStatus
    from headrace.server.reports import (
        Duration,
        ModelMetadata,
        ModelStatistics,
        RepositoryIndexEntry,
        ServerMetadata,
    )

__all__ = [
    "cuda_status_response",
    "model_metadata_response",
    "repository_index_response",
    "server_metadata_response",
    "statistics_response",
    "system_status_response",
]


def server_metadata_response(meta: ServerMetadata) -> service_pb2.ServerMetadataResponse:
    return service_pb2.ServerMetadataResponse(
        name=meta.name, version=meta.version, extensions=list(meta.extensions)
    )


def model_metadata_response(meta: ModelMetadata) -> service_pb2.ModelMetadataResponse:
    """Triton's model metadata; shapes carry a leading -1 when the model batches."""
    tensor = service_pb2.ModelMetadataResponse.TensorMetadata
    return service_pb2.ModelMetadataResponse(
        name=meta.name,
        versions=list(meta.versions),
        platform=meta.platform,
        inputs=[
            tensor(name=s.name, datatype=s.datatype.value, shape=s.shape(meta.batched))
            for s in meta.inputs
        ],
        outputs=[
            tensor(name=s.name, datatype=s.datatype.value, shape=s.shape(meta.batched))
            for s in meta.outputs
        ],
    )


def _duration(d: Duration) -> dict[str, Any]:
    return {"count": d.count, "ns": d.ns}


def _model_stats(s: ModelStatistics) -> service_pb2.ModelStatistics:
    return service_pb2.ModelStatistics(
        name=s.name,
        version=s.version,
        last_inference=s.last_inference_ms,
        inference_count=s.inference_count,
        execution_count=s.execution_count,
        inference_stats=service_pb2.InferStatistics(
            success=_duration(s.success),
            fail=_duration(s.fail),
            queue=_duration(s.queue),
            compute_input=_duration(s.compute_input),
            compute_infer=_duration(s.compute_infer),
            compute_output=_duration(s.compute_output),
            cache_hit=_duration(s.cache_hit),
            cache_miss=_duration(s.cache_miss),
        ),
        batch_stats=[
            service_pb2.InferBatchStatistics(
                batch_size=b.batch_size,
                compute_input=_duration(b.compute_input),
                compute_infer=_duration(b.compute_infer),
                compute_output=_duration(b.compute_output),
            )
            for b in s.batch_stats
        ],
    )


def statistics_response(stats: Iterable[ModelStatistics]) -> service_pb2.ModelStatisticsResponse:
    return service_pb2.ModelStatisticsResponse(model_stats=[_model_stats(s) for s in stats])


def repository_index_response(
    entries: Iterable[RepositoryIndexEntry],
) -> service_pb2.RepositoryIndexResponse:
    index = service_pb2.RepositoryIndexResponse.ModelIndex
    return service_pb2.RepositoryIndexResponse(
        models=[
            index(name=e.name, version=e.version, state=e.state, reason=e.reason) for e in entries
        ]
    )


def system_status_response(
    regions: Iterable[RegionStatus],
) -> service_pb2.SystemSharedMemoryStatusResponse:
    """Triton's system shared memory status: a map from region name to name, key, offset and
    byte size."""
    response = service_pb2.SystemSharedMemoryStatusResponse()
    for r in regions:
        response.regions[r.name].CopyFrom(
            service_pb2.SystemSharedMemoryStatusResponse.RegionStatus(
                name=r.name, key=r.key, offset=r.offset, byte_size=r.byte_size
            )
        )
    return response


def cuda_status_response(
    regions: Iterable[RegionStatus],
) -> service_pb2.CudaSharedMemoryStatusResponse:
    """Triton's CUDA shared memory status: a map from region name to name, device and size."""
    response = service_pb2.CudaSharedMemoryStatusResponse()
    for r in regions:
        response.regions[r.name].CopyFrom(
            service_pb2.CudaSharedMemoryStatusResponse.RegionStatus(
                name=r.name, device_id=r.device_id, byte_size=r.byte_size
            )
        )
    return response
