"""repository/complete.py: a config that names neither platform nor backend, as Triton reads it."""

from __future__ import annotations

from pathlib import Path

import pytest
from tritonclient.grpc import model_config_pb2

from headrace.errors import InvalidConfig
from headrace.repository.complete import complete_config

_ADD = """\
import triton_python_backend_utils as pb_utils


class TritonPythonModel:
    def execute(self, requests):
        return []
"""


def _override(max_batch_size: int) -> model_config_pb2.ModelConfig:
    """What ``load_model(name, config='{"max_batch_size": "16"}')`` sends: no backend."""
    config = model_config_pb2.ModelConfig(max_batch_size=max_batch_size)
    for name in ("INPUT0", "OUTPUT0"):
        tensor = config.input.add() if name.startswith("IN") else config.output.add()
        tensor.name, tensor.data_type = name, model_config_pb2.TYPE_INT32
        tensor.dims.append(16)
    return config


def test_an_override_without_backend_takes_the_one_its_model_file_implies(tmp_path: Path) -> None:
    # NVIDIA's simple_http_model_control.py reloads 'simple' with {"max_batch_size": "16"}.
    version = tmp_path / "simple" / "1"
    version.mkdir(parents=True)
    (version / "model.py").write_text(_ADD)
    completed = complete_config(
        _override(16), model_name="simple", version_dir=str(version), source="load request"
    )
    assert completed.backend == "python"
    assert completed.max_batch_size == 16


def test_without_backend_nor_model_file_it_is_still_refused(tmp_path: Path) -> None:
    version = tmp_path / "simple" / "1"
    version.mkdir(parents=True)
    with pytest.raises(InvalidConfig, match="must specify 'platform' or 'backend'"):
        complete_config(
            _override(16), model_name="simple", version_dir=str(version), source="load request"
        )
