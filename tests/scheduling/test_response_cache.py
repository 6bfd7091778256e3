"""ResponseCache: LRU order, byte accounting, oversize entries, keys, thread safety."""

from __future__ import annotations

import threading

import numpy as np
import pytest

from headrace.errors import InvalidConfig
from headrace.scheduling.response_cache import (
    ENTRY_OVERHEAD,
    TENSOR_OVERHEAD,
    ResponseCache,
    request_key,
)
from headrace.types import WorkItem


def _outputs(n_floats: int, fill: float = 1.0) -> dict[str, np.ndarray]:
    return {"y": np.full(n_floats, fill, dtype=np.float32)}


def _size(n_floats: int) -> int:
    """What one ``_outputs(n_floats)`` entry counts for."""
    return ENTRY_OVERHEAD + TENSOR_OVERHEAD + len("y") + 4 * n_floats


def _key(x: np.ndarray, **kwargs: object) -> bytes:
    key = request_key("m", 1, WorkItem({"x": x}, **kwargs))  # type: ignore[arg-type]
    assert key is not None
    return key


def test_a_stored_response_comes_back_equal_and_read_only() -> None:
    cache = ResponseCache(1 << 20)
    outputs = {"y": np.arange(4, dtype=np.float32), "s": np.array([b"a", b"bc"], dtype=object)}
    assert cache.lookup(b"k") is None
    assert cache.insert(b"k", outputs, {"p": 1})
    outputs["y"][0] = 99  # the cache holds its own copy
    found = cache.lookup(b"k")
    assert found is not None
    np.testing.assert_array_equal(found.outputs["y"], np.arange(4, dtype=np.float32))
    assert list(found.outputs["s"]) == [b"a", b"bc"]
    assert dict(found.parameters) == {"p": 1}
    with pytest.raises(ValueError):
        found.outputs["y"][0] = 1
    report = cache.report()
    assert (report.hits, report.misses, report.lookups, report.entries) == (1, 1, 2, 1)


def test_sizes_count_tensor_bytes_plus_overheads() -> None:
    cache = ResponseCache(1 << 20)
    cache.insert(b"a", _outputs(10))
    assert cache.report().used_bytes == _size(10)
    strings = {"s": np.array([b"abc", b""], dtype=object)}
    cache.insert(b"b", strings)
    # BYTES as on the wire: a 4-byte length per element, then its bytes
    assert cache.report().used_bytes == _size(10) + ENTRY_OVERHEAD + TENSOR_OVERHEAD + 1 + 11
    assert cache.report().utilization == pytest.approx(cache.report().used_bytes / (1 << 20))


def test_least_recently_used_entries_are_evicted_first() -> None:
    cache = ResponseCache(3 * _size(8))
    for key in (b"a", b"b", b"c"):
        assert cache.insert(key, _outputs(8))
    assert cache.lookup(b"a") is not None  # a is now the most recently used
    assert cache.insert(b"d", _outputs(8))
    assert cache.lookup(b"b") is None  # b was the least recently used
    assert all(cache.lookup(key) is not None for key in (b"a", b"c", b"d"))
    report = cache.report()
    assert report.evictions == 1
    assert report.entries == 3
    assert report.used_bytes == 3 * _size(8) <= report.capacity_bytes


