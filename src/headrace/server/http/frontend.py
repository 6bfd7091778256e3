"""The HTTP/REST frontend: KServe v2 as Triton serves it, on aiohttp.

A thin door: each handler parses the wire format (:mod:`headrace.server.http.codec`,
:mod:`headrace.server.http.messages`, :mod:`headrace.server.http.generate`), calls one method
of the :class:`~headrace.server.core.InferenceServer`, and errors are mapped once, in
:func:`_error_middleware`, through :mod:`headrace.server.http.status`. Unmodified
``tritonclient.http`` and ``perf_analyzer`` talk to it.

Triton's conventions kept here: error bodies are ``{"error": "..."}``; a server or model that
is not ready answers 400 with no body; an unknown route is 404 and a wrong method 405.

A client that disconnects cancels its handler (aiohttp's ``handler_cancellation``), so the
core withdraws its request: a streamed generate stops its model's responses, an infer leaves
the queue. Model control is shielded from that and always runs to its end.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import logging
from typing import TYPE_CHECKING, Any, Literal

from headrace.errors import HeadraceError, InvalidInput, require
from headrace.server.http.body import accepted_encoding, compress, decompress
from headrace.server.http.codec import (
    DecodedRequest,
    decode_infer_request,
    decode_raw_request,
    encode_infer_response,
    json_dumps,
    json_loads,
)
from headrace.server.http.generate import (
    RESPONSE_ERROR_STATUS,
    decode_generate_request,
    generate_chunks,
    single_response,
    sse_event,
)
from headrace.server.http.memory import (
    CudaRegistration,
    SystemRegistration,
    region_status_json,
)
from headrace.server.http.messages import (
    model_metadata_json,
    repository_index_json,
    server_metadata_json,
    statistics_json,
)
from headrace.server.http.status import http_status

if TYPE_CHECKING:
    from aiohttp import web

    from headrace.server.core import InferenceServer
    from headrace.types import InferenceRequest

__all__ = ["DEFAULT_MAX_BODY_BYTES", "HttpFrontend"]

DEFAULT_MAX_BODY_BYTES = 64 * 1024 * 1024
"""Triton's default ``--http-max-input-size``."""

_log = logging.getLogger(__name__)
_JSON = "application/json"
_BINARY = "application/octet-stream"
_HEADER_LENGTH = "Inference-Header-Content-Length"


