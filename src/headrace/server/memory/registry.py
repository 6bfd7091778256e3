"""The shared memory regions a server knows, by name, and tensors read from and written to them.

One namespace holds both kinds, as in Triton: a name registered as a system region cannot
also be a CUDA one. Registering a taken name is refused; unregistering an unknown one is not
an error. At most ``--max-shared-memory-regions`` are registered at once (Triton has no
bound): each maps memory into the server, and a client registering without end would
exhaust the process's mappings. Unregistering only forgets the name: requests already holding the region (their
inputs are views of it, their outputs are written after the model runs) finish with it, and
the mapping or IPC handle is released when the last of them lets go. (Triton 2.51 refuses to
unregister a region in use; later versions defer it, as here.)

Inputs are validated and read when a door decodes a request; output regions are resolved
and bounds-checked then too, before the model runs, and written after it. Every check names
the region and the sizes, in Triton's words.
"""

from __future__ import annotations

import math
import threading
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any, Literal, TypeAlias

import numpy as np

from headrace.errors import AlreadyExists, InternalError, InvalidInput, NotFound, Unavailable
from headrace.server.memory.cuda import CudaRegion, cuda_supported
from headrace.server.memory.references import SharedMemoryRef
from headrace.server.memory.system import SystemRegion
from headrace.types import DataType, RequestedOutput, deserialize_bytes_tensor, wire_bytes

__all__ = [
    "DEFAULT_MAX_SHARED_MEMORY_REGIONS",
    "Kind",
    "OutputTarget",
    "RegionStatus",
    "SharedMemoryRegistry",
]

DEFAULT_MAX_SHARED_MEMORY_REGIONS = 4096
"""Regions registered at once (``--max-shared-memory-regions``): a client registers one or two
per tensor it keeps there; each is one mapping of the process's ~65,000
(``vm.max_map_count``)."""

Kind: TypeAlias = Literal["system", "cuda"]
Region: TypeAlias = SystemRegion | CudaRegion


@dataclass(frozen=True)
class RegionStatus:
    """One region as the status endpoints list it (``key``/``offset`` for system regions,
    ``device_id`` for CUDA ones)."""

    name: str
    kind: Kind
    byte_size: int
    key: str = ""
    offset: int = 0
    device_id: int = 0