def test_a_large_entry_evicts_as_many_as_it_needs() -> None:
    cache = ResponseCache(4 * _size(8))
    for key in (b"a", b"b", b"c", b"d"):
        cache.insert(key, _outputs(8))
    assert cache.insert(b"big", _outputs(8 + 2 * _size(8) // 4))  # needs three entries' room
    assert [cache.lookup(k) is not None for k in (b"a", b"b", b"c", b"d")] == [
        False,
        False,
        False,
        True,
    ]
    assert cache.report().evictions == 3


def test_an_entry_larger_than_the_cache_is_not_stored_and_evicts_nothing() -> None:
    cache = ResponseCache(_size(16))
    assert cache.insert(b"small", _outputs(16))
    assert not cache.insert(b"huge", _outputs(17))
    assert cache.lookup(b"huge") is None
    assert cache.lookup(b"small") is not None
    assert cache.report().evictions == 0


def test_a_device_output_is_not_stored() -> None:
    torch = pytest.importorskip("torch")
    cache = ResponseCache(1 << 20)
    assert not cache.insert(b"k", {"y": torch.zeros(4)})
    assert len(cache) == 0


def test_inserting_a_present_key_keeps_the_first_entry() -> None:
    cache = ResponseCache(1 << 20)
    cache.insert(b"k", _outputs(4, 1.0))
    cache.insert(b"k", _outputs(4, 2.0))
    found = cache.lookup(b"k")
    assert found is not None and found.outputs["y"][0] == 1.0
    assert cache.report().used_bytes == _size(4)


def test_clear_drops_every_entry_and_keeps_the_counters() -> None:
    cache = ResponseCache(1 << 20)
    cache.insert(b"a", _outputs(4))
    assert cache.lookup(b"a") is not None
    cache.clear()
    assert cache.lookup(b"a") is None
    report = cache.report()
    assert (report.entries, report.used_bytes, report.hits, report.misses) == (0, 0, 1, 1)


def test_size_must_be_positive() -> None:
    with pytest.raises(InvalidConfig, match="must be positive, got 0"):
        ResponseCache(0)


def test_keys_are_equal_only_for_identical_requests() -> None:
    x = np.arange(8, dtype=np.float32).reshape(2, 4)
    base = _key(x)
    assert _key(x.copy()) == base
    assert _key(np.asfortranarray(x)) == base  # same tensor, other memory layout
    assert _key(x.reshape(4, 2)) != base  # same bytes, other shape (Triton would hit)
    assert _key(x.view(np.int32)) != base  # same bytes, other data type
    assert _key(x + 1) != base
    assert _key(x, requested_outputs=("y",)) != base
    assert _key(x, requested_outputs=("y", "z")) == _key(x, requested_outputs=("z", "y"))
    assert _key(x, parameters={"mode": "fast"}) != base
    item = WorkItem({"x": x})
    assert request_key("other", 1, item) != base
    assert request_key("m", 2, item) != base
    assert request_key("m", 1, item, generation=2) != base  # another load of version 1
    assert request_key("m", 1, WorkItem({"w": x})) != base
    two = request_key("m", 1, WorkItem({"a": x, "b": x + 1}))
    assert two == request_key("m", 1, WorkItem({"b": x + 1, "a": x}))  # input order is free
    assert two != request_key("m", 1, WorkItem({"a": x + 1, "b": x}))


def test_bytes_inputs_key_on_their_elements() -> None:
    a = np.array([b"ab", b"c"], dtype=object)
    assert _key(a) == _key(np.array([b"ab", b"c"], dtype=object))
    assert _key(a) != _key(np.array([b"a", b"bc"], dtype=object))


def test_a_request_with_a_non_host_input_has_no_key() -> None:
    torch = pytest.importorskip("torch")
    assert request_key("m", 1, WorkItem({"x": torch.zeros(4)})) is None


def test_concurrent_inserts_and_lookups_keep_the_books_straight() -> None:
    cache = ResponseCache(20 * _size(16))
    threads_n, rounds = 4, 300
    barrier = threading.Barrier(threads_n)
    errors: list[BaseException] = []

    def worker(seed: int) -> None:
        try:
            barrier.wait(timeout=10)
            for i in range(rounds):
                key = f"k{(i * 7 + seed) % 50}".encode()
                found = cache.lookup(key)
                if found is None:
                    cache.insert(key, _outputs(16, float(i)))
                elif found.outputs["y"].shape != (16,):
                    raise AssertionError("a torn entry")
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=worker, args=(seed,)) for seed in range(threads_n)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    assert not errors
    report = cache.report()
    assert report.lookups == threads_n * rounds
    assert report.entries == len(cache) <= 20
    assert report.used_bytes == report.entries * _size(16) <= report.capacity_bytes
