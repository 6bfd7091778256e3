"""Which runtime a model's Python code gets: its parameter, else the server's default."""

from __future__ import annotations

import pytest
from tritonclient.grpc import model_config_pb2

from headrace.errors import InvalidConfig
from headrace.server.models.loading import python_runtime
from headrace.server.options import ServerOptions


def config(runtime: str = "") -> model_config_pb2.ModelConfig:
    result = model_config_pb2.ModelConfig(name="m", backend="python")
    if runtime:
        result.parameters["HEADRACE_PYTHON_RUNTIME"].string_value = runtime
    return result


@pytest.mark.parametrize(
    ("parameter", "backend", "default", "expected"),
    [
        ("", "python", "process", "process"),
        ("", "python", "in-server", "in-server"),
        ("in-server", "python", "process", "in-server"),
        ("process", "python", "in-server", "process"),
        ("", "python_callable", "process", "in-server"),
        ("process", "python_callable", "in-server", "process"),
        ("", "onnxruntime", "process", ""),
    ],
)
def test_the_parameter_wins_over_the_default(
    parameter: str, backend: str, default: str, expected: str
) -> None:
    assert python_runtime(config(parameter), backend, default) == expected


def test_an_unknown_runtime_is_refused_naming_the_choices() -> None:
    with pytest.raises(InvalidConfig, match="is 'elsewhere'; use one of process, in-server"):
        python_runtime(config("elsewhere"), "python", "process")


def test_the_parameter_is_refused_on_other_backends() -> None:
    with pytest.raises(InvalidConfig, match="applies to python models only"):
        python_runtime(config("process"), "onnxruntime", "process")


def test_the_server_option_is_checked() -> None:
    with pytest.raises(InvalidConfig, match="--python-runtime must be process or in-server"):
        ServerOptions(python_runtime="threads")
