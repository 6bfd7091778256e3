"""What ``headrace serve`` does at start, as ``tritonserver`` 2.51 does, with unmodified tritonclient.

Side by side with Triton 2.51 (``../shared/tools/tritonserver``, same repositories), recorded
while writing these tests:

- a missing root: ``error: creating server: Internal - failed to stat file /no/such/dir``,
  exit 1; a plain file: ``... repository path is not a valid directory``, exit 1;
- a model that fails to load, default flags: the others load, then ``error: creating server:
  Internal - failed to load all models``, exit 1;
- ``--exit-on-error=false``: serves the others; ``/v2/health/ready`` is 400 and gRPC
  ServerReady false while a model is unavailable, unless ``--strict-readiness=false`` (200 /
  true); a model of a backend it lacks is UNAVAILABLE with ``unable to find backend library
  for backend 'tensorrt'`` and does not change that;
- a model without ``config.pbtxt`` loads by default (``--strict-model-config`` is false);
- the repository index lists a model directory added after start, with no state.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import tritonclient.grpc as grpcclient
import tritonclient.http as httpclient
from google.protobuf import json_format
from serve_process import ServeProcess, start_server
from triton_process import TRITON_MISSING, triton_server
from tritonclient.utils import InferenceServerException

TIMEOUT_S = 120

_DOUBLE_PY = """\
import triton_python_backend_utils as pb_utils


class TritonPythonModel:
    def execute(self, requests):
        responses = []
        for request in requests:
            x = pb_utils.get_input_tensor_by_name(request, "INPUT0").as_numpy()
            output = pb_utils.Tensor("OUTPUT0", (x * 2).astype(x.dtype))
            responses.append(pb_utils.InferenceResponse(output_tensors=[output]))
        return responses
"""

_SELF_DESCRIBING_PY = """\
import triton_python_backend_utils as pb_utils


class TritonPythonModel:
    @staticmethod
    def auto_complete_config(config):
        config.add_input({"name": "INPUT0", "data_type": "TYPE_FP32", "dims": [4]})
        config.add_output({"name": "OUTPUT0", "data_type": "TYPE_FP32", "dims": [4]})
        config.set_max_batch_size(8)
        return config

    def execute(self, requests):
        responses = []
        for request in requests:
            x = pb_utils.get_input_tensor_by_name(request, "INPUT0").as_numpy()
            output = pb_utils.Tensor("OUTPUT0", x + 1)
            responses.append(pb_utils.InferenceResponse(output_tensors=[output]))
        return responses
