"""HTTP body compression for the REST frontend: bounded request inflation, optional response
deflation, each as Triton does it (``gzip`` and ``deflate``; anything else is refused).

Inflation is capped at the frontend's body limit, so a small compressed body cannot expand
into an unbounded one.
"""

from __future__ import annotations

import gzip
import zlib

from headrace.errors import InvalidInput, Unsupported

__all__ = ["accepted_encoding", "compress", "decompress"]

_WBITS = {"gzip": 16 + zlib.MAX_WBITS, "deflate": zlib.MAX_WBITS}


def decompress(body: bytes, encoding: str, limit: int) -> bytes:
    """Inflate a request body sent with ``Content-Encoding: encoding``, at most ``limit`` bytes."""
    encoding = encoding.strip().lower()
    if encoding in ("", "identity"):
        return body
    wbits = _WBITS.get(encoding)
    if wbits is None:
        raise Unsupported(
            f"Unsupported compression type {encoding!r}; supported: gzip, deflate, identity"
        )
    inflater = zlib.decompressobj(wbits)
    try:
        out = inflater.decompress(body, limit + 1)
    except zlib.error as exc:
        raise InvalidInput(f"failed to decompress the {encoding} request body: {exc}") from exc
    if len(out) > limit:
        raise InvalidInput(
            f"decompressed request body exceeds the limit of {limit} bytes (--max-body-bytes)"
        )
    if not inflater.eof:
        raise InvalidInput(f"truncated {encoding} request body: the stream does not end")
    return out


def accepted_encoding(accept: str | None) -> str:
    """The response encoding to use for an ``Accept-Encoding`` header, by highest q-value."""
    if not accept:
        return "identity"
    best, best_q = "identity", 0.0
    for part in accept.split(","):
        name, _, params = part.strip().partition(";")
        name = name.strip().lower()
        q = 1.0
        params = params.strip()
        if params.startswith("q="):
            try:
                q = float(params[2:])
            except ValueError:
                continue
        if name in ("identity", "gzip", "deflate") and q > best_q:
            best, best_q = name, q
    return best


def compress(body: bytes, encoding: str) -> bytes:
    """Deflate a response body with ``encoding`` (``gzip`` or ``deflate``)."""
    if encoding == "gzip":
        return gzip.compress(body, compresslevel=1)
    if encoding == "deflate":
        return zlib.compress(body, 1)
    return body
