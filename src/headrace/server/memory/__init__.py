"""Triton's shared memory extensions: regions clients register, and tensors read from and
written into them instead of travelling through the socket.

The :class:`~headrace.server.memory.registry.SharedMemoryRegistry` belongs to the
protocol-neutral core; both doors parse their wire forms and call it.
"""

from headrace.server.memory import cuda
from headrace.server.memory.references import SharedMemoryRef
from headrace.server.memory.registry import OutputTarget, RegionStatus, SharedMemoryRegistry

__all__ = ["OutputTarget", "RegionStatus", "SharedMemoryRef", "SharedMemoryRegistry", "cuda"]
