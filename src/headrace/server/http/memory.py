"""The JSON of Triton's shared memory endpoints (``v2/systemsharedmemory/…``,
``v2/cudasharedmemory/…``): register bodies in, status lists out.

Register bodies are ``{"key", "offset", "byte_size"}`` for a system region and
``{"raw_handle": {"b64": …}, "device_id", "byte_size"}`` for a CUDA one; ``offset`` and
``device_id`` default to 0. The regions themselves are the core's registry's.
"""

from __future__ import annotations

import base64
import binascii
from collections.abc import Iterable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from headrace.errors import InvalidInput, brief

if TYPE_CHECKING:
    from headrace.server.memory import RegionStatus

__all__ = ["CudaRegistration", "SystemRegistration", "region_status_json"]


@dataclass(frozen=True)
class SystemRegistration:
    key: str
    offset: int
    byte_size: int

    @classmethod
    def from_json(cls, body: dict[str, Any]) -> SystemRegistration:
        key = body.get("key")
        if not isinstance(key, str):
            raise InvalidInput("Shared memory register request has no 'key' field")
        return cls(key, _count(body, "offset", 0), _count(body, "byte_size"))


@dataclass(frozen=True)
class CudaRegistration:
    raw_handle: bytes
    device_id: int
    byte_size: int

    @classmethod
    def from_json(cls, body: dict[str, Any]) -> CudaRegistration:
        if "raw_handle" not in body:
            raise InvalidInput("Shared memory register request has no 'raw_handle' field")
        handle = body["raw_handle"]
        encoded = handle.get("b64") if isinstance(handle, dict) else None
        if not isinstance(encoded, str):
            raise InvalidInput(
                "'raw_handle' must be a JSON object {\"b64\": …} holding a base64 encoded "
                f"cudaIpcMemHandle_t, got {brief(handle)}"
            )
        try:
            raw = base64.b64decode(encoded, validate=True)
        except (binascii.Error, ValueError) as exc:
            raise InvalidInput(
                f"'raw_handle' must be a valid base64 encoded cudaIpcMemHandle_t: {exc}"
            ) from exc
        return cls(raw, _count(body, "device_id", 0), _count(body, "byte_size"))


def _count(body: dict[str, Any], key: str, default: int | None = None) -> int:
    value = body.get(key, default)
    if value is None:
        raise InvalidInput(f"Shared memory register request has no '{key}' field")
    if not isinstance(value, int) or isinstance(value, bool) or value < 0:
        raise InvalidInput(
            f"Unable to parse '{key}': expected a non-negative integer, got {brief(value)}"
        )
    return value


def region_status_json(regions: Iterable[RegionStatus]) -> list[dict[str, Any]]:
    """Triton's status list: name, key, offset, byte_size (system) or name, device_id,
    byte_size (CUDA)."""
    out: list[dict[str, Any]] = []
    for r in regions:
        if r.kind == "system":
            out.append({"name": r.name, "key": r.key, "offset": r.offset, "byte_size": r.byte_size})
        else:
            out.append({"name": r.name, "device_id": r.device_id, "byte_size": r.byte_size})
    return out
