"""Which API group each gRPC method belongs to, and an interceptor refusing calls without its key.

Triton reads the key from the metadata ``triton-grpc-protocol-KEY`` and refuses with
UNAVAILABLE and ``This protocol is restricted, expecting header '…'``; so does this, before the
request message is read. The interceptor is installed only when some group is restricted, so an
open server pays nothing for it.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

import grpc

from headrace.server.security import RestrictedApis

__all__ = ["METHOD_GROUPS", "RestrictedInterceptor"]

METHOD_GROUPS: dict[str, str] = {
    "ServerLive": "health",
    "ServerReady": "health",
    "ModelReady": "health",
    "ServerMetadata": "metadata",
    "ModelMetadata": "metadata",
    "ModelInfer": "inference",
    "ModelStreamInfer": "inference",
    "ModelConfig": "model-config",
    "ModelStatistics": "statistics",
    "RepositoryIndex": "model-repository",
    "RepositoryModelLoad": "model-repository",
    "RepositoryModelUnload": "model-repository",
    "SystemSharedMemoryStatus": "shared-memory",
    "SystemSharedMemoryRegister": "shared-memory",
    "SystemSharedMemoryUnregister": "shared-memory",
    "CudaSharedMemoryStatus": "shared-memory",
    "CudaSharedMemoryRegister": "shared-memory",
    "CudaSharedMemoryUnregister": "shared-memory",
    "TraceSetting": "trace",
    "LogSettings": "logging",
}
"""Every RPC of ``inference.GRPCInferenceService`` and its group, as Triton 2.51 groups them."""


class RestrictedInterceptor(grpc.aio.ServerInterceptor):  # type: ignore[misc]
    """Refuses calls to restricted groups that lack their key in the metadata."""

    def __init__(self, restricted: RestrictedApis) -> None:
        self._restricted = restricted

    async def intercept_service(
        self,
        continuation: Callable[[Any], Awaitable[grpc.RpcMethodHandler]],
        details: grpc.HandlerCallDetails,
    ) -> grpc.RpcMethodHandler:
        group = METHOD_GROUPS.get(details.method.rsplit("/", 1)[-1])
        metadata: dict[str, str] = {}
        for key, value in details.invocation_metadata or ():
            if isinstance(value, str):
                metadata[key] = value
        missing = self._restricted.refused(group, metadata.get)
        if missing is None:
            return await continuation(details)
        return _refusing(group == "inference" and details.method.endswith("StreamInfer"), missing)


def _refusing(streaming: bool, missing: str) -> grpc.RpcMethodHandler:
    message = f"This protocol is restricted, expecting header '{missing}'"

    async def refuse(request: Any, context: grpc.aio.ServicerContext[Any, Any]) -> None:
        await context.abort(grpc.StatusCode.UNAVAILABLE, message)

    if streaming:
        return grpc.stream_stream_rpc_method_handler(refuse)
    return grpc.unary_unary_rpc_method_handler(refuse)
