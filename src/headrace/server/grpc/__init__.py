"""The gRPC door: ``inference.GRPCInferenceService`` (frontend, codec, metadata messages)."""

from headrace.server.grpc.frontend import GrpcFrontend

__all__ = ["GrpcFrontend"]
