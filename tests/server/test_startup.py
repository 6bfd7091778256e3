"""What a start means, in process: the repository root, ``exit_on_error``, strict readiness,
the index of a repository that changes, and a load request's partial config override."""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np
import pytest
from server_fakes import run, write_python_model

from headrace.errors import InvalidConfig, ModelNotFound, ModelNotReady
from headrace.server.core import InferenceServer, ServerOptions
from headrace.server.models.registry import StartupFailed
from headrace.types import InferenceRequest

_AUTO_COMPLETE_PY = """
import triton_python_backend_utils as pb_utils


class TritonPythonModel:
    @staticmethod
    def auto_complete_config(config):
        config.add_input({"name": "X", "data_type": "TYPE_INT32", "dims": [1]})
        config.add_output({"name": "Y", "data_type": "TYPE_INT32", "dims": [1]})
        config.set_max_batch_size(3)
        return config

    def execute(self, requests):
        responses = []
        for request in requests:
            x = pb_utils.get_input_tensor_by_name(request, "X").as_numpy()
            responses.append(pb_utils.InferenceResponse([pb_utils.Tensor("Y", x + 100)]))
        return responses
"""


def _write_broken(root: Path) -> None:
    """A model the server cannot serve: a config with no versions on disk."""
    (root / "broken").mkdir()
    (root / "broken" / "config.pbtxt").write_text('name: "broken"\nbackend: "python"\n')


def _x() -> dict[str, np.ndarray]:
    return {"X": np.array([[2]], np.int32)}


@pytest.mark.parametrize(
    ("make", "words"),
    [
        (lambda p: p / "missing", "does not exist"),
        (lambda p: (p / "file").write_text("x") and p / "file", "is not a directory"),
    ],
)
def test_a_missing_or_plain_file_root_is_refused_at_start(
    tmp_path: Path, make: object, words: str
) -> None:
    root = make(tmp_path)  # type: ignore[operator]

    async def body() -> None:
        server = InferenceServer(root)
        with pytest.raises(InvalidConfig, match=f"model repository '{root}' {words}"):
            await server.start()
        await server.stop()

    run(body)


