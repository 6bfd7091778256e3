"""InferenceServer: lifecycle, routing, reload/unload, statistics, repository polling."""

from __future__ import annotations

import asyncio
import json
import shutil
import threading
from pathlib import Path

import numpy as np
import pytest
from server_fakes import (
    failing_factory,
    model_py,
    run,
    scale_config,
    scale_factory,
    write_python_model,
)

from headrace.errors import (
    InternalError,
    InvalidConfig,
    InvalidInput,
    ModelExecutionError,
    ModelNotFound,
    ModelNotReady,
    Unavailable,
)
from headrace.server.core import InferenceServer, ServerOptions
from headrace.types import InferenceRequest, RequestedOutput


def _x(rows: int = 2) -> np.ndarray:
    return np.arange(rows * 4, dtype=np.float32).reshape(rows, 4)


def test_infer_returns_requested_outputs_and_echoes_id() -> None:
    async def body() -> None:
        server = InferenceServer()
        await server.start()
        await server.register_model("scale", scale_factory(), scale_config())
        x = _x()
        everything = await server.infer(InferenceRequest("scale", {"x": x}, id="req-7"))
        assert everything.id == "req-7"
        assert everything.model_version == "1"
        assert list(everything.outputs) == ["y", "z"]
        np.testing.assert_allclose(everything.outputs["y"], x * 2)
        only_z = await server.infer(
            InferenceRequest("scale", {"x": x}, outputs=(RequestedOutput("z"),))
        )
        assert list(only_z.outputs) == ["z"]
        np.testing.assert_allclose(only_z.outputs["z"], x + 1)
        assert server.ready() and server.live()
        await server.stop()
        assert not server.live()

    run(body)


def test_validation_errors_reach_the_caller_and_count_nowhere() -> None:
    async def body() -> None:
        server = InferenceServer()
        await server.start()
        await server.register_model("scale", scale_factory(), scale_config())
        bad = np.zeros((3, 5), dtype=np.float32)
        with pytest.raises(
            InvalidInput,
            match=r"unexpected shape for input 'x' for model 'scale'. Expected \[-1,4\], got \[3,5\]",
        ):
            await server.infer(InferenceRequest("scale", {"x": bad}))
        with pytest.raises(ModelNotFound, match="Request for unknown model: 'nope' is not found"):
            await server.infer(InferenceRequest("nope", {"x": _x()}))
        with pytest.raises(
            ModelNotFound, match="Request for unknown model: 'scale' version 2 is not found"
        ):
            await server.infer(InferenceRequest("scale", {"x": _x()}, model_version="2"))
        (stats,) = server.statistics("scale")  # refused before the model: as Triton, uncounted
        assert stats.fail.count == 0 and stats.success.count == 0
        await server.stop()

    run(body)


def test_model_error_fails_only_its_request_and_statistics_count() -> None:
    async def body() -> None:
        server = InferenceServer()
        await server.start()
        await server.register_model("scale", scale_factory(), scale_config())
        for rows in (1, 2, 3):
            await server.infer(InferenceRequest("scale", {"x": _x(rows)}))
        with pytest.raises(ModelExecutionError, match="unlucky 13"):
            await server.infer(InferenceRequest("scale", {"x": np.full((1, 4), 13, np.float32)}))
        response = await server.infer(InferenceRequest("scale", {"x": _x(1)}))
        assert response.outputs["y"].shape == (1, 4)
        (stats,) = server.statistics("scale", "1")
        assert (stats.name, stats.version) == ("scale", "1")
        assert stats.success.count == 4
        assert stats.fail.count == 1
        assert stats.inference_count == 1 + 2 + 3 + 1
        assert stats.execution_count == 4
        assert stats.success.ns > 0 and stats.last_inference_ms > 0
        assert {b.batch_size for b in stats.batch_stats} == {1, 2, 3}
        assert server.statistics() == [stats] or server.statistics()[0].success.count == 4
        await server.stop()

    run(body)


def test_failed_reload_keeps_the_old_version_serving() -> None:
    async def body() -> None:
        server = InferenceServer(model_control_mode="explicit")
        await server.start()
        await server.register_model("scale", scale_factory(factor=3.0), scale_config())
        with pytest.raises(InternalError, match="weights are corrupt"):
            await server.register_model("scale", failing_factory, scale_config())
        response = await server.infer(InferenceRequest("scale", {"x": _x(1)}))
        np.testing.assert_allclose(response.outputs["y"], _x(1) * 3)
        (entry,) = server.repository_index()
        assert (entry.name, entry.version, entry.state) == ("scale", "1", "READY")
        await server.stop()

    run(body)


