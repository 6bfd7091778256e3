"""The response cache behind the server core: hits, misses, statistics, metrics, refusals."""

from __future__ import annotations

import logging
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from server_fakes import ScaleBackend, run, scale_config, scale_factory, write_python_model
from test_ensemble import ensemble, python_model

from headrace.config import ModelConfig
from headrace.errors import InvalidConfig
from headrace.server.core import InferenceServer, ServerOptions
from headrace.server.metrics import ServerMetrics
from headrace.types import InferenceRequest, Outputs, RequestedOutput


def _cached_config(name: str = "scale", dynamic: bool = False) -> ModelConfig:
    config = scale_config(name, dynamic=dynamic)
    config.response_cache.enable = True
    return config


def _x(value: float = 1.0) -> np.ndarray:
    return np.full((1, 4), value, dtype=np.float32)


async def _server(cache_bytes: int = 1 << 20, **factory: object) -> InferenceServer:
    server = InferenceServer(options=ServerOptions(response_cache_bytes=cache_bytes))
    await server.start()
    await server.register_model("scale", scale_factory(**factory), _cached_config())
    return server


@pytest.mark.parametrize("dynamic", [False, True])
def test_a_repeated_request_hits_and_executes_nothing(dynamic: bool) -> None:
    async def body() -> None:
        server = InferenceServer(options=ServerOptions(response_cache_bytes=1 << 20))
        await server.start()
        batches: list[int] = []
        config = _cached_config(dynamic=dynamic)
        await server.register_model("scale", scale_factory(batches=batches), config)
        first = await server.infer(InferenceRequest("scale", {"x": _x()}, id="a"))
        second = await server.infer(InferenceRequest("scale", {"x": _x()}, id="b"))
        assert batches == [1]
        assert second.id == "b" and second.model_version == "1"
        assert list(second.outputs) == list(first.outputs) == ["y", "z"]
        for name in first.outputs:
            assert second.outputs[name].dtype == first.outputs[name].dtype
            np.testing.assert_array_equal(second.outputs[name], first.outputs[name])
        (stats,) = server.statistics("scale")
        assert (stats.success.count, stats.execution_count, stats.inference_count) == (2, 1, 1)
        assert (stats.cache_hit.count, stats.cache_miss.count) == (1, 1)
        assert stats.queue.count == 2
        assert stats.cache_miss.ns > 0 and stats.cache_hit.ns > 0
        await server.stop()

    run(body)


def test_different_inputs_or_requested_outputs_miss() -> None:
    async def body() -> None:
        server = await _server()
        await server.infer(InferenceRequest("scale", {"x": _x(1)}))
        await server.infer(InferenceRequest("scale", {"x": _x(2)}))
        only_z = await server.infer(
            InferenceRequest("scale", {"x": _x(1)}, outputs=(RequestedOutput("z"),))
        )
        again = await server.infer(
            InferenceRequest("scale", {"x": _x(1)}, outputs=(RequestedOutput("z"),))
        )
        everything = await server.infer(InferenceRequest("scale", {"x": _x(1)}))
        assert list(only_z.outputs) == list(again.outputs) == ["z"]
        assert list(everything.outputs) == ["y", "z"]
        (stats,) = server.statistics("scale")
        assert (stats.cache_miss.count, stats.cache_hit.count, stats.execution_count) == (3, 2, 3)
        await server.stop()

    run(body)


def test_a_failed_request_is_not_cached() -> None:
    async def body() -> None:
        server = await _server()
        for _ in range(2):
            with pytest.raises(Exception, match="unlucky 13"):
                await server.infer(InferenceRequest("scale", {"x": _x(13)}))
        (stats,) = server.statistics("scale")
        assert (stats.fail.count, stats.cache_hit.count, stats.cache_miss.count) == (2, 0, 0)
        await server.stop()

    run(body)


def test_streamed_requests_hit_too() -> None:
    async def body() -> None:
        server = await _server()
        answers = []
        for _ in range(2):
            async for sent in server.stream(InferenceRequest("scale", {"x": _x(3)})):
                answers.append(sent)
        assert all(a.final and a.response is not None for a in answers)
        np.testing.assert_array_equal(
            answers[0].response.outputs["y"], answers[1].response.outputs["y"]
        )
        (stats,) = server.statistics("scale")
        assert (stats.cache_hit.count, stats.execution_count) == (1, 1)
        await server.stop()

    run(body)


