"""Flag values as ``tritonserver`` reads them, shared by serve's flag groups."""

from __future__ import annotations

import argparse

__all__ = ["triton_bool"]


def triton_bool(text: str) -> bool:
    """A boolean flag value as tritonserver reads one: true/false, on/off, 1/0."""
    value = text.strip().lower()
    if value in ("true", "on", "1"):
        return True
    if value in ("false", "off", "0"):
        return False
    raise argparse.ArgumentTypeError(f"expected true or false, got {text!r}")
