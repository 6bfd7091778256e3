"""The model registry: dependency order, cycles, unload_dependents and routing."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from server_fakes import run, write_python_model

from headrace.errors import InvalidConfig, ModelNotFound
from headrace.server.core import InferenceServer
from headrace.server.models.registry import dependencies
from headrace.server.options import ServerOptions
from headrace.types import InferenceRequest

ENSEMBLE = """
name: "{name}"
platform: "ensemble"
max_batch_size: 4
input [ {{ name: "X" data_type: TYPE_INT32 dims: [ 1 ] }} ]
output [ {{ name: "Y" data_type: TYPE_INT32 dims: [ 1 ] }} ]
ensemble_scheduling {{
  step [ {{
    model_name: "{step}"
    model_version: -1
    input_map {{ key: "X" value: "X" }}
    output_map {{ key: "Y" value: "Y" }}
  }} ]
}}
"""


def write_ensemble(root: Path, name: str, step: str) -> None:
    (root / name / "1").mkdir(parents=True)
    (root / name / "config.pbtxt").write_text(ENSEMBLE.format(name=name, step=step))


def states(server: InferenceServer) -> dict[str, tuple[str, str]]:
    return {e.name: (e.state, e.reason) for e in server.repository_index()}


def test_dependencies_are_the_ensemble_steps(tmp_path: Path) -> None:
    from headrace.config import parse_config

    config = parse_config(ENSEMBLE.format(name="e", step="zeta"))
    assert dependencies(config) == ["zeta"]
    assert dependencies(parse_config('name: "m" backend: "python"')) == []


def test_a_model_that_uses_another_loads_after_it(tmp_path: Path) -> None:
    write_python_model(tmp_path, "zeta", {1: 3})
    write_ensemble(tmp_path, "alpha", "zeta")  # sorts first, needs zeta

    async def body() -> None:
        server = InferenceServer(tmp_path, model_control_mode="explicit", load_models=["alpha"])
        await server.start()
        found = states(server)
        assert found["zeta"][0] == "READY"  # loaded because alpha needs it
        assert found["alpha"][0] == "READY"
        served = await server.infer(InferenceRequest("alpha", {"X": np.array([[4]], np.int32)}))
        np.testing.assert_array_equal(served.outputs["Y"], [[12]])
        route = server.models.route("zeta")
        assert (route.name, route.version, [s.name for s in route.inputs]) == ("zeta", 1, ["X"])
        x = np.array([[2]], dtype=np.int32)
        result = await route.scheduler.schedule({"X": x})  # what an ensemble step would do
        np.testing.assert_array_equal(result["Y"], x * 3)
        await server.stop()

    run(body)


def test_a_missing_dependency_names_both_models(tmp_path: Path) -> None:
    write_ensemble(tmp_path, "alpha", "nowhere")

    async def body() -> None:
        server = InferenceServer(tmp_path, model_control_mode="explicit")
        await server.start()
        with pytest.raises(InvalidConfig, match=r"'alpha' needs model 'nowhere'.*not in the"):
            await server.load_model("alpha")
        await server.stop()

    run(body)


def test_a_dependency_cycle_is_refused_naming_it(tmp_path: Path) -> None:
    write_ensemble(tmp_path, "one", "two")
    write_ensemble(tmp_path, "two", "one")

    async def body() -> None:
        server = InferenceServer(tmp_path, model_control_mode="explicit")
        await server.start()
        with pytest.raises(InvalidConfig, match="depends on itself: one -> two -> one"):
            await server.load_model("one")
        await server.stop()

    run(body)


def test_unload_dependents_unloads_the_models_that_use_it(tmp_path: Path) -> None:
    write_python_model(tmp_path, "base", {1: 2})
    write_python_model(tmp_path, "other", {1: 5})
    write_ensemble(tmp_path, "uses_base", "base")

    async def body() -> None:
        server = InferenceServer(tmp_path, model_control_mode="explicit", load_models=["*"])
        await server.start()
        await server.unload_model("base", unload_dependents=True)
        found = states(server)
        assert found["base"] == ("UNAVAILABLE", "unloaded")
        assert found["uses_base"] == ("UNAVAILABLE", "unloaded")
        assert found["other"][0] == "READY"
        with pytest.raises(ModelNotFound):
            server.models.route("nope")
        await server.stop()

    run(body)


def test_the_index_lists_each_version_of_a_model_that_failed_or_was_unloaded(
    tmp_path: Path,
) -> None:
    """As NVIDIA Triton 2.51 answers (checked side by side on the same repository): a version
    that failed to load, and each version of an unloaded model, shows with UNAVAILABLE and
    the reason; a model whose config cannot be read has no version to show."""
    write_python_model(tmp_path, "two", {1: 2, 2: 3}, extra="version_policy: { all: {} }")
    write_python_model(tmp_path, "broken", {1: 2})
    (tmp_path / "broken" / "1" / "model.py").write_text(
        "class TritonPythonModel:\n"
        "    def initialize(self, args):\n"
        "        raise RuntimeError('broken on purpose')\n"
        "    def execute(self, requests):\n"
        "        return []\n"
    )
    write_python_model(tmp_path, "unreadable", {1: 2})
    (tmp_path / "unreadable" / "config.pbtxt").write_text('name: "unreadable" max_batch_size: x')

    def index(server: InferenceServer) -> dict[tuple[str, str], tuple[str, str]]:
        return {(e.name, e.version): (e.state, e.reason) for e in server.repository_index()}

    async def body() -> None:
        server = InferenceServer(
            tmp_path,
            model_control_mode="explicit",
            load_models=["two", "broken", "unreadable"],
            options=ServerOptions(exit_on_error=False),
        )
        await server.start()
        found = index(server)
        assert found[("two", "1")] == found[("two", "2")] == ("READY", "")
        state, reason = found[("broken", "1")]
        assert state == "UNAVAILABLE" and "broken on purpose" in reason
        assert [key for key in found if key[0] == "unreadable"] == [("unreadable", "")]
        assert found[("unreadable", "")][0] == "UNAVAILABLE"
        await server.unload_model("two")
        found = index(server)
        assert found[("two", "1")] == found[("two", "2")] == ("UNAVAILABLE", "unloaded")
        await server.load_model("two")
        assert index(server)[("two", "2")] == ("READY", "")
        await server.stop()

    run(body)


def test_after_one_version_fails_the_others_are_listed_as_unloaded(tmp_path: Path) -> None:
    """Triton 2.51, side by side: version 1 loads, version 2's initialize raises; the model
    serves no version, and the index says "unloaded" of version 1 and the error of 2."""
    write_python_model(tmp_path, "partial", {1: 2, 2: 3}, extra="version_policy: { all: {} }")
    (tmp_path / "partial" / "2" / "model.py").write_text(
        "class TritonPythonModel:\n"
        "    def initialize(self, args):\n"
        "        raise RuntimeError('version two broken')\n"
        "    def execute(self, requests):\n"
        "        return []\n"
    )

    async def body() -> None:
        server = InferenceServer(
            tmp_path,
            model_control_mode="explicit",
            load_models=["partial"],
            options=ServerOptions(exit_on_error=False),
        )
        await server.start()
        found = {(e.name, e.version): (e.state, e.reason) for e in server.repository_index()}
        assert found[("partial", "1")] == ("UNAVAILABLE", "unloaded")
        state, reason = found[("partial", "2")]
        assert state == "UNAVAILABLE" and "version two broken" in reason
        (tmp_path / "partial" / "2" / "model.py").write_text(
            (tmp_path / "partial" / "1" / "model.py").read_text()
        )
        await server.load_model("partial")  # mended: both serve, no reasons left over
        found = {(e.name, e.version): (e.state, e.reason) for e in server.repository_index()}
        assert found[("partial", "1")] == found[("partial", "2")] == ("READY", "")
        await server.unload_model("partial")
        found = {(e.name, e.version): (e.state, e.reason) for e in server.repository_index()}
        assert found[("partial", "1")] == found[("partial", "2")] == ("UNAVAILABLE", "unloaded")
        await server.stop()

    run(body)


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("[" * 100_000 + "]" * 100_000, "nests too deeply"),
        ('{"a":' * 100_000 + "1" + "}" * 100_000, "nests too deeply"),
        ("[" + "1," * 100_000 + "1]", "must be a JSON object, got '[1,1,1,"),
    ],
    ids=["lists", "objects", "long-list"],
)
def test_load_config_overrides_nested_or_long_are_refused_briefly(text: str, message: str) -> None:
    """The config of a load request is JSON inside JSON; Python's parser recursed into a
    RecursionError (a 500) on deep nesting, and a refusal quoted the whole text."""
    from headrace.errors import InvalidInput
    from headrace.server.models.sources import parse_override

    with pytest.raises(InvalidInput) as caught:
        parse_override("m", text)
    assert message in caught.value.message and len(caught.value.message) < 200
