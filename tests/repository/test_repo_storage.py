"""fsspec-backed repository storage: local paths, file:// and memory:// URLs, localisation."""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from headrace.errors import InvalidConfig
from headrace.repository.storage import Storage


@pytest.fixture(params=["local", "file", "memory"])
def storage(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Storage]:
    root = {
        "local": str(tmp_path / "repo"),
        "file": f"file://{tmp_path}/repo",
        "memory": f"memory://test-{uuid.uuid4().hex}/repo",
    }[request.param]
    store = Storage(root, cache_dir=str(tmp_path / "cache"))
    yield store
    store.remove()


def test_write_list_read(storage: Storage) -> None:
    storage.write_bytes(b"cfg", "mlp", "config.pbtxt")
    storage.write_bytes(b"onnx", "mlp", "1", "model.onnx")
    storage.makedirs("mlp", "2")
    storage.write_bytes(b"x", ".hidden", "f")
    assert storage.list_dirs() == ["mlp"]
    assert storage.list_dirs("mlp") == ["1", "2"]
    assert storage.list_files("mlp") == ["config.pbtxt"]
    assert storage.read_bytes("mlp", "1", "model.onnx") == b"onnx"
    assert storage.isfile("mlp", "config.pbtxt") and storage.isdir("mlp", "1")
    assert storage.list_dirs("absent") == []


def test_url_is_plain_path_when_local(storage: Storage) -> None:
    url = storage.url("m", "config.pbtxt")
    if storage.is_local:
        assert os.path.isabs(url) and "://" not in url
    else:
        assert url.startswith("memory://") and url.endswith("/m/config.pbtxt")


def test_remove_file_and_tree(storage: Storage) -> None:
    storage.write_bytes(b"a", "m", "1", "a")
    storage.write_bytes(b"b", "m", "1", "b")
    storage.remove("m", "1", "a")
    assert storage.list_files("m", "1") == ["b"]
    storage.remove("m")
    assert not storage.exists("m")
    storage.remove("never-existed")


def test_fingerprint_changes_with_content(storage: Storage) -> None:
    storage.write_bytes(b"one", "m", "1", "model.onnx")
    first = storage.fingerprint("m")
    assert storage.fingerprint("m") == first
    storage.write_bytes(b"longer", "m", "1", "model.onnx")
    assert storage.fingerprint("m") != first


def test_localize_gives_local_files_and_reuses_the_copy(storage: Storage) -> None:
    storage.write_bytes(b"weights", "m", "1", "model.onnx")
    storage.write_bytes(b"helper", "m", "1", "sub", "util.py")
    local = storage.localize("m", "1")
    assert Path(local, "model.onnx").read_bytes() == b"weights"
    assert Path(local, "sub", "util.py").read_bytes() == b"helper"
    assert storage.localize("m", "1") == local
    if storage.is_local:
        assert local == storage.full("m", "1")
    else:
        storage.write_bytes(b"new weights", "m", "1", "model.onnx")
        fresh = storage.localize("m", "1")
        assert fresh != local
        assert Path(fresh, "model.onnx").read_bytes() == b"new weights"


def test_localize_missing_directory_names_it(tmp_path: Path) -> None:
    store = Storage(f"memory://missing-{uuid.uuid4().hex}", cache_dir=str(tmp_path))
    with pytest.raises(InvalidConfig, match="not a directory"):
        store.localize("nope", "1")


def test_put_dir_uploads_a_tree(storage: Storage, tmp_path: Path) -> None:
    src = tmp_path / "src"
    (src / "deep").mkdir(parents=True)
    (src / "model.onnx").write_bytes(b"m")
    (src / "deep" / "x.bin").write_bytes(b"x")
    storage.put_dir(str(src), "m", "3")
    assert storage.read_bytes("m", "3", "deep", "x.bin") == b"x"
    assert storage.list_files("m", "3") == ["model.onnx"]


def test_empty_root_is_rejected() -> None:
    with pytest.raises(InvalidConfig, match="repository root"):
        Storage("")