class HttpFrontend:
    """Serves one :class:`InferenceServer` over HTTP/REST on ``host:port`` (0 picks a port)."""

    def __init__(
        self,
        core: InferenceServer,
        host: str = "127.0.0.1",
        port: int = 8000,
        *,
        max_body_bytes: int = DEFAULT_MAX_BODY_BYTES,
        shutdown_timeout_s: float = 30.0,
        reuse_port: bool = False,
    ) -> None:
        """``reuse_port``: as for :class:`~headrace.server.grpc.GrpcFrontend`."""
        if max_body_bytes <= 0:
            raise ValueError(f"max_body_bytes must be positive, got {max_body_bytes}")
        self._web = require("aiohttp.web", "serve")
        self._core = core
        self._host = host
        self._requested_port = port
        self._max_body = max_body_bytes
        self._shutdown_timeout = shutdown_timeout_s
        self._reuse_port = reuse_port
        self._runner: web.AppRunner | None = None
        self._port: int | None = None

    @property
    def port(self) -> int:
        """The bound port; only known after :meth:`start`."""
        if self._port is None:
            raise RuntimeError("HttpFrontend.port is unknown until start() has bound the socket")
        return self._port

    @property
    def url(self) -> str:
        """``host:port`` as tritonclient takes it."""
        return f"{self._host}:{self.port}"

    async def start(self) -> None:
        """Bind and start serving; returns once the socket accepts connections."""
        if self._runner is not None:
            raise RuntimeError("HttpFrontend is already started")
        web = self._web
        app = web.Application(
            middlewares=[self._make_error_middleware()], client_max_size=self._max_body
        )
        self._add_routes(app)
        # Bodies are inflated here, bounded by max_body_bytes, not by the HTTP parser.
        runner = web.AppRunner(
            app,
            auto_decompress=False,
            access_log=None,
            shutdown_timeout=self._shutdown_timeout,
            handler_cancellation=True,
        )
        await runner.setup()
        site = web.TCPSite(
            runner,
            self._host,
            self._requested_port,
            reuse_address=True,
            reuse_port=self._reuse_port or None,
        )
        try:
            await site.start()
        except BaseException:
            await runner.cleanup()
            raise
        self._runner = runner
        self._port = int(runner.addresses[0][1])

    async def stop(self) -> None:
        """Stop accepting connections, let in-flight requests finish, then close."""
        runner, self._runner = self._runner, None
        if runner is not None:
            await runner.cleanup()

    # --- routing -------------------------------------------------------------------------

    def _add_routes(self, app: web.Application) -> None:
        get, post = app.router.add_get, app.router.add_post
        # aiohttp tries the resources under a prefix in order: infer, the hot path, first.
        for base in ("/v2/models/{model}", "/v2/models/{model}/versions/{version:[0-9]+}"):
            post(base + "/infer", self._infer)
            post(base + "/generate", self._generate)
            post(base + "/generate_stream", self._generate_stream)
        get("/v2", self._server_metadata, allow_head=False)
        get("/v2/health/live", self._live, allow_head=False)
        get("/v2/health/ready", self._ready, allow_head=False)
        get("/v2/models/stats", self._stats, allow_head=False)
        post("/v2/repository/index", self._repository_index)
        post("/v2/repository/models/{model}/load", self._load)
        post("/v2/repository/models/{model}/unload", self._unload)
        for kind in ("system", "cuda"):
            base = f"/v2/{kind}sharedmemory"
            get(base + "/status", self._shm_status, allow_head=False)
            get(base + "/region/{region}/status", self._shm_status, allow_head=False)
            post(base + "/region/{region}/register", self._shm_register)
            post(base + "/region/{region}/unregister", self._shm_unregister)
            post(base + "/unregister", self._shm_unregister)
        for base in ("/v2/models/{model}", "/v2/models/{model}/versions/{version:[0-9]+}"):
            get(base, self._model_metadata, allow_head=False)
            get(base + "/ready", self._model_ready, allow_head=False)
            get(base + "/config", self._model_config, allow_head=False)
            get(base + "/stats", self._stats, allow_head=False)

    def _make_error_middleware(self) -> Any:
        """The one place errors become responses: HeadraceError through the status table."""
        web = self._web
        payload_error = require("aiohttp.web_protocol", "serve").RequestPayloadError

        @web.middleware
        async def errors(request: Any, handler: Any) -> Any:
            try:
                return await handler(request)
            except HeadraceError as exc:
                return self._error(http_status(exc), exc.message)
            except web.HTTPException as exc:
                if exc.status < 400:
                    raise
                if exc.status == 413:
                    return self._error(400, self._too_large(request.content_length))
                return self._error(exc.status, exc.reason)
            except (ConnectionError, payload_error):
                raise  # the client went away mid-body; nobody to answer
            except Exception as exc:
                _log.exception("HTTP %s %s failed", request.method, request.path)
                return self._error(500, f"internal error: {type(exc).__name__}: {exc}")

        return errors

    # --- helpers ---------------------------------------------------------------------------

    def _json(self, body: Any, status: int = 200) -> web.Response:
        return self._web.Response(body=json_dumps(body), status=status, content_type=_JSON)

    def _error(self, status: int, message: str) -> web.Response:
        return self._json({"error": message}, status)

    def _too_large(self, size: int | None) -> str:
        seen = f"of {size} bytes " if size is not None else ""
        return (
            f"request body {seen}exceeds the limit of {self._max_body} bytes "
            "(HttpFrontend max_body_bytes)"
        )

    async def _body(self, request: web.Request) -> bytes:
        """The request body, inflated when compressed, bounded by ``max_body_bytes``."""
        size = request.content_length
        if size is not None and size > self._max_body:
            raise InvalidInput(self._too_large(size))
        body = await request.read()
        encoding = request.headers.get("Content-Encoding")
        if encoding:
            body = decompress(body, encoding, self._max_body)
        return body

    async def _json_body(self, request: web.Request) -> dict[str, Any]:
        """A small JSON control body; an empty body is ``{}``."""
        body = await self._body(request)
        if not body.strip():
            return {}
        try:
            parsed = json_loads(body)
        except (ValueError, TypeError) as exc:
            raise InvalidInput(f"failed to parse the request JSON: {exc}") from exc
        if not isinstance(parsed, dict):
            raise InvalidInput(f"the request JSON must be an object, got {type(parsed).__name__}")
        return parsed

    @staticmethod
    def _model(request: web.Request) -> tuple[str, str]:
        info = request.match_info
        return info["model"], info.get("version", "")

    # --- health and metadata -------------------------------------------------------------

    async def _live(self, request: web.Request) -> web.Response:
        return self._web.Response(status=200 if self._core.live() else 400)

    async def _ready(self, request: web.Request) -> web.Response:
        return self._web.Response(status=200 if self._core.ready() else 400)

    async def _server_metadata(self, request: web.Request) -> web.Response:
        return self._json(server_metadata_json(self._core.server_metadata()))

    async def _model_metadata(self, request: web.Request) -> web.Response:
        return self._json(model_metadata_json(self._core.model_metadata(*self._model(request))))

    async def _model_ready(self, request: web.Request) -> web.Response:
        if self._core.model_ready(*self._model(request)):
            return self._web.Response(status=200)
        return self._error(400, "Model version not ready")

    async def _model_config(self, request: web.Request) -> web.Response:
        from headrace.config import config_to_json

        return self._json(config_to_json(self._core.model_config(*self._model(request))))

    async def _stats(self, request: web.Request) -> web.Response:
        info = request.match_info
        stats = self._core.statistics(info.get("model", ""), info.get("version", ""))
        return self._json(statistics_json(stats))

    # --- inference -----------------------------------------------------------------------

    async def _infer(self, request: web.Request) -> web.Response:
        model, version = self._model(request)
        body = await self._body(request)
        raw_length = request.headers.get(_HEADER_LENGTH)
        memory = self._core.shared_memory
        if raw_length is None:
            decoded = decode_infer_request(model, version, body, None, memory)
        else:
            try:
                header_length = int(raw_length)
            except ValueError:
                raise InvalidInput(
                    f"Unable to parse {_HEADER_LENGTH}, got: {raw_length!r}"
                ) from None
            if header_length == 0:
                decoded = self._decode_raw(model, version, body)
            else:
                decoded = decode_infer_request(model, version, body, header_length, memory)
        shared = memory.output_targets(decoded.request.outputs)
        result = await self._core.infer(decoded.request, endpoint="HTTP end point")
        payload, header_len = encode_infer_response(result, decoded, shared)
        headers = {}
        if header_len is not None:
            headers[_HEADER_LENGTH] = str(header_len)
        encoding = accepted_encoding(request.headers.get("Accept-Encoding"))
        if encoding != "identity":
            payload = compress(payload, encoding)
            headers["Content-Encoding"] = encoding
        return self._web.Response(
            body=payload,
            headers=headers,
            content_type=_JSON if header_len is None else _BINARY,
        )

    def _decode_raw(self, model: str, version: str, body: bytes) -> DecodedRequest:
        meta = self._core.model_metadata(model, version)
        if len(meta.inputs) != 1:
            raise InvalidInput(
                f"raw binary request (Inference-Header-Content-Length: 0) needs a model with "
                f"exactly one input; model '{model}' has {len(meta.inputs)}"
            )
        return decode_raw_request(model, version, body, meta.inputs[0], meta.batched)

    # --- generate extension (generate.py holds the rules) ---------------------------------

    async def _generate(self, request: web.Request) -> web.Response:
        chunks = generate_chunks(self._core.stream(await self._generate_request(request)))
        status, body = await single_response(chunks)
        return self._web.Response(body=body, status=status, content_type=_JSON)

    async def _generate_stream(self, request: web.Request) -> web.StreamResponse:
        chunks = generate_chunks(self._core.stream(await self._generate_request(request)))
        try:
            first = await anext(chunks, None)  # routing and validation errors raise here
            response = self._web.StreamResponse(
                status=RESPONSE_ERROR_STATUS if first is not None and first.error else 200
            )
            response.content_type = "text/event-stream"
            response.charset = "utf-8"
            await response.prepare(request)
            if first is not None:
                await response.write(sse_event(first))
                async for chunk in chunks:
                    await response.write(sse_event(chunk))
            await response.write_eof()
            return response
        finally:
            await chunks.aclose()  # a client gone mid-stream cancels the request here

    async def _generate_request(self, request: web.Request) -> InferenceRequest:
        model, version = self._model(request)
        metadata = self._core.model_metadata(model, version)
        return decode_generate_request(model, version, await self._body(request), metadata)

    # --- model repository ----------------------------------------------------------------

    async def _repository_index(self, request: web.Request) -> web.Response:
        ready = (await self._json_body(request)).get("ready", False)
        if not isinstance(ready, bool):
            raise InvalidInput(f"Unable to parse 'ready': expected a boolean, got {ready!r}")
        return self._json(repository_index_json(self._core.repository_index(ready)))

    async def _load(self, request: web.Request) -> web.Response:
        model = request.match_info["model"]
        params = (await self._json_body(request)).get("parameters") or {}
        if not isinstance(params, dict):
            raise InvalidInput(f"load 'parameters' must be a JSON object, got {params!r}")
        config: str | None = None
        files: dict[str, bytes] = {}
        for key, value in params.items():
            if not isinstance(value, str):
                raise InvalidInput(f"load parameter '{key}' must be a string, got {value!r}")
            if key == "config":
                config = value
            elif key.startswith("file:"):
                try:
                    files[key] = base64.b64decode(value, validate=True)
                except (binascii.Error, ValueError) as exc:
                    raise InvalidInput(
                        f"load parameter '{key}' is not valid base64: {exc}"
                    ) from exc
            else:
                raise InvalidInput(
                    f"unknown load parameter '{key}'; expected 'config' or 'file:<path>'"
                )
        if files and config is None:
            raise InvalidInput(
                f"loading model '{model}' from files needs the 'config' parameter too"
            )
        await asyncio.shield(self._core.load_model(model, config, files or None))
        return self._web.Response(status=200, content_type=_JSON)

    # --- shared memory (the core's registry holds the regions) ------------------------------

    @staticmethod
    def _shm_kind(request: web.Request) -> Literal["system", "cuda"]:
        return "cuda" if request.path.startswith("/v2/cuda") else "system"

    async def _shm_status(self, request: web.Request) -> web.Response:
        regions = self._core.shared_memory.status(
            self._shm_kind(request), request.match_info.get("region", "")
        )
        return self._json(region_status_json(regions))

    async def _shm_register(self, request: web.Request) -> web.Response:
        name = request.match_info["region"]
        body = await self._json_body(request)
        memory = self._core.shared_memory
        if self._shm_kind(request) == "system":
            system = SystemRegistration.from_json(body)
            memory.register_system(name, system.key, system.offset, system.byte_size)
        else:
            cuda = CudaRegistration.from_json(body)
            memory.register_cuda(name, cuda.raw_handle, cuda.device_id, cuda.byte_size)
        return self._web.Response(status=200, content_type=_JSON)

    async def _shm_unregister(self, request: web.Request) -> web.Response:
        name = request.match_info.get("region", "")
        self._core.shared_memory.unregister(self._shm_kind(request), name)
        return self._web.Response(status=200, content_type=_JSON)

    async def _unload(self, request: web.Request) -> web.Response:
        model = request.match_info["model"]
        params = (await self._json_body(request)).get("parameters") or {}
        if not isinstance(params, dict):
            raise InvalidInput(f"unload 'parameters' must be a JSON object, got {params!r}")
        dependents = params.get("unload_dependents", False)
        if not isinstance(dependents, bool):
            raise InvalidInput(f"Unable to parse 'unload_dependents': got {dependents!r}")
        await asyncio.shield(self._core.unload_model(model, unload_dependents=dependents))
        return self._web.Response(status=200, content_type=_JSON)