def test_without_a_server_cache_a_model_that_enables_one_runs_uncached(
    caplog: pytest.LogCaptureFixture,
) -> None:
    async def body() -> None:
        server = InferenceServer()
        await server.start()
        with caplog.at_level(logging.WARNING):
            await server.register_model("scale", scale_factory(), _cached_config())
        for _ in range(2):
            await server.infer(InferenceRequest("scale", {"x": _x()}))
        (stats,) = server.statistics("scale")
        assert (stats.execution_count, stats.cache_hit.count, stats.cache_miss.count) == (2, 0, 0)
        assert server.cache_report() is None
        text = ServerMetrics(server.metric_samples, gpu=False, cache=server.cache_report)
        rendered = text.render().decode()
        assert 'nv_cache_num_hits_per_model{model="scale",version="1"} 0' in rendered
        assert "nv_cache_util" not in rendered
        await server.stop()

    run(body)
    assert "enables response_cache, but the server has no cache" in caplog.text


def test_a_model_without_response_cache_is_not_cached() -> None:
    async def body() -> None:
        server = InferenceServer(options=ServerOptions(response_cache_bytes=1 << 20))
        await server.start()
        await server.register_model("scale", scale_factory(), scale_config())
        for _ in range(2):
            await server.infer(InferenceRequest("scale", {"x": _x()}))
        (stats,) = server.statistics("scale")
        assert (stats.execution_count, stats.cache_hit.count) == (2, 0)
        rendered = ServerMetrics(server.metric_samples, gpu=False, cache=server.cache_report)
        text = rendered.render().decode()
        assert "nv_cache_num_hits_per_model" not in text
        assert "nv_cache_num_entries 0" in text
        await server.stop()

    run(body)


def test_metrics_have_tritons_cache_names() -> None:
    async def body() -> str:
        server = await _server()
        for value in (1, 1, 2):
            await server.infer(InferenceRequest("scale", {"x": _x(value)}))
        metrics = ServerMetrics(server.metric_samples, gpu=False, cache=server.cache_report)
        text = metrics.render().decode()
        await server.stop()
        return text

    text = run(body)
    for line in (
        'nv_cache_num_hits_per_model{model="scale",version="1"} 1',
        'nv_cache_num_misses_per_model{model="scale",version="1"} 2',
        "# TYPE nv_cache_hit_duration_per_model counter",
        "# TYPE nv_cache_miss_duration_per_model counter",
        'nv_inference_request_success{model="scale",version="1"} 3',
        'nv_inference_exec_count{model="scale",version="1"} 2',
        "nv_cache_num_entries 2",
        "nv_cache_num_hits 1",
        "nv_cache_num_misses 2",
        "nv_cache_num_lookups 3",
        "nv_cache_num_evictions 0",
        "# TYPE nv_cache_util gauge",
        "# TYPE nv_cache_lookup_duration gauge",
        "# TYPE nv_cache_insertion_duration gauge",
    ):
        assert line in text, line


def test_a_reloaded_model_never_replays_its_old_answers() -> None:
    async def body() -> None:
        server = await _server(factor=2.0)
        before = await server.infer(InferenceRequest("scale", {"x": _x()}))
        await server.register_model("scale", scale_factory(factor=3.0), _cached_config())
        after = await server.infer(InferenceRequest("scale", {"x": _x()}))
        np.testing.assert_array_equal(before.outputs["y"], _x() * 2)
        np.testing.assert_array_equal(after.outputs["y"], _x() * 3)
        (stats,) = server.statistics("scale")
        assert (stats.cache_miss.count, stats.cache_hit.count) == (1, 0)  # the new version's
        await server.stop()

    run(body)


