"""DataType mappings and the BYTES wire encoding."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from headrace.types import DataType, TensorSpec, deserialize_bytes_tensor, serialize_bytes_tensor


@pytest.mark.parametrize("datatype", list(DataType))
def test_every_type_round_trips_through_names(datatype: DataType) -> None:
    assert DataType.from_name(datatype.value) is datatype
    assert DataType.from_name(datatype.config_name) is datatype
    assert DataType.from_numpy(datatype.numpy_dtype) is datatype


@pytest.mark.parametrize("datatype", [d for d in DataType if d is not DataType.BYTES])
def test_torch_mapping_matches_numpy(datatype: DataType) -> None:
    assert DataType.from_torch(datatype.torch_dtype) is datatype
    assert torch.empty(0, dtype=datatype.torch_dtype).element_size() == datatype.itemsize


def test_bytes_has_no_torch_dtype_and_no_itemsize() -> None:
    assert DataType.BYTES.itemsize is None
    assert DataType.BYTES.config_name == "TYPE_STRING"
    with pytest.raises(TypeError):
        _ = DataType.BYTES.torch_dtype


def test_unknown_names_are_refused() -> None:
    with pytest.raises(ValueError, match="FP8"):
        DataType.from_name("FP8")
    with pytest.raises(ValueError):
        DataType.from_numpy(np.complex64)


def test_bytes_encoding_is_length_prefixed_little_endian() -> None:
    assert serialize_bytes_tensor([b"ab", b""]) == b"\x02\x00\x00\x00ab\x00\x00\x00\x00"


def test_bytes_round_trip_with_empty_and_non_ascii_elements() -> None:
    values = np.array([["", "héllo"], ["日本語", "\x00nul"], ["🙂", "plain"]], dtype=np.object_)
    encoded = serialize_bytes_tensor(values)
    decoded = deserialize_bytes_tensor(encoded, shape=values.shape)
    assert decoded.shape == (3, 2)
    assert decoded.dtype == np.object_
    expected = np.vectorize(lambda s: s.encode("utf-8"), otypes=[object])(values)
    assert (decoded == expected).all()
    raw = np.array([b"\xff\xfe", b""], dtype=np.object_)
    assert list(deserialize_bytes_tensor(serialize_bytes_tensor(raw))) == [b"\xff\xfe", b""]


def test_truncated_bytes_buffers_name_the_offset() -> None:
    encoded = serialize_bytes_tensor([b"abcd"])
    with pytest.raises(ValueError, match="incomplete string data at offset 0"):
        deserialize_bytes_tensor(encoded[:-1])
    with pytest.raises(ValueError, match="incomplete string length indicator at offset 8"):
        deserialize_bytes_tensor(encoded + b"\x01\x00")
    with pytest.raises(ValueError, match="shape"):
        deserialize_bytes_tensor(encoded, shape=(2,))


def test_tensor_spec_shapes() -> None:
    spec = TensorSpec("x", DataType.FP32, (-1, 64))
    assert spec.shape(batched=True) == (-1, -1, 64)
    assert spec.accepts((8, 3, 64), batched=True)
    assert not spec.accepts((8, 64), batched=True)
    assert spec.accepts((3, 64), batched=False)


def test_non_native_byte_order_maps_to_the_same_type() -> None:
    assert DataType.from_numpy(np.dtype(">i4")) is DataType.INT32
    assert DataType.from_numpy(np.dtype(">f2")) is DataType.FP16
