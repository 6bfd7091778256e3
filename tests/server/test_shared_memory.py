"""The shared memory registry: regions, their checks, tensors in and out, and unregistering
while requests still hold a region. Regions are made with tritonclient's own helper, as a
client would make them."""

from __future__ import annotations

import threading
import uuid
from collections.abc import Iterator
from typing import Any

import numpy as np
import pytest
import tritonclient.http as httpclient
import tritonclient.utils.shared_memory as shm

from headrace.errors import AlreadyExists, InternalError, InvalidInput, NotFound, Unavailable
from headrace.server.app import FrontendOptions
from headrace.server.binding import Server, Tensor
from headrace.server.core import InferenceServer
from headrace.server.memory import SharedMemoryRef, SharedMemoryRegistry
from headrace.server.memory.cuda import cuda_supported
from headrace.server.options import ServerOptions
from headrace.types import DataType, RequestedOutput, serialize_bytes_tensor

WAIT_S = 30.0


class Client:
    """POSIX shared memory objects made through tritonclient, destroyed after the test."""

    def __init__(self) -> None:
        self.handles: list[Any] = []

    def create(self, byte_size: int) -> tuple[str, Any]:
        key = f"/headrace-test-{uuid.uuid4().hex[:12]}"
        handle = shm.create_shared_memory_region(key, key, byte_size)
        self.handles.append(handle)
        return key, handle


@pytest.fixture
def client() -> Iterator[Client]:
    made = Client()
    yield made
    for handle in made.handles:
        shm.destroy_shared_memory_region(handle)


@pytest.fixture
def memory() -> Iterator[SharedMemoryRegistry]:
    registry = SharedMemoryRegistry()
    yield registry
    registry.clear()


def _ref(region: str, byte_size: int, offset: int = 0) -> SharedMemoryRef:
    return SharedMemoryRef(region, offset, byte_size)


def test_register_status_and_unregister(memory: SharedMemoryRegistry, client: Client) -> None:
    key_b, _ = client.create(64)
    key_a, _ = client.create(32)
    memory.register_system("b", key_b, 16, 48)
    memory.register_system("a", key_a, 0, 32)
    assert [(s.name, s.key, s.offset, s.byte_size) for s in memory.status("system")] == [
        ("a", key_a, 0, 32),
        ("b", key_b, 16, 48),
    ]
    assert [s.name for s in memory.status("system", "b")] == ["b"]
    assert memory.status("cuda") == []
    with pytest.raises(NotFound, match="Unable to find system shared memory region: 'zzz'"):
        memory.status("system", "zzz")
    with pytest.raises(NotFound, match="Unable to find cuda shared memory region: 'a'"):
        memory.status("cuda", "a")
    memory.unregister("cuda", "a")  # another kind's name: nothing happens
    memory.unregister("system", "zzz")  # unknown: nothing happens, as in Triton
    memory.unregister("system", "a")
    assert [s.name for s in memory.status("system")] == ["b"]
    memory.unregister("system")
    assert memory.status("system") == []


def test_registration_errors_name_the_region(memory: SharedMemoryRegistry, client: Client) -> None:
    key, _ = client.create(64)
    memory.register_system("in", key, 0, 64)
    with pytest.raises(AlreadyExists, match="shared memory region 'in' already in manager"):
        memory.register_system("in", key, 0, 64)
    with pytest.raises(
        InternalError, match="Unable to open shared memory region: '/nope-"
    ):  # 500, as Triton
        memory.register_system("x", f"/nope-{uuid.uuid4().hex}", 0, 16)
    for bad_key in ("", "/", "/../etc/passwd", "/a/b", ".."):
        with pytest.raises(InvalidInput, match="Unable to open shared memory region"):
            memory.register_system("x", bad_key, 0, 16)
    with pytest.raises(InvalidInput, match=r"'big': offset 0 \+ byte_size 65 runs past the end"):
        memory.register_system("big", key, 0, 65)
    with pytest.raises(InvalidInput, match=r"'off': offset 60 \+ byte_size 8 runs past"):
        memory.register_system("off", key, 60, 8)
    with pytest.raises(InvalidInput, match="'zero': byte_size must be positive"):
        memory.register_system("zero", key, 0, 0)
    assert [s.name for s in memory.status("system")] == ["in"]


def test_registrations_are_bounded_by_the_flag(client: Client) -> None:
    memory = SharedMemoryRegistry(max_regions=2)
    key, _ = client.create(64)
    try:
        memory.register_system("a", key, 0, 32)
        memory.register_system("b", key, 32, 32)
        with pytest.raises(Unavailable) as refused:
            memory.register_system("c", key, 0, 8)
        assert refused.value.message == (
            "failed to register shared memory region 'c': 2 regions are registered "
            "(--max-shared-memory-regions); unregister some first"
        )
        memory.unregister("system", "a")
        memory.register_system("c", key, 0, 8)  # room again
        assert [r.name for r in memory.status("system")] == ["b", "c"]
    finally:
        memory.clear()
    with pytest.raises(ValueError, match="--max-shared-memory-regions must be at least 1"):
        SharedMemoryRegistry(max_regions=0)
    server = InferenceServer(options=ServerOptions(max_shared_memory_regions=3))
    assert server.shared_memory.max_regions == 3


