"""The gRPC frontend: ``inference.GRPCInferenceService`` as Triton serves it, on grpc.aio.

A thin door: each RPC converts the protobuf request (:mod:`headrace.server.grpc.codec`,
:mod:`headrace.server.grpc.messages`), calls one method of the
:class:`~headrace.server.core.InferenceServer`, and errors become gRPC statuses in one place,
:data:`GRPC_STATUS`. Messages and the service description come from the ``service_pb2`` module
``tritonclient`` ships, so unmodified ``tritonclient.grpc`` and ``perf_analyzer`` talk to it.

The server is created inside the running event loop, the one the HTTP frontend and the core
use. ``ModelStreamInfer`` runs up to ``stream_window`` requests of one stream concurrently and
answers them in the order they arrived (Triton's streaming keeps request/response order for
non-decoupled models); a decoupled model's responses go out as it sends them, each marked
``triton_final_response`` false until the last. A failed request becomes an ``error_message``
response and the stream goes on.

Nothing a stream holds grows without bound: its responses not yet written count in one
:class:`~headrace.scheduling.backlog.StreamBacklog` (``--max-stream-pending-responses``). While
it is full the stream's next request is not read, and a decoupled model's send waits for the
client (then fails its request after ``--stream-send-timeout``); gRPC's HTTP/2 flow control
bounds what sits in the transport.
"""

from __future__ import annotations

import asyncio
import functools
import logging
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import TYPE_CHECKING, Any, TypeAlias, TypeVar

import grpc
from tritonclient.grpc import service_pb2

from headrace.errors import ErrorCode, HeadraceError, InvalidInput, Unavailable
from headrace.server.grpc.closing import SHUTTING_DOWN, Gate
from headrace.server.grpc.codec import (
    encode_infer_response,
    encode_stream_response,
    parameter_value,
    split_infer_request,
)
from headrace.server.grpc.decoder import InferRequestDecoder
from headrace.server.grpc.messages import (
    cuda_status_response,
    model_metadata_response,
    repository_index_response,
    server_metadata_response,
    statistics_response,
    system_status_response,
)
from headrace.server.grpc.restricted import RestrictedInterceptor
from headrace.server.security import DEFAULT_GRPC_MAX_STREAMS, RestrictedApis
from headrace.types import InferenceRequest

if TYPE_CHECKING:
    from headrace.server.core import InferenceServer
    from headrace.server.tls import GrpcTls

__all__ = ["DEFAULT_MAX_MESSAGE_BYTES", "GRPC_STATUS", "GrpcFrontend", "grpc_status"]

DEFAULT_MAX_MESSAGE_BYTES = 2**31 - 1
"""Triton lets gRPC messages grow to INT32_MAX bytes in both directions."""

GRPC_STATUS: dict[ErrorCode, grpc.StatusCode] = {
    ErrorCode.INVALID_ARGUMENT: grpc.StatusCode.INVALID_ARGUMENT,
    ErrorCode.NOT_FOUND: grpc.StatusCode.NOT_FOUND,
    ErrorCode.ALREADY_EXISTS: grpc.StatusCode.ALREADY_EXISTS,
    ErrorCode.UNAVAILABLE: grpc.StatusCode.UNAVAILABLE,
    # Triton answers an expired queue timeout with UNAVAILABLE, as the HTTP side's 503 does.
    ErrorCode.DEADLINE_EXCEEDED: grpc.StatusCode.UNAVAILABLE,
    ErrorCode.UNIMPLEMENTED: grpc.StatusCode.UNIMPLEMENTED,
    ErrorCode.INTERNAL: grpc.StatusCode.INTERNAL,
}
"""The one table from headrace's error codes to gRPC status codes."""

_MAX_PENDING_CALLS = 1 << 14
"""Calls that may wait to be accepted. grpc.aio accepts calls one at a time on the loop, and
gRPC core cancels whatever waits beyond its default 1000, so a burst of a few thousand
concurrent clients (perf_analyzer --concurrency-range) saw CANCELLED; the core's own
bounded queues refuse real overload with UNAVAILABLE."""
_SLOW_QUIET_S = 1.0
"""A stop whose clients went quiet later than this says so (the refusals went on that long)."""
_FINAL_FLAG = "triton_enable_empty_final_response"
_FINAL_TRUE = {"triton_final_response": True}
_FINAL_FALSE = {"triton_final_response": False}
"""Every stream response says whether it is its request's last, as Triton 2.51 does."""
_log = logging.getLogger(__name__)