class SharedMemoryRegistry:
    """The regions of one server. Thread-safe; lookups on the request path take no lock."""

    def __init__(self, max_regions: int = DEFAULT_MAX_SHARED_MEMORY_REGIONS) -> None:
        if max_regions < 1:
            raise ValueError(f"--max-shared-memory-regions must be at least 1, got {max_regions}")
        self.max_regions = max_regions
        self._regions: dict[str, Region] = {}
        self._lock = threading.Lock()

    @property
    def cuda_supported(self) -> bool:
        """Whether CUDA regions can be registered here (a CUDA device and cuda-python)."""
        return cuda_supported()

    # -- registration ------------------------------------------------------------------------

    def register_system(self, name: str, key: str, offset: int, byte_size: int) -> None:
        """Map ``byte_size`` bytes at ``offset`` of the POSIX shared memory object ``key``."""
        self._check_free(name)
        self._add(SystemRegion.open(name, key, offset, byte_size))

    def register_cuda(self, name: str, raw_handle: bytes, device_id: int, byte_size: int) -> None:
        """Open a client's CUDA IPC handle of ``byte_size`` bytes on ``device_id``."""
        self._check_free(name)
        self._add(CudaRegion.open(name, raw_handle, device_id, byte_size))

    def unregister(self, kind: Kind, name: str = "") -> None:
        """Forget the region ``name`` of ``kind``, or every region of ``kind`` when ``name`` is
        empty; unknown names are ignored, as Triton does."""
        with self._lock:
            names = [name] if name else list(self._regions)
            for each in names:
                region = self._regions.get(each)
                if region is not None and region.kind == kind:
                    del self._regions[each]

    def clear(self) -> None:
        """Forget every region (the server is stopping)."""
        with self._lock:
            self._regions.clear()

    def status(self, kind: Kind, name: str = "") -> list[RegionStatus]:
        """Every region of ``kind``, sorted by name, or just ``name`` (NotFound if unknown)."""
        if name:
            region = self._regions.get(name)
            if region is None or region.kind != kind:
                raise NotFound(f"Unable to find {kind} shared memory region: '{name}'")
            return [_status(region)]
        regions = sorted(self._regions.values(), key=lambda r: r.name)
        return [_status(region) for region in regions if region.kind == kind]

    def _check_free(self, name: str) -> None:
        if name in self._regions:
            raise AlreadyExists(f"shared memory region '{name}' already in manager")
        if len(self._regions) >= self.max_regions:
            raise Unavailable(
                f"failed to register shared memory region '{name}': {self.max_regions} regions "
                "are registered (--max-shared-memory-regions); unregister some first"
            )

    def _add(self, region: Region) -> None:
        with self._lock:
            self._check_free(region.name)  # a concurrent register may have won meanwhile
            self._regions[region.name] = region

    # -- tensors -----------------------------------------------------------------------------

    def read_input(
        self,
        name: str,
        datatype: DataType,
        shape: tuple[int, ...],
        ref: SharedMemoryRef,
        model: str,
    ) -> np.ndarray:
        """Input ``name`` of ``model`` from the bytes ``ref`` points at.

        A system region gives a read-only view of its mapping (zero-copy) when the offset
        suits the element alignment, a copy otherwise; a CUDA region always gives a host copy.
        BYTES tensors are decoded from their length-prefixed form.
        """
        region = self._resolve(ref)
        raw = region.read(ref.offset, ref.byte_size)
        if datatype is DataType.BYTES:
            try:
                return deserialize_bytes_tensor(raw.data, shape)
            except ValueError as exc:
                raise InvalidInput(f"input '{name}': {exc}") from exc
        dtype = datatype.numpy_dtype
        expected = math.prod(shape) * dtype.itemsize
        if ref.byte_size != expected:
            raise InvalidInput(
                f"input byte size mismatch for input '{name}' for model '{model}'. "
                f"Expected {expected}, got {ref.byte_size}"
            )
        if raw.ctypes.data % dtype.alignment:
            raw = raw.copy()
            raw.flags.writeable = False
        return raw.view(dtype).reshape(shape)

    def output_targets(self, outputs: Iterable[RequestedOutput] | None) -> dict[str, OutputTarget]:
        """Where each requested output that names a region goes, checked before the model runs.

        Empty (and nearly free) when no output asks for shared memory.
        """
        targets: dict[str, OutputTarget] = {}
        for output in outputs or ():
            ref = SharedMemoryRef.from_parameters(output.parameters)
            if ref is not None:
                targets[output.name] = OutputTarget(self._resolve(ref), ref.offset, ref.byte_size)
        return targets

    def _resolve(self, ref: SharedMemoryRef) -> Region:
        region = self._regions.get(ref.region)
        if region is None:
            raise NotFound(f"Unable to find shared memory region: '{ref.region}'")
        if ref.byte_size == 0 or ref.offset + ref.byte_size > region.byte_size:
            raise InvalidInput(
                f"Invalid offset + byte size for shared memory region: '{ref.region}' "
                f"(offset {ref.offset} + byte size {ref.byte_size}, the region has "
                f"{region.byte_size} bytes)"
            )
        return region


@dataclass(frozen=True)
class OutputTarget:
    """A window of a region that one output of one request is written into.

    Holds the region itself, so the write lands even if the name is unregistered meanwhile.
    """

    region: Region
    offset: int
    byte_size: int

    def write(self, name: str, value: Any) -> tuple[DataType, tuple[int, ...]]:
        """Write output ``name`` (numpy array, or torch tensor) and return its datatype and
        shape for the response, which carries them without the data.

        Raises :class:`InvalidInput` when the window is smaller than the output.
        """
        if isinstance(self.region, CudaRegion) and _is_cuda_tensor(value):
            tensor = value.contiguous()
            datatype = DataType.from_torch(tensor.dtype)
            self._check_size(name, tensor.numel() * tensor.element_size())
            self.region.write_device(self.offset, tensor)
            return datatype, tuple(tensor.shape)
        if not isinstance(value, np.ndarray) and hasattr(value, "cpu"):
            value = value.cpu().numpy()  # a torch tensor bound for host memory
        array = np.asarray(value)
        try:
            datatype = DataType.from_numpy(array.dtype)
        except ValueError as exc:
            raise InternalError(f"output '{name}': {exc}") from exc
        data = np.frombuffer(wire_bytes(array, datatype), np.uint8)
        self._check_size(name, data.size)
        self.region.write(self.offset, data)
        return datatype, array.shape

    def _check_size(self, name: str, size: int) -> None:
        if size > self.byte_size:
            raise InvalidInput(
                f"shared memory size specified with the request for output '{name}' "
                f"({self.byte_size} bytes) should be at least {size} bytes to hold the results"
            )


def _is_cuda_tensor(value: Any) -> bool:
    device = getattr(value, "device", None)
    return getattr(device, "type", None) == "cuda"


def _status(region: Region) -> RegionStatus:
    if isinstance(region, SystemRegion):
        return RegionStatus(
            region.name, "system", region.byte_size, key=region.key, offset=region.offset
        )
    return RegionStatus(region.name, "cuda", region.byte_size, device_id=region.device_id)
