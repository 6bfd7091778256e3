"""The smallest Triton-protocol servers each Python server library allows: the floor.

Each serves one identity model ``identity`` (FP32 ``INPUT0`` -> ``OUTPUT0``) with just
enough of the protocol for perf_analyzer (health, metadata, config, statistics, infer) and
no scheduler, validation or statistics. What such a server takes in under a load is the
most any server built on that library can, on that machine:

- ``grpc-aio``: ``grpc.aio`` on uvloop, the library headrace's gRPC frontend uses;
- ``grpc-sync``: grpcio's thread-pool server (4 workers), handlers called on its threads;
- ``http-granian``: granian's RSGI interface (HTTP parsed in Rust, off the GIL) with
  headrace's own KServe v2 codec, embedded in a uvloop loop as headrace would embed it.

    python bare_servers.py KIND PORTS_FILE FEATURES

writes ``{"port": N}`` to PORTS_FILE once it listens on 127.0.0.1, and serves until killed.
"""

from __future__ import annotations

import json
import sys
from concurrent import futures
from typing import Any

KINDS = ("grpc-aio", "grpc-sync", "http-granian")
MODEL = "identity"
SYNC_WORKERS = 4


def _write_port(ports_file: str, port: int) -> None:
    from headrace.files import atomic_write_bytes

    atomic_write_bytes(ports_file, json.dumps({"port": port}).encode())


def _metadata(features: int) -> dict[str, Any]:
    return {
        "name": MODEL,
        "versions": ["1"],
        "platform": "python",
        "inputs": [{"name": "INPUT0", "datatype": "FP32", "shape": [-1, features]}],
        "outputs": [{"name": "OUTPUT0", "datatype": "FP32", "shape": [-1, features]}],
    }


def _config(features: int) -> dict[str, Any]:
    return {
        "name": MODEL,
        "max_batch_size": 64,
        "input": [{"name": "INPUT0", "data_type": "TYPE_FP32", "dims": [features]}],
        "output": [{"name": "OUTPUT0", "data_type": "TYPE_FP32", "dims": [features]}],
    }


def _grpc_servicer(features: int, asynchronous: bool) -> Any:
    from google.protobuf import json_format
    from tritonclient.grpc import model_config_pb2, service_pb2, service_pb2_grpc

    metadata = json_format.ParseDict(_metadata(features), service_pb2.ModelMetadataResponse())
    config = service_pb2.ModelConfigResponse(
        config=json_format.ParseDict(_config(features), model_config_pb2.ModelConfig())
    )

    def infer(request: Any) -> Any:
        response = service_pb2.ModelInferResponse(
            model_name=request.model_name, model_version="1", id=request.id
        )
        for tensor in request.inputs:
            output = response.outputs.add()
            output.name, output.datatype = "OUTPUT0", tensor.datatype
            output.shape.extend(tensor.shape)
        response.raw_output_contents.extend(request.raw_input_contents)
        return response

    answers = {
        "ServerLive": lambda _: service_pb2.ServerLiveResponse(live=True),
        "ServerReady": lambda _: service_pb2.ServerReadyResponse(ready=True),
        "ModelReady": lambda _: service_pb2.ModelReadyResponse(ready=True),
        "ServerMetadata": lambda _: service_pb2.ServerMetadataResponse(name="bare", version="0"),
        "ModelMetadata": lambda _: metadata,
        "ModelConfig": lambda _: config,
        "ModelStatistics": lambda _: service_pb2.ModelStatisticsResponse(),
        "ModelInfer": infer,
    }

    def sync_method(answer: Any) -> Any:
        return lambda self, request, context: answer(request)

    def async_method(answer: Any) -> Any:
        async def method(self: Any, request: Any, context: Any) -> Any:
            return answer(request)

        return method

    wrap = async_method if asynchronous else sync_method
    methods = {name: wrap(answer) for name, answer in answers.items()}
    return type("Bare", (service_pb2_grpc.GRPCInferenceServiceServicer,), methods)()


def serve_grpc_sync(ports_file: str, features: int) -> None:
    import grpc
    from tritonclient.grpc import service_pb2_grpc

    server = grpc.server(futures.ThreadPoolExecutor(max_workers=SYNC_WORKERS))
    service_pb2_grpc.add_GRPCInferenceServiceServicer_to_server(
        _grpc_servicer(features, asynchronous=False), server
    )
    port = server.add_insecure_port("127.0.0.1:0")
    server.start()
    _write_port(ports_file, port)
    server.wait_for_termination()


def serve_grpc_aio(ports_file: str, features: int) -> None:
    import grpc
    from tritonclient.grpc import service_pb2_grpc

    from headrace.server.app import new_event_loop

    async def main() -> None:
        server = grpc.aio.server()
        service_pb2_grpc.add_GRPCInferenceServiceServicer_to_server(
            _grpc_servicer(features, asynchronous=True), server
        )
        port = server.add_insecure_port("127.0.0.1:0")
        await server.start()
        _write_port(ports_file, port)
        await server.wait_for_termination()

    new_event_loop().run_until_complete(main())


def serve_http_granian(ports_file: str, features: int) -> None:
    from granian.constants import Interfaces
    from granian.server.embed import Server

    from headrace.server.app import new_event_loop
    from headrace.server.http.codec import decode_infer_request, encode_infer_response
    from headrace.types import InferenceResponse

    documents = {
        f"/v2/models/{MODEL}": json.dumps(_metadata(features)).encode(),
        f"/v2/models/{MODEL}/config": json.dumps(_config(features)).encode(),
        f"/v2/models/{MODEL}/stats": b'{"model_stats":[]}',
        "/v2": b'{"name":"bare","version":"0","extensions":[]}',
    }
    json_type = [("content-type", "application/json")]

    async def app(scope: Any, protocol: Any) -> None:
        path = scope.path
        if path.endswith("/infer"):
            body = await protocol()
            length = scope.headers.get("inference-header-content-length")
            decoded = decode_infer_request(MODEL, "", body, int(length) if length else None)
            inputs = decoded.request.inputs
            response = InferenceResponse(MODEL, "1", {"OUTPUT0": inputs["INPUT0"]})
            payload, header_length = encode_infer_response(response, decoded)
            headers = [("content-type", "application/octet-stream")]
            if header_length is not None:
                headers.append(("inference-header-content-length", str(header_length)))
            protocol.response_bytes(200, headers, payload)
        elif path in documents:
            protocol.response_bytes(200, json_type, documents[path])
        elif path.endswith(("/ready", "/live")):
            protocol.response_empty(200, [])
        else:
            protocol.response_bytes(404, json_type, b'{"error":"not found"}')

    async def main() -> None:
        from servers import free_ports  # this file's folder is on sys.path when run

        (port,) = free_ports(1)  # granian binds itself; a race here fails the start, not the run
        server = Server(
            app, address="127.0.0.1", port=port, interface=Interfaces.RSGI, log_enabled=False
        )
        _write_port(ports_file, port)  # the parent waits until it accepts connections
        await server.serve()

    new_event_loop().run_until_complete(main())


def available(kind: str) -> bool:
    """Whether ``kind``'s library is installed (granian is not a headrace dependency)."""
    import importlib.util

    module = "granian" if kind == "http-granian" else "grpc"
    return importlib.util.find_spec(module) is not None


if __name__ == "__main__":
    kind, ports_path, size = sys.argv[1], sys.argv[2], int(sys.argv[3])
    serve = {
        "grpc-aio": serve_grpc_aio,
        "grpc-sync": serve_grpc_sync,
        "http-granian": serve_http_granian,
    }[kind]
    serve(ports_path, size)
