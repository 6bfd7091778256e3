"""CUDA shared memory regions: a client's device buffer, opened from its CUDA IPC handle.

A client allocates device memory, exports it with ``cudaIpcGetMemHandle`` and registers the
64-byte handle (``tritonclient.utils.cuda_shared_memory`` does all this). The server opens the
handle with ``cudaIpcOpenMemHandle`` through NVIDIA's ``cuda-python`` bindings
(``cuda.bindings.runtime``, which tritonclient's own CUDA shared memory helpers use too) and
copies tensors in and out with ``cudaMemcpy``: outputs that are CUDA tensors device to
device, host arrays host to device. Inputs are copied device to host, since a request's
inputs are numpy arrays and the engine moves them to its device itself.

The handle is closed when the region object is garbage (a ``weakref.finalize``), so a region
unregistered while requests use it stays open until they finish.
"""

from __future__ import annotations

import ctypes
import functools
import weakref
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from headrace.errors import InternalError, InvalidInput

__all__ = ["IPC_HANDLE_BYTES", "CudaRegion", "cuda_supported"]

IPC_HANDLE_BYTES = 64
"""The size of a ``cudaIpcMemHandle_t``."""


@functools.cache
def cuda_supported() -> bool:
    """Whether ``cuda-python`` is installed and sees at least one CUDA device (cached)."""
    try:
        runtime = _runtime()
        error, count = runtime.cudaGetDeviceCount()
    except Exception:  # no bindings, no libcudart, no driver: all mean "not here"
        return False
    return bool(error == runtime.cudaError_t.cudaSuccess and count)


def _runtime() -> Any:
    from cuda.bindings import runtime

    return runtime


def _call(what: str, result: tuple[Any, ...]) -> Any:
    """The value of a ``cuda.bindings`` call, or an error naming the call and CUDA's reason."""
    runtime = _runtime()
    error, *values = result
    if error != runtime.cudaError_t.cudaSuccess:
        _, name = runtime.cudaGetErrorName(error)
        raise InternalError(f"{what} failed: {name.decode() if isinstance(name, bytes) else name}")
    return values[0] if len(values) == 1 else values


@dataclass(frozen=True, eq=False)
class CudaRegion:
    """``byte_size`` bytes of another process's device memory on ``device_id``."""

    name: str
    device_id: int
    byte_size: int
    _pointer: int
    _finalizer: Any = field(repr=False)

    kind = "cuda"

    @classmethod
    def open(cls, name: str, raw_handle: bytes, device_id: int, byte_size: int) -> CudaRegion:
        """Open the IPC handle ``raw_handle`` on ``device_id``.

        Raises :class:`InvalidInput` when this server has no CUDA device, when the handle is
        not 64 bytes, or when CUDA refuses it (a handle of this very process, a freed buffer).
        """
        prefix = f"failed to register shared memory region '{name}'"
        if not cuda_supported():
            raise InvalidInput(
                f"{prefix}: CUDA shared memory needs a CUDA device and the cuda-python package "
                "(pip install cuda-python); this server has none"
            )
        if len(raw_handle) != IPC_HANDLE_BYTES:
            raise InvalidInput(
                f"'raw_handle' must be a valid base64 encoded cudaIpcMemHandle_t "
                f"({IPC_HANDLE_BYTES} bytes), got {len(raw_handle)} bytes"
            )
        if byte_size <= 0:
            raise InvalidInput(f"{prefix}: byte_size must be positive, got {byte_size}")
        runtime = _runtime()
        handle = runtime.cudaIpcMemHandle_t()
        ctypes.memmove(handle.getPtr(), raw_handle, IPC_HANDLE_BYTES)
        flags = getattr(runtime, "cudaIpcMemLazyEnablePeerAccess", 1)
        try:
            with _on_device(device_id):
                pointer = int(
                    _call("cudaIpcOpenMemHandle", runtime.cudaIpcOpenMemHandle(handle, flags))
                )
        except InternalError as exc:
            raise InvalidInput(f"{prefix}: {exc.message}") from exc
        region = cls(name, device_id, byte_size, pointer, None)
        finalizer = weakref.finalize(region, _close, device_id, pointer)
        object.__setattr__(region, "_finalizer", finalizer)
        return region

    def read(self, offset: int, byte_size: int) -> np.ndarray:
        """A host copy (uint8) of ``byte_size`` bytes at ``offset``."""
        runtime = _runtime()
        out = np.empty(byte_size, np.uint8)
        with _on_device(self.device_id):
            _call(
                "cudaMemcpy",
                runtime.cudaMemcpy(
                    out.ctypes.data,
                    self._pointer + offset,
                    byte_size,
                    runtime.cudaMemcpyKind.cudaMemcpyDeviceToHost,
                ),
            )
        return out

    def write(self, offset: int, data: np.ndarray) -> None:
        """Copy a flat uint8 host array to ``offset`` (host to device)."""
        runtime = _runtime()
        data = np.ascontiguousarray(data)
        with _on_device(self.device_id):
            _call(
                "cudaMemcpy",
                runtime.cudaMemcpy(
                    self._pointer + offset,
                    data.ctypes.data,
                    data.nbytes,
                    runtime.cudaMemcpyKind.cudaMemcpyHostToDevice,
                ),
            )

    def write_device(self, offset: int, tensor: Any) -> None:
        """Copy a contiguous torch CUDA tensor to ``offset`` (device to device).

        Waits for the tensor's stream first, so the copy sees the finished values.
        """
        import torch

        runtime = _runtime()
        torch.cuda.current_stream(tensor.device).synchronize()
        with _on_device(self.device_id):
            _call(
                "cudaMemcpy",
                runtime.cudaMemcpy(
                    self._pointer + offset,
                    tensor.data_ptr(),
                    tensor.numel() * tensor.element_size(),
                    runtime.cudaMemcpyKind.cudaMemcpyDeviceToDevice,
                ),
            )


class _on_device:
    """Make ``device_id`` current for a block, then restore the previous device."""

    def __init__(self, device_id: int) -> None:
        self._device = device_id
        self._previous = -1

    def __enter__(self) -> None:
        runtime = _runtime()
        self._previous = int(_call("cudaGetDevice", runtime.cudaGetDevice()))
        _call(f"cudaSetDevice({self._device})", runtime.cudaSetDevice(self._device))

    def __exit__(self, *exc: object) -> None:
        _runtime().cudaSetDevice(self._previous)


def _close(device_id: int, pointer: int) -> None:
    runtime = _runtime()
    with _on_device(device_id):
        runtime.cudaIpcCloseMemHandle(pointer)