"""

_CONFIG = """\
name: "{name}"
{where}
max_batch_size: 8
input {{ name: "INPUT0" data_type: TYPE_FP32 dims: [ 4 ] }}
output {{ name: "OUTPUT0" data_type: TYPE_FP32 dims: [ 4 ] }}
"""


def _model(root: Path, name: str, code: str | None, where: str = 'backend: "python"') -> None:
    version = root / name / "1"
    version.mkdir(parents=True)
    if code is not None:
        (version / "model.py").write_text(code)
    (root / name / "config.pbtxt").write_text(_CONFIG.format(name=name, where=where))


def _good_repository(root: Path) -> Path:
    """``double`` (config.pbtxt) and ``noconf`` (no config.pbtxt: its model.py describes it)."""
    _model(root, "double", _DOUBLE_PY)
    (root / "noconf" / "1").mkdir(parents=True)
    (root / "noconf" / "1" / "model.py").write_text(_SELF_DESCRIBING_PY)
    return root


def _mixed_repository(root: Path) -> Path:
    """The good models plus ``broken`` (raises at import) and ``trt`` (a TensorRT plan)."""
    _good_repository(root)
    _model(root, "broken", _DOUBLE_PY + "\nraise RuntimeError('weights are corrupt')\n")
    _model(root, "trt", None, where='platform: "tensorrt_plan"')
    (root / "trt" / "1" / "model.plan").write_bytes(b"not an engine")
    return root


def _serve(*args: str) -> subprocess.CompletedProcess[str]:
    """``headrace serve`` that is expected to exit by itself."""
    command = [sys.executable, "-m", "headrace.cli", "serve", *args]
    ports = ["--http-port=0", "--grpc-port=0", "--metrics-port=0"]
    return subprocess.run(
        [*command, *ports], capture_output=True, text=True, timeout=TIMEOUT_S, check=False
    )


def _error_lines(result: subprocess.CompletedProcess[str]) -> list[str]:
    return [line for line in result.stderr.splitlines() if line.startswith("headrace: error:")]


def _x() -> np.ndarray:
    return np.arange(8, dtype=np.float32).reshape(2, 4)


def _infer(client: Any, module: Any, model: str) -> np.ndarray:
    tensor = module.InferInput("INPUT0", [2, 4], "FP32")
    tensor.set_data_from_numpy(_x())
    return client.infer(model, [tensor]).as_numpy("OUTPUT0")


def _index(client: Any) -> dict[str, dict[str, str]]:
    reply = client.get_model_repository_index()
    if not isinstance(reply, list):
        reply = json_format.MessageToDict(reply, preserving_proto_field_name=True).get("models", [])
    return {entry["name"]: entry for entry in reply}


@contextmanager
def _clients(server: ServeProcess) -> Iterator[list[tuple[Any, Any]]]:
    """An HTTP and a gRPC client with their tritonclient modules."""
    http = httpclient.InferenceServerClient(server.http_url)
    grpc = grpcclient.InferenceServerClient(server.grpc_url)
    try:
        yield [(http, httpclient), (grpc, grpcclient)]
    finally:
        http.close()
        grpc.close()


def _stop(server: ServeProcess) -> None:
    code = server.stop()
    assert code == 0, f"headrace serve exited with {code} after SIGTERM\n{server.log_tail()}"


# -- the repository root --------------------------------------------------------------------


def test_a_missing_repository_is_refused_in_one_line(tmp_path: Path) -> None:
    missing = tmp_path / "no" / "such" / "dir"
    result = _serve(str(missing))
    assert result.returncode == 1
    assert _error_lines(result) == [f"headrace: error: model repository '{missing}' does not exist"]


def test_a_file_as_repository_is_refused_in_one_line(tmp_path: Path) -> None:
    plain = tmp_path / "repo.txt"
    plain.write_text("not a directory")
    result = _serve(str(plain))
    assert result.returncode == 1
    assert _error_lines(result) == [
        f"headrace: error: model repository '{plain}' is not a directory"
    ]


# -- --exit-on-error ------------------------------------------------------------------------


def test_a_model_failing_at_start_stops_the_server_naming_it(tmp_path: Path) -> None:
    result = _serve(str(_mixed_repository(tmp_path / "repo")))
    assert result.returncode == 1, result.stderr[-2000:]
    (line,) = _error_lines(result)
    assert line.startswith("headrace: error: failed to load all models: ")
    assert "'broken'" in line and "weights are corrupt" in line
    assert "unable to find backend library for backend 'tensorrt'" in line
    assert "'double'" not in line and "'noconf'" not in line
    assert "--exit-on-error=false" in line


def test_with_strict_model_config_a_model_without_config_fails_the_start(tmp_path: Path) -> None:
    result = _serve(str(_good_repository(tmp_path / "repo")), "--strict-model-config=true")
    assert result.returncode == 1, result.stderr[-2000:]
    (line,) = _error_lines(result)
    assert "'noconf'" in line and "config.pbtxt" in line and "'double'" not in line


# -- --exit-on-error=false with and without --strict-readiness -------------------------------


@pytest.fixture(scope="module")
def mixed(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return _mixed_repository(tmp_path_factory.mktemp("startup-mixed") / "repo")


@pytest.mark.parametrize("strict", ["true", "false"])
def test_without_exit_on_error_readiness_follows_strict_readiness(
    tmp_path: Path, mixed: Path, strict: str
) -> None:
    args = ["--exit-on-error=false", f"--strict-readiness={strict}"]
    server = start_server(mixed, tmp_path, args, ready=strict == "false")
    try:
        with _clients(server) as clients:
            for client, module in clients:
                assert client.is_server_live()
                assert client.is_server_ready() is (strict == "false")
                np.testing.assert_array_equal(_infer(client, module, "double"), _x() * 2)
                np.testing.assert_array_equal(_infer(client, module, "noconf"), _x() + 1)
                for name in ("broken", "trt"):
                    assert not client.is_model_ready(name)
                entries = _index(client)
                assert entries["trt"]["state"] == "UNAVAILABLE"
                assert (
                    "unable to find backend library for backend 'tensorrt'"
                    in (entries["trt"]["reason"])
                )
                with pytest.raises(InferenceServerException) as caught:
                    _infer(client, module, "broken")
                assert caught.value.message().startswith(
                    "Request for unknown model: 'broken' has no available versions"
                )
    finally:
        _stop(server)


# -- explicit mode: a directory added after start, a partial config override -------------------


def test_explicit_mode_lists_and_loads_a_model_added_after_start(tmp_path: Path) -> None:
    repository = _good_repository(tmp_path / "repo")
    server = start_server(
        repository, tmp_path, ["--model-control-mode=explicit", "--load-model=double"]
    )
    try:
        shutil.copytree(repository / "double", repository / "later")
        config = (repository / "later" / "config.pbtxt").read_text()
        (repository / "later" / "config.pbtxt").write_text(config.replace('"double"', '"later"'))
        with _clients(server) as clients:
            for client, _ in clients:
                entries = _index(client)
                assert set(entries) == {"double", "noconf", "later"}
                assert entries["later"].get("state", "") == ""  # never loaded: no state
            for client, module in clients:
                client.load_model("later")
                np.testing.assert_array_equal(_infer(client, module, "later"), _x() * 2)
                client.unload_model("later")
    finally:
        _stop(server)


def test_a_partial_config_override_replaces_the_config_as_triton_does(tmp_path: Path) -> None:
    """Triton 2.51 loads an override of only ``instance_group`` as the whole config: the
    backend comes from ``model.py``, inputs, outputs and ``max_batch_size`` from its
    ``auto_complete_config``; nothing is merged from a config.pbtxt."""
    repository = _good_repository(tmp_path / "repo")
    server = start_server(repository, tmp_path, ["--model-control-mode=explicit"])
    try:
        with _clients(server) as clients:
            for client, module in clients:
                override = {"instance_group": [{"kind": "KIND_CPU", "count": 2}]}
                client.load_model("noconf", config=json.dumps(override))
                config = client.get_model_config("noconf")
                if not isinstance(config, dict):
                    config = json_format.MessageToDict(config, preserving_proto_field_name=True)
                    config = config["config"]
                assert config["backend"] == "python"
                assert int(config["max_batch_size"]) == 8
                assert [int(group["count"]) for group in config["instance_group"]] == [2]
                np.testing.assert_array_equal(_infer(client, module, "noconf"), _x() + 1)
                client.unload_model("noconf")
    finally:
        _stop(server)


# -- help -----------------------------------------------------------------------------------


def test_help_shows_the_defaults_of_the_startup_flags() -> None:
    result = subprocess.run(
        [sys.executable, "-m", "headrace.cli", "serve", "--help"],
        capture_output=True,
        text=True,
        timeout=TIMEOUT_S,
        check=True,
    )
    text = " ".join(result.stdout.split())
    for flag, default in (
        ("--exit-on-error", "true"),
        ("--strict-readiness", "true"),
        ("--strict-model-config", "false"),
    ):
        assert flag in text
        start = text.rindex(flag + " BOOL")  # the option, not the usage line
        assert f"(default {default})" in text[start : start + 400], flag


# -- side by side with Triton 2.51 ----------------------------------------------------------


def _answers(http_url: str, grpc_url: str, repository: Path) -> dict[str, Any]:
    """What a server answers after ``double`` was loaded and unloaded and ``later`` added."""
    answers: dict[str, Any] = {}
    http = httpclient.InferenceServerClient(http_url)
    grpc = grpcclient.InferenceServerClient(grpc_url)
    try:
        http.load_model("double")
        http.unload_model("double")
        if not (repository / "later").exists():
            shutil.copytree(repository / "noconf", repository / "later")
        for label, client, module in (("http", http, httpclient), ("grpc", grpc, grpcclient)):
            for model, version in (("double", ""), ("double", "1"), ("nope", "")):
                tensor = module.InferInput("INPUT0", [2, 4], "FP32")
                tensor.set_data_from_numpy(_x())
                try:
                    client.infer(model, [tensor], model_version=version)
                    answers[f"{label} {model} {version}"] = "served"
                except InferenceServerException as exc:
                    answers[f"{label} {model} {version}"] = (exc.status(), exc.message())
            answers[f"{label} index"] = sorted(_index(client))
    finally:
        http.close()
        grpc.close()
    return answers


@pytest.mark.skipif(TRITON_MISSING, reason="../shared/tools/tritonserver is not installed")
def test_unloaded_and_unknown_models_answer_as_triton(tmp_path: Path) -> None:
    """Status codes equal; headrace's message is Triton's, then headrace's detail."""
    ours_repo = _good_repository(tmp_path / "ours")
    theirs_repo = _good_repository(tmp_path / "theirs")
    explicit = ["--model-control-mode=explicit"]
    with triton_server(theirs_repo, tmp_path, explicit) as triton:
        theirs = _answers(triton.http_url, triton.grpc_url, theirs_repo)
    server = start_server(ours_repo, tmp_path, explicit)
    try:
        ours = _answers(server.http_url, server.grpc_url, ours_repo)
    finally:
        _stop(server)
    assert ours.keys() == theirs.keys()
    for key, answer in theirs.items():
        if key.endswith("index"):
            assert ours[key] == answer == ["double", "later", "noconf"], key
            continue
        status, message = answer
        assert ours[key][0] == status, (key, ours[key], answer)
        assert ours[key][1].startswith(message), (key, ours[key], answer)