Req = TypeVar("Req")
Resp = TypeVar("Resp")
Handler = Callable[[Any, Req, Any], Awaitable[Resp]]


def grpc_status(error: BaseException) -> grpc.StatusCode:
    """The gRPC status for an exception; anything that is not a HeadraceError is INTERNAL."""
    if isinstance(error, HeadraceError):
        return GRPC_STATUS.get(error.code, grpc.StatusCode.INTERNAL)
    return grpc.StatusCode.INTERNAL


class GrpcFrontend:
    """Serves one :class:`InferenceServer` over gRPC on ``host:port`` (0 picks a port)."""

    def __init__(
        self,
        core: InferenceServer,
        host: str = "127.0.0.1",
        port: int = 8001,
        *,
        max_message_bytes: int = DEFAULT_MAX_MESSAGE_BYTES,
        stream_window: int = 256,
        reuse_port: bool = False,
        restricted: RestrictedApis | None = None,
        tls: GrpcTls | None = None,
        max_concurrent_streams: int = DEFAULT_GRPC_MAX_STREAMS,
        shutdown_timeout_s: float = 30.0,
    ) -> None:
        """``reuse_port`` lets several processes bind the same port (SO_REUSEPORT) and the
        kernel spread connections among them; otherwise a taken port is an error.
        ``restricted``: API groups that need a key; ``tls``: Triton's gRPC TLS settings;
        ``max_concurrent_streams``: calls in flight on one connection (more wait);
        ``shutdown_timeout_s``: how long :meth:`stop` waits for calls in flight by default."""
        if not 0 < max_message_bytes <= DEFAULT_MAX_MESSAGE_BYTES:
            raise ValueError(
                f"max_message_bytes must be in (0, {DEFAULT_MAX_MESSAGE_BYTES}], "
                f"got {max_message_bytes}"
            )
        if stream_window < 1:
            raise ValueError(f"stream_window must be at least 1, got {stream_window}")
        self._core = core
        self._host = host
        self._requested_port = port
        self._max_message = max_message_bytes
        self._stream_window = stream_window
        self._reuse_port = reuse_port
        self._restricted = restricted or RestrictedApis()
        self._tls = tls
        self._max_streams = max_concurrent_streams
        self._shutdown_timeout = shutdown_timeout_s
        self._server: grpc.aio.Server | None = None
        self._servicer: _Servicer | None = None
        self._port: int | None = None

    @property
    def port(self) -> int:
        """The bound port; only known after :meth:`start`."""
        if self._port is None:
            raise RuntimeError("GrpcFrontend.port is unknown until start() has bound the socket")
        return self._port

    @property
    def url(self) -> str:
        """``host:port`` as tritonclient takes it."""
        return f"{self._host}:{self.port}"

    async def start(self) -> None:
        """Bind and start serving on the running loop; returns once the port accepts calls."""
        if self._server is not None:
            raise RuntimeError("GrpcFrontend is already started")
        credentials = self._tls.credentials() if self._tls is not None else None
        interceptors = [RestrictedInterceptor(self._restricted)] if self._restricted else []
        server = grpc.aio.server(
            interceptors=interceptors,
            options=[
                ("grpc.max_concurrent_streams", self._max_streams),
                ("grpc.max_send_message_length", self._max_message),
                ("grpc.max_receive_message_length", self._max_message),
                ("grpc.so_reuseport", int(self._reuse_port)),
                ("grpc.server.max_pending_requests", _MAX_PENDING_CALLS),
                ("grpc.server.max_pending_requests_hard_limit", _MAX_PENDING_CALLS),
            ],
        )
        servicer = _Servicer(self._core, self._stream_window)
        handlers = _method_handlers(servicer)
        server.add_generic_rpc_handlers(
            (grpc.method_handlers_generic_handler(_SERVICE.full_name, handlers),)
        )
        server.add_registered_method_handlers(_SERVICE.full_name, handlers)
        address = f"{self._host}:{self._requested_port}"
        try:
            if credentials is None:
                port = server.add_insecure_port(address)
            else:
                port = server.add_secure_port(address, credentials)
        except RuntimeError as exc:
            raise OSError(f"gRPC frontend cannot bind {address}: {exc}") from exc
        if port == 0:
            raise OSError(f"gRPC frontend cannot bind {address}")
        await server.start()
        self._server, self._servicer, self._port = server, servicer, port

    async def stop(self, grace_s: float | None = None) -> None:
        """Refuse new calls at once (UNAVAILABLE) and end the open streams once their
        requests in flight are answered; once clients have gone quiet, close the port and
        give the calls in flight what is left of ``grace_s`` (default: the shutdown
        timeout), then cancel the rest (:mod:`headrace.server.grpc.closing` says why)."""
        server, self._server = self._server, None
        if server is None:
            return
        began = time.monotonic()
        deadline = began + (self._shutdown_timeout if grace_s is None else grace_s)
        if self._servicer is not None:
            self._servicer.close()  # before the first await: refusing from this step on
            await self._servicer.gate.quiet(deadline)
            waited = time.monotonic() - began
            if waited >= _SLOW_QUIET_S:
                _log.info("gRPC: clients kept calling for %.1f s; closing the port", waited)
        await server.stop(max(0.0, deadline - time.monotonic()))


