"""Triton's request parameters, as both frontends read them.

A few keys are the protocol's own (sequence, priority, timeout, binary output); keys starting
with ``triton_`` are reserved; everything else passes through to the model.
"""

from __future__ import annotations

from typing import Any

from headrace.errors import InvalidInput, brief

__all__ = ["RESERVED_PARAMETERS", "check_passthrough_key", "reserved_option"]

RESERVED_PARAMETERS = frozenset(
    {"sequence_id", "sequence_start", "sequence_end", "priority", "timeout", "binary_data_output"}
)


def reserved_option(options: dict[str, Any], key: str, value: Any) -> None:
    """Validate one reserved parameter and store it under its InferenceRequest field name."""
    if key == "sequence_id":
        if not isinstance(value, int | str) or isinstance(value, bool):
            raise InvalidInput(f"Unable to parse 'sequence_id': got {brief(value)}")
        options["sequence_id"] = value
    elif key in ("priority", "timeout"):
        if not isinstance(value, int) or isinstance(value, bool) or value < 0:
            raise InvalidInput(f"Unable to parse '{key}': got {brief(value)}")
        options["priority" if key == "priority" else "timeout_us"] = value
    elif not isinstance(value, bool):
        raise InvalidInput(f"Unable to parse '{key}': expected a bool, got {brief(value)}")
    else:
        options[key] = value


def check_passthrough_key(key: str) -> None:
    """Refuse the ``triton_`` prefix, which Triton keeps for itself."""
    if key.startswith("triton_"):
        raise InvalidInput(
            f"parameter '{key}': keys starting with 'triton_' are reserved for Triton "
            "usage and should not be specified."
        )