def test_unload_drains_in_flight_then_refuses() -> None:
    async def body() -> None:
        gate, started = threading.Event(), threading.Event()
        server = InferenceServer(model_control_mode="explicit")
        await server.start()
        await server.register_model(
            "scale", scale_factory(gate=gate, started=started), scale_config()
        )
        in_flight = asyncio.create_task(server.infer(InferenceRequest("scale", {"x": _x(1)})))
        await asyncio.to_thread(started.wait, 10)
        unloading = asyncio.create_task(server.unload_model("scale"))
        await asyncio.sleep(0)  # let the unload start: it must stop routing at once
        with pytest.raises(
            ModelNotFound, match="Request for unknown model: 'scale' has no available versions"
        ):
            await server.infer(InferenceRequest("scale", {"x": _x(1)}))
        with pytest.raises(ModelNotReady, match="'scale' version 1 is not at ready state"):
            await server.infer(InferenceRequest("scale", {"x": _x(1)}, model_version="1"))
        assert not unloading.done()
        gate.set()
        response = await in_flight
        await unloading
        np.testing.assert_allclose(response.outputs["y"], _x(1) * 2)
        assert not server.model_ready("scale")
        (entry,) = server.repository_index()
        assert (entry.state, entry.reason) == ("UNAVAILABLE", "unloaded")
        assert server.repository_index(ready_only=True) == []
        await server.unload_model("never-there")  # nothing to unload: done, as Triton answers
        await server.stop()

    run(body)


def test_load_and_unload_are_refused_outside_explicit_mode(tmp_path: Path) -> None:
    async def body() -> None:
        server = InferenceServer(tmp_path)
        await server.start()
        with pytest.raises(Unavailable, match="not allowed if polling is enabled"):
            await server.load_model("anything")
        await server.stop()

    run(body)


def test_option_errors_name_the_flags(tmp_path: Path) -> None:
    with pytest.raises(InvalidConfig, match="--model-control-mode must be one of none, poll"):
        InferenceServer(tmp_path, model_control_mode="sometimes")  # type: ignore[arg-type]
    with pytest.raises(InvalidConfig, match="--load-model '\\*' must be given alone"):
        InferenceServer(tmp_path, model_control_mode="explicit", load_models=["*", "a"])
    with pytest.raises(InvalidConfig, match="--repository-poll-secs must be positive"):
        ServerOptions(repository_poll_secs=0)
    with pytest.raises(InvalidConfig, match="--run-now-below-us must not be negative"):
        ServerOptions(run_now_below_us=-1)


def test_repository_versions_route_by_version(tmp_path: Path) -> None:
    write_python_model(tmp_path, "mul", {1: 10, 2: 20}, extra="version_policy: { all {} }")

    async def body() -> None:
        server = InferenceServer(tmp_path)
        await server.start()
        assert server.ready()
        x = np.array([[1], [2]], dtype=np.int32)
        latest = await server.infer(InferenceRequest("mul", {"X": x}))
        assert latest.model_version == "2"
        np.testing.assert_array_equal(latest.outputs["Y"], x * 20)
        first = await server.infer(InferenceRequest("mul", {"X": x}, model_version="1"))
        np.testing.assert_array_equal(first.outputs["Y"], x * 10)
        metadata = server.model_metadata("mul")
        assert metadata.versions == ("1", "2") and metadata.batched
        assert [i.name for i in metadata.inputs] == ["X"]
        assert server.model_config("mul", "1").max_batch_size == 4
        assert [(e.version, e.state) for e in server.repository_index()] == [
            ("1", "READY"),
            ("2", "READY"),
        ]
        await server.stop()

    run(body)


def test_explicit_mode_loads_with_config_override_and_files(tmp_path: Path) -> None:
    write_python_model(tmp_path, "mul", {1: 10})
    write_python_model(tmp_path, "other", {1: 5})

    async def body() -> None:
        server = InferenceServer(tmp_path, model_control_mode="explicit", load_models=["mul"])
        await server.start()
        assert server.model_ready("mul") and not server.model_ready("other")
        index = {e.name: e.state for e in server.repository_index()}
        assert index == {"mul": "READY", "other": ""}
        x = np.array([[3]], dtype=np.int32)
        # A config override: max_batch_size 2 instead of 4.
        override = {
            "name": "mul",
            "backend": "python",
            "max_batch_size": 2,
            "input": [{"name": "X", "data_type": "TYPE_INT32", "dims": [1]}],
            "output": [{"name": "Y", "data_type": "TYPE_INT32", "dims": [1]}],
        }
        await server.load_model("mul", config=json.dumps(override))
        assert server.model_config("mul").max_batch_size == 2
        with pytest.raises(
            InvalidInput, match="batch-size must be <= 2 for 'mul'; input 'X' has 3"
        ):
            await server.infer(InferenceRequest("mul", {"X": np.ones((3, 1), np.int32)}))
        # Files: a whole new model.py replaces the repository's.
        files = {"file:1/model.py": model_py(7).encode()}
        await server.load_model("mul", config=json.dumps(override), files=files)
        response = await server.infer(InferenceRequest("mul", {"X": x}))
        np.testing.assert_array_equal(response.outputs["Y"], x * 7)
        with pytest.raises(
            InternalError,
            match=r"^failed to load 'mul', failed to poll from model repository: .*JSON",
        ):
            await server.load_model("mul", config="{nope")
        with pytest.raises(
            InternalError, match=r"^failed to load 'ghost', failed to poll from model repository"
        ):
            await server.load_model("ghost")
        await server.stop()

    run(body)


