"""``--grpc-max-concurrent-streams``: a connection holding that many open calls makes its next
call wait, while other connections are served; closing one lets the waiting call through."""

from __future__ import annotations

import queue
import threading

import grpc
import numpy as np
import pytest
from door_thread import serving
from server_fakes import scale_config, scale_factory
from tritonclient.grpc import service_pb2, service_pb2_grpc

from headrace.server.app import FrontendOptions
from headrace.server.core import InferenceServer
from headrace.server.security import SecurityOptions

BOUND = 2


async def _scale(core: InferenceServer) -> None:
    await core.register_model("scale", scale_factory(), scale_config())


def _request() -> service_pb2.ModelInferRequest:
    request = service_pb2.ModelInferRequest(model_name="scale")
    tensor = request.inputs.add(name="x", datatype="FP32")
    tensor.shape.extend([1, 4])
    request.raw_input_contents.append(np.ones((1, 4), np.float32).tobytes())
    return request


class _OpenStream:
    """A ModelStreamInfer call kept open: one request answered, then it waits to be closed."""

    def __init__(self, stub: service_pb2_grpc.GRPCInferenceServiceStub) -> None:
        self._requests: queue.Queue[service_pb2.ModelInferRequest | None] = queue.Queue()
        self._requests.put(_request())
        self.call = stub.ModelStreamInfer(iter(self._requests.get, None))
        self.first = next(self.call)  # the server has taken the stream

    def close(self) -> None:
        self._requests.put(None)
        for _ in self.call:
            pass


def test_a_connection_at_its_stream_bound_makes_the_next_call_wait() -> None:
    security = SecurityOptions(grpc_max_concurrent_streams=BOUND)
    options = FrontendOptions(http_port=None, grpc_port=0, metrics_port=None, security=security)
    with serving(options, _scale) as app:
        url = f"127.0.0.1:{app.ports['grpc']}"
        own = [("grpc.use_local_subchannel_pool", 1)]  # two channels, two connections
        with (
            grpc.insecure_channel(url, options=own) as channel,
            grpc.insecure_channel(url, options=own) as other,
        ):
            stub = service_pb2_grpc.GRPCInferenceServiceStub(channel)
            assert stub.ServerLive(service_pb2.ServerLiveRequest(), timeout=10).live
            streams = [_OpenStream(stub) for _ in range(BOUND)]
            assert all(not s.first.error_message for s in streams)
            with pytest.raises(grpc.RpcError) as waited:
                stub.ServerLive(service_pb2.ServerLiveRequest(), timeout=1.0)
            assert waited.value.code() == grpc.StatusCode.DEADLINE_EXCEEDED
            other_stub = service_pb2_grpc.GRPCInferenceServiceStub(other)
            assert other_stub.ServerLive(service_pb2.ServerLiveRequest(), timeout=10).live
            pending = stub.ServerLive.future(service_pb2.ServerLiveRequest(), timeout=30)
            closer = threading.Thread(target=streams[0].close)
            closer.start()
            assert pending.result().live  # through once a stream has ended
            closer.join(30)
            streams[1].close()