def test_eviction_makes_an_old_request_miss_again() -> None:
    async def body() -> None:
        # room for one response of two FP32 [1, 4] outputs (the entry's size is 128 + 2 * 65
        # + 2 * 16 bytes), not two
        server = await _server(cache_bytes=400)
        for value in (1, 2, 1):
            await server.infer(InferenceRequest("scale", {"x": _x(value)}))
        (stats,) = server.statistics("scale")
        assert (stats.cache_miss.count, stats.cache_hit.count) == (3, 0)
        report = server.cache_report()
        assert report is not None and report.evictions == 2 and report.entries == 1
        await server.stop()

    run(body)


def test_ensembles_cache_at_the_top_and_in_their_steps(tmp_path: Path) -> None:
    """Triton 2.51 caches an ensemble's top-level requests and each composing model's own."""
    python_model(tmp_path, "double", ["A"], {"B": "A * 2"})
    ensemble(tmp_path, "ens", ["X"], ["Y"], [("double", {"A": "X"}, {"B": "Y"})])
    ensemble(tmp_path, "other", ["X"], ["Y"], [("double", {"A": "X"}, {"B": "Y"})])
    for name in ("double", "ens"):
        with open(tmp_path / name / "config.pbtxt", "a") as config:
            config.write("response_cache { enable: true }\n")

    async def body() -> None:
        server = InferenceServer(tmp_path, options=ServerOptions(response_cache_bytes=1 << 20))
        await server.start()
        x = np.arange(4, dtype=np.float32)[None]
        for model in ("ens", "ens", "other"):
            response = await server.infer(InferenceRequest(model, {"X": x}))
            np.testing.assert_array_equal(response.outputs["Y"], x * 2)
        stats = {s.name: s for s in server.statistics()}
        assert (stats["ens"].cache_hit.count, stats["ens"].cache_miss.count) == (1, 1)
        assert stats["other"].success.count == 1  # not cached: its step is
        assert (stats["double"].cache_hit.count, stats["double"].cache_miss.count) == (1, 1)
        assert stats["double"].execution_count == 1
        await server.stop()

    run(body)


@pytest.mark.parametrize(
    ("extra", "why"),
    [
        ("model_transaction_policy { decoupled: true }", "with 'decoupled' transaction policy"),
        ("sequence_batching { }", "with sequence batching scheduler"),
    ],
)
def test_decoupled_and_sequence_models_refuse_a_cache(tmp_path: Path, extra: str, why: str) -> None:
    write_python_model(tmp_path, "m", {1: 2}, extra=extra + "\nresponse_cache { enable: true }")

    async def body() -> None:
        server = InferenceServer(tmp_path, model_control_mode="explicit")
        await server.start()
        with pytest.raises(
            InvalidConfig, match=f"Response Cache does not currently support model m {why}"
        ):
            await server.load_model("m")
        await server.stop()

    run(body)


class _TorchScale(ScaleBackend):
    """y = 2x, z = x + 1 as torch tensors on the instance's device: on a GPU the outputs
    reach the sink as views of the pipeline's pinned host slots, which later batches reuse."""

    accepts_torch = True

    def execute(self, inputs: Mapping[str, Any]) -> Outputs:
        import torch

        x = torch.as_tensor(inputs["x"], device=self.device)
        return {"y": 2 * x, "z": x + 1}


@pytest.mark.gpu
def test_a_hit_on_a_gpu_model_survives_the_reuse_of_its_output_slot() -> None:
    async def body() -> None:
        server = InferenceServer(options=ServerOptions(response_cache_bytes=1 << 20))
        await server.start()
        config = _cached_config()
        await server.register_model("scale", lambda context: _TorchScale(context), config)
        first = await server.infer(InferenceRequest("scale", {"x": _x(1)}))
        first_y = np.array(first.outputs["y"])
        for value in range(2, 10):  # more batches than the pipeline has slots
            await server.infer(InferenceRequest("scale", {"x": _x(value)}))
        again = await server.infer(InferenceRequest("scale", {"x": _x(1)}))
        np.testing.assert_array_equal(again.outputs["y"], first_y)
        np.testing.assert_array_equal(again.outputs["y"], _x(1) * 2)
        (stats,) = server.statistics("scale")
        assert (stats.cache_hit.count, stats.execution_count) == (1, 9)
        await server.stop()

    run(body)
