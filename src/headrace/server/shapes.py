"""The limit on the shapes a request may declare, shared by the HTTP and gRPC codecs.

A shape's element count is checked against its data elsewhere (byte sizes, element counts),
but a shape with a zero in it holds no data whatever its other dimensions, and numpy cannot
even describe an empty ``[0, 2**62]`` FP32 array (``array is too big``). Triton 2.51's python
backend dies on such shapes (its stub reports itself "not healthy"); here they are refused.
"""

from __future__ import annotations

import math

from headrace.errors import InvalidInput
from headrace.types import DataType

__all__ = ["MAX_TENSOR_BYTES", "check_shape"]

MAX_TENSOR_BYTES = 2**63 - 1
"""The most bytes a tensor's dimensions may describe (numpy's limit on 64-bit machines)."""

_OBJECT_ITEMSIZE = 8  # a BYTES element is held as a pointer to a Python object


def check_shape(name: str, shape: tuple[int, ...], datatype: DataType) -> None:
    """Refuse a shape whose non-zero dimensions multiply past :data:`MAX_TENSOR_BYTES` bytes."""
    itemsize = _OBJECT_ITEMSIZE if datatype is DataType.BYTES else datatype.numpy_dtype.itemsize
    span = math.prod(d for d in shape if d) * itemsize
    if span > MAX_TENSOR_BYTES:
        raise InvalidInput(
            f"input '{name}' has shape {list(shape)}: its dimensions multiply to {span} bytes "
            f"of {datatype.value}, past the {MAX_TENSOR_BYTES} a tensor can describe"
        )
