"""The KServe v2 HTTP endpoints, framework-neutral: request in, response bytes and headers out.

Each handler takes an :class:`HttpCall` (path parameters, headers, a way to read the body)
and returns an :class:`HttpResponse` or, for ``generate_stream``, a :class:`StreamedResponse`;
errors are raised as :class:`~headrace.errors.HeadraceError` and become bodies in one place,
:func:`error_response`. The HTTP servers (:mod:`headrace.server.http.frontend` on aiohttp,
:mod:`headrace.server.http.granian_frontend` on granian) only route, adapt and write, so both
answer every request with the same status, headers and bytes.

Triton's conventions kept here: error bodies are ``{"error": "..."}``; a server or model that
is not ready answers 400 with no body. Model control is shielded from a client that goes
away and always runs to its end.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import logging
from collections.abc import AsyncGenerator, Awaitable, Callable, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Literal, Protocol

from headrace.errors import HeadraceError, InvalidInput, brief
from headrace.server.http.body import accepted_encoding, compress, decompress
from headrace.server.http.codec import (
    DecodedRequest,
    decode_infer_request,
    decode_raw_request,
    encode_infer_response,
    json_dumps,
    json_loads,
)
from headrace.server.http.decoder import InferBodyDecoder
from headrace.server.http.generate import (
    RESPONSE_ERROR_STATUS,
    GenerateChunk,
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
from headrace.server.http.options import DEFAULT_MAX_BODY_BYTES
from headrace.server.http.status import http_status
from headrace.server.tracing import trace_changes_from_json

if TYPE_CHECKING:
    from headrace.server.core import InferenceServer
    from headrace.types import InferenceRequest

__all__ = [
    "BINARY",
    "DEFAULT_MAX_BODY_BYTES",
    "HEADER_LENGTH",
    "JSON",
    "HttpCall",
    "HttpHandlers",
    "HttpResponse",
    "StreamedResponse",
    "error_json",
    "error_response",
    "too_large",
]

JSON = "application/json"
BINARY = "application/octet-stream"
HEADER_LENGTH = "Inference-Header-Content-Length"
_HEADER_LENGTH_KEY = HEADER_LENGTH.lower()
_log = logging.getLogger(__name__)


class Headers(Protocol):
    """Request headers; ``get`` takes a lower-case name (aiohttp's and granian's both do)."""

    def get(self, key: str, /) -> str | None: ...


@dataclass(frozen=True, slots=True)
class HttpCall:
    """One request as the handlers see it; the server adapter fills it in.

    ``read`` returns the raw body (still compressed) and raises :class:`InvalidInput` with
    :func:`too_large`'s words past the body limit; ``path`` tells the shared memory kinds apart.
    """

    path: str
    params: Mapping[str, str]
    headers: Headers
    read: Callable[[], Awaitable[bytes]]


@dataclass(frozen=True, slots=True)
class HttpResponse:
    """A whole response: no ``content_type`` leaves the server's default."""

    status: int = 200
    body: bytes = b""
    content_type: str | None = None
    headers: tuple[tuple[str, str], ...] = ()


@dataclass(frozen=True, slots=True)
class StreamedResponse:
    """A response sent as its ``chunks`` come; the writer closes ``chunks`` when it stops."""

    status: int
    content_type: str
    chunks: AsyncGenerator[bytes, None]


def _json(body: Any, status: int = 200) -> HttpResponse:
    return HttpResponse(status, json_dumps(body), JSON)


def error_json(status: int, message: str) -> HttpResponse:
    """Triton's error body, ``{"error": message}``."""
    return _json({"error": message}, status)


def error_response(exc: BaseException, what: str = "") -> HttpResponse:
    """The one place errors become responses: HeadraceError through the status table, anything
    else a logged 500 (``what`` names the request in the log)."""
    if isinstance(exc, HeadraceError):
        return error_json(http_status(exc), exc.message)
    _log.error("HTTP %s failed", what, exc_info=exc)
    return error_json(500, f"internal error: {type(exc).__name__}: {exc}")


def too_large(limit: int, size: int | None) -> str:
    """The words for a body over ``--max-body-bytes``, whichever server noticed it."""
    seen = f"of {size} bytes " if size is not None else ""
    return f"request body {seen}exceeds the limit of {limit} bytes (--max-body-bytes)"


_EMPTY_JSON = HttpResponse(200, b"", JSON)


