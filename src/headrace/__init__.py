"""headrace: keep accelerators fed.

Serve a trained model over Triton's protocol (``headrace serve``), run it over archival data
(``headrace run``), or measure it (``headrace bench``), all on one engine.
"""

from typing import Any

from headrace.errors import HeadraceError
from headrace.types import DataType, InferenceRequest, InferenceResponse, TensorSpec

__version__ = "0.1.0"

__all__ = [
    "DataType",
    "HeadraceError",
    "InferenceRequest",
    "InferenceResponse",
    "Server",
    "TensorSpec",
    "__version__",
]


def __getattr__(name: str) -> Any:
    """``headrace.Server`` is imported on first use, so ``import headrace`` stays light."""
    if name == "Server":
        from headrace.server.binding import Server

        return Server
    raise AttributeError(f"module 'headrace' has no attribute {name!r}")