_SERVICE = service_pb2.DESCRIPTOR.services_by_name["GRPCInferenceService"]
_BYTES_IN = frozenset({"ModelInfer", "ModelStreamInfer"})


def _method_handlers(servicer: _Servicer) -> dict[str, grpc.RpcMethodHandler]:
    """One handler per RPC of the service as ``service_pb2`` describes it.

    What ``service_pb2_grpc.add_GRPCInferenceServiceServicer_to_server`` registers, except
    that inference requests reach their handlers serialized and responses may be handed
    over serialized, so tensors skip protobuf's copies in both directions.
    """
    handlers: dict[str, grpc.RpcMethodHandler] = {}
    for method in _SERVICE.methods:
        make = (
            grpc.stream_stream_rpc_method_handler
            if method.client_streaming
            else grpc.unary_unary_rpc_method_handler
        )
        parse = None  # inference requests arrive as bytes: split_infer_request parses them
        if method.name not in _BYTES_IN:
            parse = getattr(service_pb2, method.input_type.name).FromString
        handlers[method.name] = make(
            getattr(servicer, method.name),
            request_deserializer=parse,
            response_serializer=_serialize,
        )
    return handlers


def _serialize(response: Any) -> bytes:
    return response if isinstance(response, bytes) else response.SerializeToString()


def _rpc(handler: Handler[Req, Resp]) -> Handler[Req, Resp]:
    """Map errors of a unary RPC to statuses, once, through :data:`GRPC_STATUS`; with
    ``--log-requests``, write the call's access log line."""

    @functools.wraps(handler)
    async def wrapper(self: Any, request: Req, context: Any) -> Resp:
        access = self._core.access_log
        started = time.perf_counter()
        status = grpc.StatusCode.OK
        try:
            if self.gate.closed:
                self.gate.refused()
                raise Unavailable(SHUTTING_DOWN)
            return await handler(self, request, context)
        except HeadraceError as exc:
            status = grpc_status(exc)
            await context.abort(status, exc.message)
            raise  # unreachable: abort raises
        except grpc.aio.AbortError:
            status = grpc.StatusCode.UNKNOWN
            raise
        except Exception as exc:
            status = grpc.StatusCode.INTERNAL
            _log.exception("gRPC %s failed", handler.__name__)
            await context.abort(status, f"internal error: {type(exc).__name__}: {exc}")
            raise
        finally:
            if access is not None:
                access.record("grpc", handler.__name__, _model_of(request), status.name, started)

    return wrapper


def _model_of(request: Any) -> str:
    """The model a request names: a message's ``name`` or ``model_name``; for a serialized
    ``ModelInferRequest``, its first field (``model_name``, as clients write it)."""
    if isinstance(request, bytes):
        if len(request) > 2 and request[0] == 0x0A and request[1] < 0x80:
            return request[2 : 2 + request[1]].decode("utf-8", "replace")
        return ""
    return str(getattr(request, "model_name", "") or getattr(request, "name", ""))