def test_inputs_are_read_only_views_of_the_region(
    memory: SharedMemoryRegistry, client: Client
) -> None:
    key, handle = client.create(64)
    shm.set_shared_memory_region(handle, [np.arange(16, dtype=np.float32)])
    memory.register_system("in", key, 0, 64)
    array = memory.read_input("x", DataType.FP32, (2, 2), _ref("in", 16, 8), "m")
    np.testing.assert_array_equal(array, [[2, 3], [4, 5]])
    assert not array.flags.writeable
    shm.set_shared_memory_region(handle, [np.full(16, 7, np.float32)])
    np.testing.assert_array_equal(array, np.full((2, 2), 7))  # zero-copy: it sees the region


def test_a_misaligned_input_is_copied(memory: SharedMemoryRegistry, client: Client) -> None:
    key, handle = client.create(64)
    values = np.arange(4, dtype=np.float32)
    shm.set_shared_memory_region(handle, [values], offset=2)
    memory.register_system("in", key, 0, 64)
    array = memory.read_input("x", DataType.FP32, (4,), _ref("in", 16, 2), "m")
    np.testing.assert_array_equal(array, values)
    assert array.ctypes.data % 4 == 0 and not array.flags.writeable


def test_bytes_inputs_are_decoded(memory: SharedMemoryRegistry, client: Client) -> None:
    key, handle = client.create(64)
    wire = serialize_bytes_tensor(np.array([b"ab", b"cde"], dtype=object))
    shm.set_shared_memory_region(handle, [np.frombuffer(wire, np.uint8)])
    memory.register_system("in", key, 0, 64)
    array = memory.read_input("s", DataType.BYTES, (2,), _ref("in", len(wire)), "m")
    assert array.tolist() == [b"ab", b"cde"]


def test_input_checks(memory: SharedMemoryRegistry, client: Client) -> None:
    key, _ = client.create(64)
    memory.register_system("in", key, 0, 64)
    with pytest.raises(NotFound, match="Unable to find shared memory region: 'zzz'"):
        memory.read_input("x", DataType.FP32, (4,), _ref("zzz", 16), "m")
    with pytest.raises(
        InvalidInput, match="Invalid offset \\+ byte size for shared memory region: 'in'"
    ):
        memory.read_input("x", DataType.FP32, (4,), _ref("in", 16, 56), "m")
    with pytest.raises(InvalidInput, match="Invalid offset \\+ byte size"):
        memory.read_input("x", DataType.FP32, (4,), _ref("in", 0), "m")
    with pytest.raises(
        InvalidInput,
        match=r"input byte size mismatch for input 'x' for model 'm'\. Expected 16, got 12",
    ):
        memory.read_input("x", DataType.FP32, (4,), _ref("in", 12), "m")


@pytest.mark.parametrize(
    ("params", "match"),
    [
        ({"shared_memory_region": 3}, "'shared_memory_region': expected a string, got 3"),
        (
            {"shared_memory_region": "r", "shared_memory_byte_size": "16"},
            "'shared_memory_byte_size': expected a non-negative integer, got '16'",
        ),
        (
            {"shared_memory_region": "r", "shared_memory_offset": -4},
            "'shared_memory_offset': expected a non-negative integer, got -4",
        ),
        (
            {"shared_memory_region": "r", "shared_memory_byte_size": True},
            "'shared_memory_byte_size': expected a non-negative integer, got True",
        ),
    ],
)
def test_references_refuse_ill_typed_parameters(params: dict[str, Any], match: str) -> None:
    with pytest.raises(InvalidInput, match=match):
        SharedMemoryRef.from_parameters(params)


def test_references() -> None:
    assert SharedMemoryRef.from_parameters({"binary_data": True}) is None
    assert SharedMemoryRef.from_parameters(
        {"shared_memory_region": "r", "shared_memory_byte_size": 8}
    ) == SharedMemoryRef("r", 0, 8)


def test_outputs_are_written_and_checked(memory: SharedMemoryRegistry, client: Client) -> None:
    key, handle = client.create(64)
    memory.register_system("out", key, 8, 56)
    assert memory.output_targets(None) == {}
    assert memory.output_targets([RequestedOutput("y", {"binary_data": True})]) == {}
    params = {
        "shared_memory_region": "out",
        "shared_memory_byte_size": 24,
        "shared_memory_offset": 4,
    }
    targets = memory.output_targets([RequestedOutput("y", params), RequestedOutput("z")])
    assert list(targets) == ["y"]
    datatype, shape = targets["y"].write("y", np.array([[1, 2], [3, 4]], np.int32))
    assert (datatype, shape) == (DataType.INT32, (2, 2))
    np.testing.assert_array_equal(
        shm.get_contents_as_numpy(handle, np.int32, [4], offset=12), [1, 2, 3, 4]
    )
    with pytest.raises(
        InvalidInput,
        match="output 'y' \\(24 bytes\\) should be at least 32 bytes to hold the results",
    ):
        targets["y"].write("y", np.zeros(4, np.float64))
    with pytest.raises(NotFound, match="Unable to find shared memory region: 'zzz'"):
        memory.output_targets([RequestedOutput("y", {"shared_memory_region": "zzz"})])
    with pytest.raises(
        InvalidInput, match="Invalid offset \\+ byte size for shared memory region: 'out'"
    ):
        memory.output_targets(
            [RequestedOutput("y", {"shared_memory_region": "out", "shared_memory_byte_size": 57})]
        )