def test_failed_repository_reload_keeps_serving_and_reports(tmp_path: Path) -> None:
    model_dir = write_python_model(tmp_path, "mul", {1: 10})

    async def body() -> None:
        server = InferenceServer(tmp_path, model_control_mode="explicit", load_models=["mul"])
        await server.start()
        (model_dir / "config.pbtxt").write_text('name: "mul"\nbackend: "python"\nbogus_field: 1\n')
        with pytest.raises(Exception, match="bogus_field"):
            await server.load_model("mul")
        x = np.array([[2]], dtype=np.int32)
        response = await server.infer(InferenceRequest("mul", {"X": x}))
        np.testing.assert_array_equal(response.outputs["Y"], x * 10)
        assert server.model_ready("mul")
        await server.stop()

    run(body)


def test_poll_loads_new_reloads_changed_and_unloads_removed(tmp_path: Path) -> None:
    write_python_model(tmp_path, "mul", {1: 10})

    async def body() -> None:
        server = InferenceServer(
            tmp_path, model_control_mode="poll", options=ServerOptions(repository_poll_secs=3600)
        )
        await server.start()
        x = np.array([[1]], dtype=np.int32)
        write_python_model(tmp_path, "added", {1: 3})
        (tmp_path / "mul" / "1" / "model.py").write_text(model_py(11) + "\n# changed\n")
        await server.poll_once()
        added = await server.infer(InferenceRequest("added", {"X": x}))
        np.testing.assert_array_equal(added.outputs["Y"], x * 3)
        changed = await server.infer(InferenceRequest("mul", {"X": x}))
        np.testing.assert_array_equal(changed.outputs["Y"], x * 11)
        shutil.rmtree(tmp_path / "added")
        await server.poll_once()
        with pytest.raises(ModelNotFound):
            await server.infer(InferenceRequest("added", {"X": x}))
        assert [e.name for e in server.repository_index()] == ["mul"]
        await server.stop()

    run(body)


def test_broken_repository_model_is_unavailable_with_reason(tmp_path: Path) -> None:
    write_python_model(tmp_path, "mul", {1: 10})
    (tmp_path / "broken").mkdir()
    (tmp_path / "broken" / "config.pbtxt").write_text('name: "broken"\nbackend: "python"\n')

    async def body() -> None:
        server = InferenceServer(tmp_path, options=ServerOptions(exit_on_error=False))
        await server.start()
        index = {e.name: e for e in server.repository_index()}
        assert index["mul"].state == "READY"
        assert index["broken"].state == "UNAVAILABLE" and "version" in index["broken"].reason
        assert not server.ready()  # strict readiness: one model did not load
        with pytest.raises((ModelNotReady, ModelNotFound)):
            await server.infer(InferenceRequest("broken", {"X": np.ones((1, 1), np.int32)}))
        await server.stop()

    run(body)


def test_an_instance_group_of_two_cpu_instances_serves_on_two_instances() -> None:
    from tritonclient.grpc import model_config_pb2

    async def body() -> None:
        config = scale_config()
        config.instance_group.add(count=2, kind=model_config_pb2.ModelInstanceGroup.KIND_CPU)
        server = InferenceServer()
        await server.start()
        await server.register_model("scale", scale_factory(), config)
        (loaded,) = server.loaded_versions()
        assert [instance.name for instance in loaded.pool.instances] == ["scale_0_0", "scale_0_1"]
        result = await server.infer(InferenceRequest("scale", {"x": _x()}))
        np.testing.assert_allclose(result.outputs["y"], _x() * 2)
        await server.stop()

    run(body)


@pytest.mark.gpu
def test_auto_instances_land_on_the_gpu() -> None:
    devices: list[str] = []

    def factory(context):  # type: ignore[no-untyped-def]
        devices.append(context.device)
        return scale_factory()(context)

    async def body() -> None:
        server = InferenceServer()
        await server.start()
        await server.register_model("scale", factory, scale_config())
        response = await server.infer(InferenceRequest("scale", {"x": _x()}))
        np.testing.assert_allclose(response.outputs["y"], _x() * 2)
        await server.stop()

    run(body)
    assert devices and devices[0] == "cuda:0"
    assert all(device.startswith("cuda:") for device in devices)