class _Servicer:
    """The ``GRPCInferenceService`` methods, by the names the generated registration looks up."""

    def __init__(self, core: InferenceServer, stream_window: int) -> None:
        self._core = core
        self._stream_window = stream_window
        self._decoder = InferRequestDecoder(core.shared_memory)
        self._streams: set[_Stream] = set()
        self.gate = Gate()

    def close(self) -> None:
        """Refuse every new call and stream; stop reading every open stream, which ends
        once the requests it has read are answered."""
        self.gate.close()
        for stream in list(self._streams):
            stream.stop_reading()

    # --- health and metadata ---------------------------------------------------------------

    @_rpc
    async def ServerLive(self, request: Any, context: Any) -> service_pb2.ServerLiveResponse:
        return service_pb2.ServerLiveResponse(live=self._core.live())

    @_rpc
    async def ServerReady(self, request: Any, context: Any) -> service_pb2.ServerReadyResponse:
        return service_pb2.ServerReadyResponse(ready=self._core.ready())

    @_rpc
    async def ModelReady(self, request: Any, context: Any) -> service_pb2.ModelReadyResponse:
        return service_pb2.ModelReadyResponse(
            ready=self._core.model_ready(request.name, request.version)
        )

    @_rpc
    async def ServerMetadata(
        self, request: Any, context: Any
    ) -> service_pb2.ServerMetadataResponse:
        return server_metadata_response(self._core.server_metadata())

    @_rpc
    async def ModelMetadata(self, request: Any, context: Any) -> service_pb2.ModelMetadataResponse:
        return model_metadata_response(self._core.model_metadata(request.name, request.version))

    @_rpc
    async def ModelConfig(self, request: Any, context: Any) -> service_pb2.ModelConfigResponse:
        config = self._core.model_config(request.name, request.version)
        return service_pb2.ModelConfigResponse(config=config)

    @_rpc
    async def ModelStatistics(
        self, request: Any, context: Any
    ) -> service_pb2.ModelStatisticsResponse:
        return statistics_response(self._core.statistics(request.name, request.version))

    # --- inference -------------------------------------------------------------------------

    @_rpc
    async def ModelInfer(self, request: bytes, context: Any) -> bytes:
        decoded = self._decoder.decode(request)
        shared = self._core.shared_memory.output_targets(decoded.outputs)
        result = await self._core.infer(decoded, endpoint="ModelInfer RPC")
        return encode_infer_response(result, shared=shared)

    async def ModelStreamInfer(
        self, request_iterator: AsyncIterator[bytes], context: Any
    ) -> AsyncIterator[bytes | service_pb2.ModelStreamInferResponse]:
        """Up to ``stream_window`` requests of one stream run concurrently.

        A plain model's responses go out in the order their requests arrived, as Triton's
        do; a decoupled model's go out as the model sends them. Tasks start in arrival order,
        so a scheduler that queues a request before its first await (as the core's do) also
        sees the stream's requests in order.
        """
        if self.gate.closed:
            self.gate.refused()
            await context.abort(grpc.StatusCode.UNAVAILABLE, SHUTTING_DOWN)
        stream = _Stream(self, self._stream_window)
        reader = asyncio.create_task(stream.read(request_iterator))
        stream.reader = reader
        self._streams.add(stream)
        try:
            while (outgoing := await stream.out.get()) is not None:
                if isinstance(outgoing, asyncio.Task):
                    response = await outgoing
                    stream.window.release()
                    yield response
                else:
                    yield outgoing
                stream.backlog.release()  # written: gRPC asks for the next once it has sent it
            await reader  # surfaces a broken request stream as the call's error
        finally:
            self._streams.discard(stream)
            reader.cancel()
            stream.cancel()

    async def _stream_one(
        self, decoded: InferenceRequest
    ) -> bytes | service_pb2.ModelStreamInferResponse:
        """One plain request of a stream (decoded on arrival, see :meth:`_Stream._start`):
        its response, or its error as a response."""
        memory = self._core.shared_memory
        started = time.perf_counter()
        status = "OK"
        try:
            shared = memory.output_targets(decoded.outputs)
            result = await self._core.infer(decoded)
            return encode_stream_response(result, _FINAL_TRUE, shared)
        except HeadraceError as exc:
            status = grpc_status(exc).name
            return _stream_error(decoded, exc.message)
        except Exception as exc:
            status = "INTERNAL"
            _log.exception("gRPC ModelStreamInfer request failed")
            return _stream_error(decoded, f"internal error: {type(exc).__name__}: {exc}")
        finally:
            if self._core.access_log is not None:
                self._core.access_log.record(
                    "grpc", "ModelStreamInfer", decoded.model_name, status, started
                )

    def _stream_refusal(
        self, data: bytes, exc: BaseException
    ) -> service_pb2.ModelStreamInferResponse:
        """A stream request that could not be decoded, answered as an error response that
        names its model and id where its header can be read."""
        try:
            message, _ = split_infer_request(data)
        except Exception:
            message = service_pb2.ModelInferRequest()
        if isinstance(exc, HeadraceError):
            status, text = grpc_status(exc).name, exc.message
        else:
            status, text = "INTERNAL", _error_text(exc)
            _log.error("gRPC ModelStreamInfer request failed", exc_info=exc)
        if self._core.access_log is not None:
            self._core.access_log.record(
                "grpc", "ModelStreamInfer", message.model_name, status, time.perf_counter()
            )
        return _stream_error(message, text)

    async def _stream_decoupled(
        self,
        message: service_pb2.ModelInferRequest,
        decoded: InferenceRequest,
        stream: _Stream,
    ) -> None:
        """One decoupled request of a stream: each response onto its ``out`` as it is sent.

        Each response the model sent holds one place in the stream's backlog; it passes to
        what goes out (one more for an error followed by an empty final), or back.
        """
        empty_final = _wants_empty_final(message)
        memory = self._core.shared_memory
        started = time.perf_counter()
        status = "OK"
        backlog = stream.backlog
        try:
            shared = memory.output_targets(decoded.outputs)
            async for sent in self._core.stream(decoded, backlog):
                if sent.error is not None:
                    stream.out.put_nowait(_stream_error(message, _error_text(sent.error)))
                    if sent.final and empty_final:
                        stream.put_extra(_empty_final(message))
                elif sent.response is not None:
                    flag = _FINAL_TRUE if sent.final else _FINAL_FALSE
                    stream.out.put_nowait(encode_stream_response(sent.response, flag, shared))
                elif empty_final:
                    stream.out.put_nowait(_empty_final(message))
                else:
                    backlog.release()  # a bare final flag the client did not ask to see
        except HeadraceError as exc:
            status = grpc_status(exc).name
            stream.put_extra(_stream_error(message, exc.message))
        except Exception as exc:
            status = "INTERNAL"
            _log.exception("gRPC ModelStreamInfer request failed")
            stream.put_extra(_stream_error(message, f"internal error: {type(exc).__name__}: {exc}"))
        finally:
            if self._core.access_log is not None:
                self._core.access_log.record(
                    "grpc", "ModelStreamInfer", message.model_name, status, started
                )

    # --- model repository ------------------------------------------------------------------

    @_rpc
    async def RepositoryIndex(
        self, request: Any, context: Any
    ) -> service_pb2.RepositoryIndexResponse:
        return repository_index_response(self._core.repository_index(request.ready))

    @_rpc
    async def RepositoryModelLoad(
        self, request: Any, context: Any
    ) -> service_pb2.RepositoryModelLoadResponse:
        name = request.model_name
        config: str | None = None
        files: dict[str, bytes] = {}
        for key, param in request.parameters.items():
            value = parameter_value(param)
            if key == "config" and isinstance(value, str):
                config = value
            elif key.startswith("file:") and isinstance(value, bytes):
                files[key] = value
            else:
                raise InvalidInput(
                    f"load parameter '{key}' of model '{name}' is not understood (got "
                    f"{type(value).__name__}); expected 'config' as a string or "
                    "'file:<path>' as bytes"
                )
        if files and config is None:
            raise InvalidInput(
                f"loading model '{name}' from files needs the 'config' parameter too"
            )
        await self._core.load_model(name, config, files or None)
        return service_pb2.RepositoryModelLoadResponse()

    @_rpc
    async def RepositoryModelUnload(
        self, request: Any, context: Any
    ) -> service_pb2.RepositoryModelUnloadResponse:
        dependents = False
        if "unload_dependents" in request.parameters:
            value = parameter_value(request.parameters["unload_dependents"])
            if not isinstance(value, bool):
                raise InvalidInput(f"Unable to parse 'unload_dependents': got {value!r}")
            dependents = value
        await self._core.unload_model(request.model_name, unload_dependents=dependents)
        return service_pb2.RepositoryModelUnloadResponse()

    # --- shared memory (the core's registry holds the regions) --------------------------------

    @_rpc
    async def SystemSharedMemoryStatus(
        self, request: Any, context: Any
    ) -> service_pb2.SystemSharedMemoryStatusResponse:
        return system_status_response(self._core.shared_memory.status("system", request.name))

    @_rpc
    async def SystemSharedMemoryRegister(
        self, request: Any, context: Any
    ) -> service_pb2.SystemSharedMemoryRegisterResponse:
        self._core.shared_memory.register_system(
            request.name, request.key, request.offset, request.byte_size
        )
        return service_pb2.SystemSharedMemoryRegisterResponse()

    @_rpc
    async def SystemSharedMemoryUnregister(
        self, request: Any, context: Any
    ) -> service_pb2.SystemSharedMemoryUnregisterResponse:
        self._core.shared_memory.unregister("system", request.name)
        return service_pb2.SystemSharedMemoryUnregisterResponse()

    @_rpc
    async def CudaSharedMemoryStatus(
        self, request: Any, context: Any
    ) -> service_pb2.CudaSharedMemoryStatusResponse:
        return cuda_status_response(self._core.shared_memory.status("cuda", request.name))

    @_rpc
    async def CudaSharedMemoryRegister(
        self, request: Any, context: Any
    ) -> service_pb2.CudaSharedMemoryRegisterResponse:
        self._core.shared_memory.register_cuda(
            request.name, request.raw_handle, request.device_id, request.byte_size
        )
        return service_pb2.CudaSharedMemoryRegisterResponse()

    @_rpc
    async def CudaSharedMemoryUnregister(
        self, request: Any, context: Any
    ) -> service_pb2.CudaSharedMemoryUnregisterResponse:
        self._core.shared_memory.unregister("cuda", request.name)
        return service_pb2.CudaSharedMemoryUnregisterResponse()

    # --- log and trace settings (Triton's LogSettings and TraceSetting RPCs) ----------------

    @_rpc
    async def LogSettings(self, request: Any, context: Any) -> service_pb2.LogSettingsResponse:
        changes = {key: _log_value(value) for key, value in request.settings.items()}
        control = self._core.log_control
        settings = control.update(changes) if changes else control.settings
        response = service_pb2.LogSettingsResponse()
        for key, value in settings.as_json().items():
            field = response.settings[key]
            if isinstance(value, bool):
                field.bool_param = value
            elif isinstance(value, int):
                field.uint32_param = value
            else:
                field.string_param = value
        return response

    @_rpc
    async def TraceSetting(self, request: Any, context: Any) -> service_pb2.TraceSettingResponse:
        tracing = self._core.tracing
        changes = {key: list(value.value) or None for key, value in request.settings.items()}
        if changes:
            settings = tracing.update(changes, request.model_name)
        else:
            settings = tracing.settings(request.model_name)
        response = service_pb2.TraceSettingResponse()
        for key, value in settings.as_json().items():
            response.settings[key].value.extend(value if isinstance(value, list) else [value])
        return response