class HttpHandlers:
    """The endpoints over one :class:`InferenceServer`, bodies bounded by ``max_body_bytes``."""

    def __init__(self, core: InferenceServer, max_body_bytes: int) -> None:
        self._core = core
        self.max_body = max_body_bytes
        self._decoder = InferBodyDecoder()

    # --- helpers ---------------------------------------------------------------------------

    async def _body(self, call: HttpCall) -> bytes:
        """The request body, inflated when compressed, bounded by ``max_body_bytes``."""
        raw = call.headers.get("content-length")
        if raw is not None:
            try:
                size = int(raw)
            except ValueError:
                size = None
            if size is not None and size > self.max_body:
                raise InvalidInput(too_large(self.max_body, size))
        body = await call.read()
        encoding = call.headers.get("content-encoding")
        if encoding:
            body = decompress(body, encoding, self.max_body)
        return body

    async def _json_body(self, call: HttpCall) -> dict[str, Any]:
        """A small JSON control body; an empty body is ``{}``."""
        body = await self._body(call)
        if not body.strip():
            return {}
        try:
            parsed = json_loads(body)
        except (ValueError, TypeError) as exc:
            raise InvalidInput(f"failed to parse the request JSON buffer: {exc}") from exc
        if not isinstance(parsed, dict):
            raise InvalidInput(f"the request JSON must be an object, got {type(parsed).__name__}")
        return parsed

    @staticmethod
    def _model(call: HttpCall) -> tuple[str, str]:
        return call.params["model"], call.params.get("version", "")

    # --- health and metadata -------------------------------------------------------------

    async def live(self, call: HttpCall) -> HttpResponse:
        return HttpResponse(200 if self._core.live() else 400)

    async def ready(self, call: HttpCall) -> HttpResponse:
        return HttpResponse(200 if self._core.ready() else 400)

    async def server_metadata(self, call: HttpCall) -> HttpResponse:
        return _json(server_metadata_json(self._core.server_metadata()))

    async def model_metadata(self, call: HttpCall) -> HttpResponse:
        return _json(model_metadata_json(self._core.model_metadata(*self._model(call))))

    async def model_ready(self, call: HttpCall) -> HttpResponse:
        if self._core.model_ready(*self._model(call)):
            return HttpResponse(200)
        return error_json(400, "Model version not ready")

    async def model_config(self, call: HttpCall) -> HttpResponse:
        from headrace.config import config_to_json

        return _json(config_to_json(self._core.model_config(*self._model(call))))

    async def statistics(self, call: HttpCall) -> HttpResponse:
        params = call.params
        stats = self._core.statistics(params.get("model", ""), params.get("version", ""))
        return _json(statistics_json(stats))

    # --- log and trace settings (Triton's v2/logging, v2/trace/setting) ---------------------

    async def log_settings(self, call: HttpCall) -> HttpResponse:
        return _json(self._core.log_control.settings.as_json())

    async def update_log_settings(self, call: HttpCall) -> HttpResponse:
        return _json(self._core.log_control.update(await self._json_body(call)).as_json())

    async def trace_settings(self, call: HttpCall) -> HttpResponse:
        return _json(self._core.tracing.settings(call.params.get("model", "")).as_json())

    async def update_trace_settings(self, call: HttpCall) -> HttpResponse:
        changes = trace_changes_from_json(await self._json_body(call))
        model = call.params.get("model", "")
        return _json(self._core.tracing.update(changes, model).as_json())

    # --- inference -----------------------------------------------------------------------

    async def infer(self, call: HttpCall) -> HttpResponse:
        model, version = self._model(call)
        body = await self._body(call)
        raw_length = call.headers.get(_HEADER_LENGTH_KEY)
        memory = self._core.shared_memory
        if raw_length is None:
            if body:
                decoded = decode_infer_request(model, version, body, None, memory)
            else:  # Triton reads an empty body without the header as a raw binary request
                decoded = self._decode_raw(model, version, body)
        else:
            try:
                header_length = int(raw_length)
            except ValueError:
                raise InvalidInput(
                    f"Unable to parse {HEADER_LENGTH}, got: {brief(raw_length)}"
                ) from None
            if header_length == 0:
                decoded = self._decode_raw(model, version, body)
            else:
                decoded = self._decoder.decode(model, version, body, header_length, memory)
        shared = memory.output_targets(decoded.request.outputs)
        result = await self._core.infer(decoded.request, endpoint="HTTP end point")
        payload, header_len = encode_infer_response(result, decoded, shared)
        headers: tuple[tuple[str, str], ...] = ()
        if header_len is not None:
            headers = ((HEADER_LENGTH, str(header_len)),)
        encoding = accepted_encoding(call.headers.get("accept-encoding"))
        if encoding != "identity":
            payload = compress(payload, encoding)
            headers += (("Content-Encoding", encoding),)
        return HttpResponse(200, payload, JSON if header_len is None else BINARY, headers)

    def _decode_raw(self, model: str, version: str, body: bytes) -> DecodedRequest:
        meta = self._core.model_metadata(model, version)
        if len(meta.inputs) != 1:
            raise InvalidInput(
                f"Raw request must only have 1 input (found 1) to be deduced but got "
                f"{len(meta.inputs)} inputs in '{model}' model configuration (a raw binary "
                f"request: {HEADER_LENGTH}: 0, or an empty body, is the data of a model's "
                "only input)"
            )
        return decode_raw_request(model, version, body, meta.inputs[0], meta.batched)

    # --- generate extension (generate.py holds the rules) ---------------------------------

    async def generate(self, call: HttpCall) -> HttpResponse:
        chunks = generate_chunks(self._core.stream(await self._generate_request(call)))
        status, body = await single_response(chunks)
        return HttpResponse(status, body, JSON)

    async def generate_stream(self, call: HttpCall) -> StreamedResponse:
        """Routing and validation errors raise before the first event, as JSON error bodies;
        the status goes out with the first event (see :mod:`~headrace.server.http.generate`)."""
        chunks = generate_chunks(self._core.stream(await self._generate_request(call)))
        try:
            first = await anext(chunks, None)
        except BaseException:
            await chunks.aclose()
            raise
        status = RESPONSE_ERROR_STATUS if first is not None and first.error else 200
        return StreamedResponse(status, "text/event-stream; charset=utf-8", _events(first, chunks))

    async def _generate_request(self, call: HttpCall) -> InferenceRequest:
        model, version = self._model(call)
        metadata = self._core.model_metadata(model, version)
        return decode_generate_request(model, version, await self._body(call), metadata)

    # --- model repository ----------------------------------------------------------------

    async def repository_index(self, call: HttpCall) -> HttpResponse:
        ready = (await self._json_body(call)).get("ready", False)
        if not isinstance(ready, bool):
            raise InvalidInput(f"Unable to parse 'ready': expected a boolean, got {brief(ready)}")
        return _json(repository_index_json(self._core.repository_index(ready)))

    async def load(self, call: HttpCall) -> HttpResponse:
        model = call.params["model"]
        params = (await self._json_body(call)).get("parameters") or {}
        if not isinstance(params, dict):
            raise InvalidInput(f"load 'parameters' must be a JSON object, got {brief(params)}")
        config: str | None = None
        files: dict[str, bytes] = {}
        for key, value in params.items():
            if not isinstance(value, str):
                raise InvalidInput(f"load parameter '{key}' must be a string, got {brief(value)}")
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
        return _EMPTY_JSON

    async def unload(self, call: HttpCall) -> HttpResponse:
        model = call.params["model"]
        params = (await self._json_body(call)).get("parameters") or {}
        if not isinstance(params, dict):
            raise InvalidInput(f"unload 'parameters' must be a JSON object, got {brief(params)}")
        dependents = params.get("unload_dependents", False)
        if not isinstance(dependents, bool):
            raise InvalidInput(f"Unable to parse 'unload_dependents': got {brief(dependents)}")
        await asyncio.shield(self._core.unload_model(model, unload_dependents=dependents))
        return _EMPTY_JSON

    # --- shared memory (the core's registry holds the regions) ------------------------------

    @staticmethod
    def _shm_kind(call: HttpCall) -> Literal["system", "cuda"]:
        return "cuda" if call.path.startswith("/v2/cuda") else "system"

    async def shm_status(self, call: HttpCall) -> HttpResponse:
        regions = self._core.shared_memory.status(
            self._shm_kind(call), call.params.get("region", "")
        )
        return _json(region_status_json(regions))

    async def shm_register(self, call: HttpCall) -> HttpResponse:
        name = call.params["region"]
        body = await self._json_body(call)
        memory = self._core.shared_memory
        if self._shm_kind(call) == "system":
            system = SystemRegistration.from_json(body)
            memory.register_system(name, system.key, system.offset, system.byte_size)
        else:
            cuda = CudaRegistration.from_json(body)
            memory.register_cuda(name, cuda.raw_handle, cuda.device_id, cuda.byte_size)
        return _EMPTY_JSON

    async def shm_unregister(self, call: HttpCall) -> HttpResponse:
        self._core.shared_memory.unregister(self._shm_kind(call), call.params.get("region", ""))
        return _EMPTY_JSON


async def _events(
    first: GenerateChunk | None, chunks: AsyncGenerator[GenerateChunk, None]
) -> AsyncGenerator[bytes, None]:
    """The server-sent events of a stream; closing this closes ``chunks``, which cancels the
    request when the client went away before its end."""
    try:
        if first is not None:
            yield sse_event(first)
            async for chunk in chunks:
                yield sse_event(chunk)
    finally:
        await chunks.aclose()
