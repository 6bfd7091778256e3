"""CUDA shared memory regions on a CPU machine: the IPC plumbing of
:mod:`headrace.server.memory.cuda` against a fake ``cuda.bindings.runtime`` whose "device
memory" is a host buffer, so the handle bytes, device switching, copies and the deferred close
are checked without a GPU. The real round trip is ``test_cuda_shared_memory_round_trip``
(marked gpu) in tests/integration/test_shared_memory_serve.py."""

from __future__ import annotations

import ctypes
import enum
import gc
from collections.abc import Iterator
from types import SimpleNamespace
from typing import Any

import numpy as np
import pytest

from headrace.errors import InvalidInput
from headrace.server.memory import SharedMemoryRef, SharedMemoryRegistry, cuda
from headrace.types import DataType, RequestedOutput


class _Error(enum.Enum):
    cudaSuccess = 0
    cudaErrorInvalidDevice = 101
    cudaErrorMapBufferObjectFailed = 205


class FakeRuntime:
    """The calls CudaRegion makes; device memory is ``self.device`` (one host buffer)."""

    cudaError_t = _Error
    cudaMemcpyKind = SimpleNamespace(
        cudaMemcpyDeviceToHost=2, cudaMemcpyHostToDevice=1, cudaMemcpyDeviceToDevice=3
    )
    cudaIpcMemLazyEnablePeerAccess = 1

    def __init__(self) -> None:
        self.device = np.zeros(256, np.uint8)
        self.current = 0
        self.opened: list[bytes] = []
        self.closed: list[int] = []
        self.copies: list[int] = []

    class cudaIpcMemHandle_t:
        def __init__(self) -> None:
            self._buffer = ctypes.create_string_buffer(64)

        def getPtr(self) -> int:
            return ctypes.addressof(self._buffer)

    def cudaGetDeviceCount(self) -> tuple[_Error, int]:
        return _Error.cudaSuccess, 2

    def cudaGetErrorName(self, error: _Error) -> tuple[_Error, bytes]:
        return _Error.cudaSuccess, error.name.encode()

    def cudaGetDevice(self) -> tuple[_Error, int]:
        return _Error.cudaSuccess, self.current

    def cudaSetDevice(self, device: int) -> tuple[_Error]:
        if device > 1:
            return (_Error.cudaErrorInvalidDevice,)
        self.current = device
        return (_Error.cudaSuccess,)

    def cudaIpcOpenMemHandle(self, handle: Any, flags: int) -> tuple[_Error, int]:
        raw = ctypes.string_at(handle.getPtr(), 64)
        if raw == b"\0" * 64:
            return _Error.cudaErrorMapBufferObjectFailed, 0
        self.opened.append(raw)
        return _Error.cudaSuccess, self.device.ctypes.data

    def cudaIpcCloseMemHandle(self, pointer: int) -> tuple[_Error]:
        self.closed.append(pointer)
        return (_Error.cudaSuccess,)

    def cudaMemcpy(self, dst: int, src: int, size: int, kind: int) -> tuple[_Error]:
        assert self.current == 1, "copies run on the region's device"
        ctypes.memmove(dst, src, size)
        self.copies.append(kind)
        return (_Error.cudaSuccess,)


@pytest.fixture
def runtime(monkeypatch: pytest.MonkeyPatch) -> Iterator[FakeRuntime]:
    fake = FakeRuntime()
    monkeypatch.setattr(cuda, "_runtime", lambda: fake)
    cuda.cuda_supported.cache_clear()
    yield fake
    cuda.cuda_supported.cache_clear()


def test_a_cuda_region_round_trip(runtime: FakeRuntime) -> None:
    memory = SharedMemoryRegistry()
    assert memory.cuda_supported
    handle = bytes(range(1, 65))
    memory.register_cuda("c", handle, 1, 128)
    assert runtime.opened == [handle] and runtime.current == 0  # the device is restored
    (status,) = memory.status("cuda")
    assert (status.name, status.device_id, status.byte_size) == ("c", 1, 128)
    runtime.device[16:32] = np.arange(4, dtype=np.float32).view(np.uint8)
    array = memory.read_input("x", DataType.FP32, (4,), SharedMemoryRef("c", 16, 16), "m")
    np.testing.assert_array_equal(array, np.arange(4))
    params = {
        "shared_memory_region": "c",
        "shared_memory_byte_size": 16,
        "shared_memory_offset": 64,
    }
    (target,) = memory.output_targets([RequestedOutput("y", params)]).values()
    assert target.write("y", np.full(4, 9, np.float32)) == (DataType.FP32, (4,))
    np.testing.assert_array_equal(runtime.device[64:80].view(np.float32), np.full(4, 9))
    assert runtime.copies == [2, 1]  # device to host in, host to device out
    memory.unregister("cuda", "c")
    assert runtime.closed == []  # the output target still holds the region
    del target
    gc.collect()
    assert runtime.closed == [runtime.device.ctypes.data]


def test_cuda_registration_errors(runtime: FakeRuntime) -> None:
    memory = SharedMemoryRegistry()
    with pytest.raises(
        InvalidInput, match="valid base64 encoded cudaIpcMemHandle_t \\(64 bytes\\)"
    ):
        memory.register_cuda("c", b"\1" * 8, 0, 16)
    with pytest.raises(
        InvalidInput, match="'c': cudaSetDevice\\(7\\) failed: cudaErrorInvalidDevice"
    ):
        memory.register_cuda("c", b"\1" * 64, 7, 16)
    with pytest.raises(InvalidInput, match="'c': cudaIpcOpenMemHandle failed: cudaErrorMapBuffer"):
        memory.register_cuda("c", b"\0" * 64, 0, 16)
    with pytest.raises(InvalidInput, match="'c': byte_size must be positive"):
        memory.register_cuda("c", b"\1" * 64, 0, 0)
    assert memory.status("cuda") == []