class _Stream:
    """One ``ModelStreamInfer`` call: reads requests, runs them, queues what goes out on ``out``.

    A plain request puts its task on ``out`` when it arrives, so the writer awaits the tasks
    in arrival order, as Triton answers them; a decoupled request puts each response on
    ``out`` as the model sends it (behind whatever plain requests came first). ``out`` ends
    with None once the request stream has ended and every decoupled request is done.

    Everything on ``out`` but the None holds one place in ``backlog``, which the writer gives
    back once it has written it; the reader waits for room before it reads the next request,
    so ``out`` holds about ``backlog.limit`` items at most (plus one per request in flight).
    """

    def __init__(self, servicer: _Servicer, window: int) -> None:
        self._servicer = servicer
        self.window = asyncio.Semaphore(window)
        self.backlog = servicer._core.stream_backlog()
        self.out: asyncio.Queue[_Outgoing | None] = asyncio.Queue()
        self._tasks: set[asyncio.Task[Any]] = set()
        self.reader: asyncio.Task[None] | None = None
        self._closing = False

    async def read(self, request_iterator: AsyncIterator[bytes]) -> None:
        requests = aiter(request_iterator)
        try:
            window, backlog = self.window, self.backlog
            while True:
                await window.acquire()
                if backlog.full:  # a client that does not read sends no more
                    await backlog.room()
                data = await anext(requests, None)
                if data is None:
                    window.release()
                    break
                self._start(data)
        except asyncio.CancelledError:
            if not self._closing:
                raise
            # the server is stopping: read no more, answer what was read, end the stream
        finally:
            if self._tasks:
                await asyncio.gather(*self._tasks, return_exceptions=True)
            self.out.put_nowait(None)

    def put_extra(self, outgoing: _Outgoing) -> None:
        """Queue something that holds no place in the backlog yet (the door's own answers)."""
        self.backlog.add()
        self.out.put_nowait(outgoing)

    def _start(self, data: bytes) -> None:
        """Decode the request on arrival, with the unary door's memo of request headers (a
        stream repeats its header request after request), and start its task."""
        servicer = self._servicer
        try:
            decoded = servicer._decoder.decode(data)
            decoupled = _is_decoupled(servicer._core, decoded)
            if decoupled:  # its parameters (the empty final response) and ids are read there
                message, _ = split_infer_request(data)
        except Exception as exc:
            self.put_extra(servicer._stream_refusal(data, exc))
            self.window.release()
            return
        if decoupled:
            task = asyncio.create_task(servicer._stream_decoupled(message, decoded, self))
            self._tasks.add(task)
            task.add_done_callback(self._finished)
        else:
            self.put_extra(asyncio.create_task(servicer._stream_one(decoded)))

    def _finished(self, task: asyncio.Task[Any]) -> None:
        self._tasks.discard(task)
        self.window.release()

    def stop_reading(self) -> None:
        """End the stream once the requests read so far are answered (server stopping)."""
        if not self._closing and self.reader is not None:
            self._closing = True
            self.reader.cancel()

    def cancel(self) -> None:
        self.backlog.close()
        for task in list(self._tasks):
            task.cancel()
        while not self.out.empty():
            leftover = self.out.get_nowait()
            if isinstance(leftover, asyncio.Task):
                leftover.cancel()


