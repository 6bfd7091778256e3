"""How a request points at shared memory: the three tensor parameters Triton defines.

An input or a requested output whose parameters carry ``shared_memory_region`` lives in that
registered region, ``shared_memory_offset`` bytes in (default 0), ``shared_memory_byte_size``
bytes long. Both doors hand their parameters here as plain Python values.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from headrace.errors import InvalidInput, brief

__all__ = ["SHARED_MEMORY_PARAMETERS", "SharedMemoryRef"]

SHARED_MEMORY_PARAMETERS = frozenset(
    {"shared_memory_region", "shared_memory_offset", "shared_memory_byte_size"}
)


@dataclass(frozen=True)
class SharedMemoryRef:
    """``byte_size`` bytes at ``offset`` of the region registered as ``region``."""

    region: str
    offset: int
    byte_size: int

    @classmethod
    def from_parameters(cls, params: Mapping[str, Any]) -> SharedMemoryRef | None:
        """The reference a tensor's parameters make, or None when they name no region.

        Raises :class:`InvalidInput` naming the parameter when a value has the wrong type.
        """
        if "shared_memory_region" not in params:
            return None
        region = params["shared_memory_region"]
        if not isinstance(region, str):
            raise InvalidInput(
                f"Unable to parse 'shared_memory_region': expected a string, got {brief(region)}"
            )
        return cls(
            region,
            _non_negative(params, "shared_memory_offset"),
            _non_negative(params, "shared_memory_byte_size"),
        )


def _non_negative(params: Mapping[str, Any], key: str) -> int:
    value = params.get(key, 0)
    if not isinstance(value, int) or isinstance(value, bool) or value < 0:
        raise InvalidInput(
            f"Unable to parse '{key}': expected a non-negative integer, got {brief(value)}"
        )
    return value
