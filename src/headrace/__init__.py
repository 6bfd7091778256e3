"""headrace: keep accelerators fed.

Serve a trained model over Triton's protocol (``headrace serve``), run it over archival data
(``headrace run``), or measure it (``headrace bench``), all on one engine.
"""

from headrace.errors import HeadraceError
from headrace.types import DataType, InferenceRequest, InferenceResponse, TensorSpec

__version__ = "0.1.0"

__all__ = [
    "DataType",
    "HeadraceError",
    "InferenceRequest",
    "InferenceResponse",
    "TensorSpec",
    "__version__",
]