_Response: TypeAlias = "bytes | service_pb2.ModelStreamInferResponse"
_Outgoing: TypeAlias = "_Response | asyncio.Task[_Response]"
"""What a stream's writer takes next: a response, or a plain request's task to await."""


def _log_value(value: Any) -> bool | int | str | None:
    """A ``LogSettingsRequest`` value as plain Python; None when no field is set."""
    kind = value.WhichOneof("parameter_choice")
    return None if kind is None else getattr(value, kind)


def _is_decoupled(core: InferenceServer, request: InferenceRequest) -> bool:
    try:
        return core.is_decoupled(request.model_name, request.model_version)
    except HeadraceError:
        return False  # the plain path reports the unknown model


def _wants_empty_final(message: service_pb2.ModelInferRequest) -> bool:
    return _FINAL_FLAG in message.parameters and bool(
        parameter_value(message.parameters[_FINAL_FLAG])
    )


def _empty_final(message: service_pb2.ModelInferRequest) -> service_pb2.ModelStreamInferResponse:
    """The empty response that carries a bare final flag (when the client asked for it)."""
    response = service_pb2.ModelStreamInferResponse(
        infer_response=service_pb2.ModelInferResponse(
            model_name=message.model_name, model_version=message.model_version, id=message.id
        )
    )
    response.infer_response.parameters["triton_final_response"].bool_param = True
    return response


def _error_text(error: BaseException) -> str:
    if isinstance(error, HeadraceError):
        return error.message
    return f"internal error: {type(error).__name__}: {error}"


def _stream_error(
    message: service_pb2.ModelInferRequest | InferenceRequest, text: str
) -> service_pb2.ModelStreamInferResponse:
    """A failed stream request: the error, plus the request's id so clients can match it."""
    return service_pb2.ModelStreamInferResponse(
        error_message=text,
        infer_response=service_pb2.ModelInferResponse(
            model_name=message.model_name, model_version=message.model_version, id=message.id
        ),
    )
