"""Load requests' ``file:`` overrides: refused when they point outside the model directory, are
absurd or too big, with clear errors over unmodified tritonclient (HTTP and gRPC), and nothing
written outside the model's fresh directory; a model directory linking out of the repository is
not served."""

from __future__ import annotations

import json
import os
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest
import tritonclient.grpc as grpcclient
import tritonclient.http as httpclient
from door_thread import serving
from server_fakes import model_py, run, write_python_model
from tritonclient.utils import InferenceServerException

from headrace.errors import InvalidInput, ModelNotFound
from headrace.server.app import FrontendOptions
from headrace.server.core import InferenceServer
from headrace.server.models import load_files
from headrace.server.models.load_files import check_files, check_model_name

CONFIG = json.dumps(
    {
        "backend": "python",
        "max_batch_size": 4,
        "input": [{"name": "X", "data_type": "TYPE_INT32", "dims": [1]}],
        "output": [{"name": "Y", "data_type": "TYPE_INT32", "dims": [1]}],
    }
)
BAD = [
    ("file:../escape.py", "segment '..' is not allowed"),
    ("file:1/../../escape.py", "segment '..' is not allowed"),
    ("file:/tmp/escape.py", "is an absolute path"),
    ("file:", "names no file"),
    ("file:1//model.py", "segment '' is not allowed"),
    ("file:./1/model.py", "segment '.' is not allowed"),
    ("file:1\\..\\x", "backslash or a control character"),
    ("file:1/model.py\n", "backslash or a control character"),
    ("file:" + "a" * 300, "a path segment is longer than 255 bytes"),
    ("file:" + "a/" * 20 + "x", "deeper than 16 directories"),
    ("file:" + "a" * 2000, "longer than 1024 characters"),
]


@pytest.mark.parametrize(("key", "message"), BAD)
def test_bad_paths_are_refused_naming_the_key(key: str, message: str) -> None:
    with pytest.raises(InvalidInput, match=message) as refused:
        check_files("m", {key: b"x"})
    assert "of model 'm'" in refused.value.message
    assert len(refused.value.message) < 300  # a long key is cut, never echoed whole


def test_counts_and_sizes_are_bounded(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(load_files, "MAX_LOAD_FILES", 2)
    with pytest.raises(InvalidInput, match="carries 3 files; at most 2"):
        check_files("m", {f"file:{i}": b"" for i in range(3)})
    monkeypatch.setattr(load_files, "MAX_LOAD_BYTES", 10)
    with pytest.raises(InvalidInput, match="carries 11 bytes of files; at most 10"):
        check_files("m", {"file:a": b"123456", "file:b": b"12345"})


def test_a_file_below_another_file_is_refused() -> None:
    with pytest.raises(InvalidInput, match="lies below the file 'file:1'"):
        check_files("m", {"file:1": b"", "file:1/model.py": b""})


@pytest.mark.parametrize("name", ["", ".", "..", "a/b", "a\\b", "n" * 300])
def test_model_names_that_cannot_be_a_directory_are_refused(name: str) -> None:
    with pytest.raises(InvalidInput, match=r"model (name|directory)"):
        check_model_name(name)


@pytest.fixture
def scratch(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """Where load directories go (tempfile's directory), inside the test's own directory."""
    where = tmp_path / "scratch"
    where.mkdir()
    monkeypatch.setattr(tempfile, "tempdir", str(where))
    return where


@pytest.fixture
def urls(tmp_path: Path, scratch: Path) -> Iterator[tuple[str, str]]:
    repo = tmp_path / "repo"
    write_python_model(repo, "mul", {1: 10})

    options = FrontendOptions(http_port=0, grpc_port=0, metrics_port=None)
    with serving(options, repository=repo, model_control_mode="explicit") as app:
        yield f"127.0.0.1:{app.ports['http']}", f"127.0.0.1:{app.ports['grpc']}"


def _files_under(root: Path) -> set[str]:
    return {str(p.relative_to(root)) for p in root.rglob("*")}


def test_bad_loads_over_http_and_grpc_write_nothing(
    urls: tuple[str, str], tmp_path: Path, scratch: Path
) -> None:
    before = _files_under(tmp_path)
    http = httpclient.InferenceServerClient(urls[0])
    grpc = grpcclient.InferenceServerClient(urls[1])
    try:
        for key, message in BAD[:4]:
            files = {"file:1/model.py": model_py(2).encode(), key: b"# escaped\n"}
            for client, status in ((http, "400"), (grpc, "StatusCode.INVALID_ARGUMENT")):
                with pytest.raises(InferenceServerException) as refused:
                    client.load_model("newmodel", config=CONFIG, files=files)
                assert refused.value.status() == status
                assert message in refused.value.message()
                assert "File name too long" not in refused.value.message()
        with pytest.raises(InferenceServerException, match="cannot name a model directory"):
            grpc.load_model("..", config=CONFIG, files={"file:1/model.py": b""})
    finally:
        http.close()
        grpc.close()
    assert _files_under(tmp_path) == before  # nothing anywhere, in the scratch or beside it
    assert not (tmp_path.parent / "escape.py").exists()


def test_a_good_load_writes_only_in_a_fresh_model_directory(
    urls: tuple[str, str], tmp_path: Path, scratch: Path
) -> None:
    before = _files_under(tmp_path)
    client = httpclient.InferenceServerClient(urls[0])
    try:
        client.load_model(
            "newmodel", config=CONFIG, files={"file:1/model.py": model_py(3).encode()}
        )
        assert client.is_model_ready("newmodel")
    finally:
        client.close()
    written = _files_under(tmp_path) - before
    (load_dir,) = list(scratch.iterdir())
    assert load_dir.name.startswith("headrace-load-")
    assert all(path.startswith(str(Path("scratch", load_dir.name))) for path in written)
    model_dir = next(scratch.iterdir()) / "newmodel"
    assert _files_under(model_dir) == {"1", os.path.join("1", "model.py"), "config.pbtxt"}


def test_a_model_directory_linking_out_of_the_repository_is_not_served(tmp_path: Path) -> None:
    outside = tmp_path / "outside"
    write_python_model(outside, "evil", {1: 2})
    repo = tmp_path / "repo"
    write_python_model(repo, "mul", {1: 10})
    (repo / "evil").symlink_to(outside / "evil", target_is_directory=True)

    async def body() -> None:
        server = InferenceServer(repo)
        await server.start()
        try:
            ready = {entry.name for entry in server.repository_index(ready_only=True)}
            assert ready == {"mul"}
            with pytest.raises(ModelNotFound):
                server.model_config("evil")
        finally:
            await server.stop()

    run(body)


def test_the_scan_refuses_a_model_directory_that_resolves_outside(tmp_path: Path) -> None:
    from headrace.repository.entry import ModelEntry
    from headrace.repository.scan import scan_model
    from headrace.repository.storage import Storage

    write_python_model(tmp_path / "outside", "evil", {1: 2})
    repo = tmp_path / "repo"
    repo.mkdir()
    (repo / "evil").symlink_to(tmp_path / "outside" / "evil", target_is_directory=True)
    entry, problems = scan_model(ModelEntry(Storage(repo), "evil"))
    assert entry is None
    assert "outside the repository" in problems[0].message