def test_an_unreadable_root_is_refused_at_start(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    real_listdir = os.listdir

    def listdir(path: str) -> list[str]:
        if os.fspath(path) == str(tmp_path):
            raise PermissionError(13, "Permission denied", str(path))
        return real_listdir(path)

    monkeypatch.setattr(os, "listdir", listdir)  # tests run as root: chmod would not bite

    async def body() -> None:
        server = InferenceServer(tmp_path)
        with pytest.raises(InvalidConfig, match="cannot be read: Permission denied"):
            await server.start()

    run(body)


def test_a_model_failing_at_start_fails_the_start_naming_it(tmp_path: Path) -> None:
    write_python_model(tmp_path, "mul", {1: 10})
    _write_broken(tmp_path)

    async def body() -> None:
        server = InferenceServer(tmp_path)
        with pytest.raises(StartupFailed, match=r"failed to load all models: .*'broken'") as got:
            await server.start()
        assert set(got.value.failed) == {"broken"}
        assert "\n" not in got.value.message
        assert not server.model_ready("mul")  # what had loaded is unloaded again
        await server.stop()

    run(body)


def test_an_unknown_startup_model_fails_the_start_in_explicit_mode(tmp_path: Path) -> None:
    write_python_model(tmp_path, "mul", {1: 10})

    async def body() -> None:
        server = InferenceServer(tmp_path, model_control_mode="explicit", load_models=["nope"])
        with pytest.raises(StartupFailed, match="'nope'"):
            await server.start()

    run(body)


@pytest.mark.parametrize("strict", [True, False])
def test_without_exit_on_error_readiness_follows_strict_readiness(
    tmp_path: Path, strict: bool
) -> None:
    write_python_model(tmp_path, "mul", {1: 10})
    _write_broken(tmp_path)

    async def body() -> None:
        options = ServerOptions(exit_on_error=False, strict_readiness=strict)
        server = InferenceServer(tmp_path, options=options)
        await server.start()
        assert server.model_ready("mul")
        assert not server.model_ready("broken")
        assert server.ready() is not strict
        served = await server.infer(InferenceRequest("mul", _x()))
        np.testing.assert_array_equal(served.outputs["Y"], [[20]])
        await server.stop()

    run(body)


def test_unloaded_model_is_not_found_and_its_named_version_not_ready(tmp_path: Path) -> None:
    write_python_model(tmp_path, "mul", {1: 10})

    async def body() -> None:
        server = InferenceServer(tmp_path, model_control_mode="explicit", load_models=["mul"])
        await server.start()
        await server.unload_model("mul")
        with pytest.raises(ModelNotFound) as got:
            await server.infer(InferenceRequest("mul", _x()))
        assert got.value.message.startswith(
            "Request for unknown model: 'mul' has no available versions"
        )
        with pytest.raises(ModelNotReady, match="'mul' version 1 is not at ready state"):
            await server.infer(InferenceRequest("mul", _x(), model_version="1"))
        with pytest.raises(ModelNotFound) as unknown:
            await server.infer(InferenceRequest("x", _x()))
        assert unknown.value.message == "Request for unknown model: 'x' is not found"
        await server.stop()

    run(body)


def test_the_index_lists_model_directories_added_after_start(tmp_path: Path) -> None:
    write_python_model(tmp_path, "mul", {1: 10})

    async def body() -> None:
        server = InferenceServer(tmp_path, model_control_mode="explicit")
        await server.start()
        write_python_model(tmp_path, "later", {1: 3})
        index = {entry.name: entry for entry in server.repository_index()}
        assert set(index) == {"mul", "later"}
        assert (index["later"].state, index["later"].version) == ("", "")
        await server.load_model("later")
        served = await server.infer(InferenceRequest("later", _x()))
        np.testing.assert_array_equal(served.outputs["Y"], [[6]])
        await server.stop()

    run(body)


def test_a_partial_override_replaces_the_config_and_completes_from_the_model_file(
    tmp_path: Path,
) -> None:
    """Triton 2.51: the override replaces config.pbtxt whole (a field it leaves out is not
    read from the file); the backend comes from ``model.py`` and the model's own
    ``auto_complete_config`` fills inputs and outputs."""
    model_dir = write_python_model(tmp_path, "plus", {1: 1})
    (model_dir / "1" / "model.py").write_text(_AUTO_COMPLETE_PY)

    async def body() -> None:
        options = ServerOptions(strict_model_config=False)
        server = InferenceServer(tmp_path, model_control_mode="explicit", options=options)
        await server.start()
        override = {"parameters": {"k": {"string_value": "v"}}}
        await server.load_model("plus", config=json.dumps(override))
        config = server.model_config("plus")
        assert config.backend == "python"
        assert config.parameters["k"].string_value == "v"
        assert config.max_batch_size == 3  # the model's auto-complete, not config.pbtxt's
        served = await server.infer(InferenceRequest("plus", _x()))
        np.testing.assert_array_equal(served.outputs["Y"], [[102]])
        await server.stop()

    run(body)


def test_with_strict_model_config_a_partial_override_takes_its_files_backend(
    tmp_path: Path,
) -> None:
    write_python_model(tmp_path, "mul", {1: 10})

    async def body() -> None:
        server = InferenceServer(tmp_path, model_control_mode="explicit")
        await server.start()
        # as Triton 2.51: the backend comes from the model file (model.py), nothing else
        await server.load_model("mul", config=json.dumps({"max_batch_size": 2}))
        (loaded,) = server.loaded_versions()
        assert (loaded.name, loaded.backend) == ("mul", "python")
        await server.stop()

    run(body)