def test_bytes_outputs_are_written_in_wire_form(
    memory: SharedMemoryRegistry, client: Client
) -> None:
    key, handle = client.create(64)
    memory.register_system("out", key, 0, 64)
    params = {"shared_memory_region": "out", "shared_memory_byte_size": 64}
    (target,) = memory.output_targets([RequestedOutput("s", params)]).values()
    assert target.write("s", np.array([b"hello", b"x"], dtype=object)) == (DataType.BYTES, (2,))
    decoded = shm.get_contents_as_numpy(handle, np.object_, [2])
    assert decoded.tolist() == [b"hello", b"x"]


def test_unregistering_a_region_in_use_lets_its_requests_finish(
    memory: SharedMemoryRegistry, client: Client
) -> None:
    key, handle = client.create(64)
    shm.set_shared_memory_region(handle, [np.arange(4, dtype=np.float32)])
    memory.register_system("io", key, 0, 64)
    array = memory.read_input("x", DataType.FP32, (4,), _ref("io", 16), "m")
    params = {
        "shared_memory_region": "io",
        "shared_memory_byte_size": 16,
        "shared_memory_offset": 32,
    }
    (target,) = memory.output_targets([RequestedOutput("y", params)]).values()
    memory.unregister("system", "io")
    memory.register_system("io", key, 0, 32)  # the name is free again at once
    target.write("y", array * 2)  # the old window is still mapped for the request
    np.testing.assert_array_equal(
        shm.get_contents_as_numpy(handle, np.float32, [4], offset=32), [0, 2, 4, 6]
    )


def test_cuda_regions_without_a_gpu_are_refused(memory: SharedMemoryRegistry) -> None:
    if cuda_supported():
        pytest.skip("this machine has a CUDA device")
    assert not memory.cuda_supported
    with pytest.raises(InvalidInput, match="'c': CUDA shared memory needs a CUDA device"):
        memory.register_cuda("c", b"\0" * 64, 0, 16)
    assert memory.status("cuda") == []
    assert "cuda_shared_memory" not in InferenceServer().server_metadata().extensions


def test_server_metadata_lists_system_shared_memory() -> None:
    assert "system_shared_memory" in InferenceServer().server_metadata().extensions


def test_unregistering_during_inference_over_http(client: Client) -> None:
    """A region unregistered while its request waits in the model: the request still
    answers from it and into it, and the server goes on serving."""
    entered, release = threading.Event(), threading.Event()

    def gated(x: np.ndarray) -> dict[str, np.ndarray]:
        entered.set()
        assert release.wait(WAIT_S), "the test never released the model"
        return {"y": x + 1}

    server = Server(FrontendOptions(http_port=0, grpc_port=None, metrics_port=None))
    server.bind(
        "gated",
        gated,
        inputs=[Tensor("x", np.float32, (4,))],
        outputs=[Tensor("y", DataType.FP32, (4,))],
    )
    key, handle = client.create(64)
    shm.set_shared_memory_region(handle, [np.arange(4, dtype=np.float32)])
    server.start()
    try:
        http = httpclient.InferenceServerClient(f"127.0.0.1:{server.http_port}", concurrency=2)
        http.register_system_shared_memory("io", key, 64)
        x = httpclient.InferInput("x", [4], "FP32")
        x.set_shared_memory("io", 16)
        y = httpclient.InferRequestedOutput("y")
        y.set_shared_memory("io", 16, offset=32)
        request = http.async_infer("gated", [x], outputs=[y])
        assert entered.wait(WAIT_S), "the request never reached the model"
        http.unregister_system_shared_memory("io")
        assert http.get_system_shared_memory_status() == []
        release.set()
        result = request.get_result()
        assert result.get_output("y") == {"name": "y", "datatype": "FP32", "shape": [4]}
        np.testing.assert_array_equal(
            shm.get_contents_as_numpy(handle, np.float32, [4], offset=32), [1, 2, 3, 4]
        )
        plain = httpclient.InferInput("x", [4], "FP32")
        plain.set_data_from_numpy(np.zeros(4, np.float32))
        np.testing.assert_array_equal(http.infer("gated", [plain]).as_numpy("y"), np.ones(4))
        http.close()
    finally:
        release.set()
        server.stop()
