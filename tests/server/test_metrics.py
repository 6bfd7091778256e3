"""Prometheus metrics: Triton's names, model/version labels, no ``_total``, served on a port."""

from __future__ import annotations

import re
import urllib.request

import numpy as np
import pytest
from server_fakes import run, scale_config, scale_factory

from headrace.errors import InvalidInput, ModelExecutionError
from headrace.server.core import InferenceServer
from headrace.server.metrics import MetricsEndpoint, ServerMetrics
from headrace.types import InferenceRequest


def _value(text: str, name: str, **labels: str) -> float:
    wanted = ",".join(f'{k}="{v}"' for k, v in sorted(labels.items()))
    match = re.search(rf"^{name}\{{{re.escape(wanted)}\}} (\S+)$", text, re.MULTILINE)
    assert match, f"{name}{{{wanted}}} not in:\n{text}"
    return float(match.group(1))


def test_metrics_text_has_triton_names_and_labels() -> None:
    async def body() -> str:
        server = InferenceServer()
        await server.start()
        await server.register_model("scale", scale_factory(), scale_config())
        for rows in (1, 3):
            await server.infer(InferenceRequest("scale", {"x": np.ones((rows, 4), np.float32)}))
        with pytest.raises(InvalidInput):
            await server.infer(InferenceRequest("scale", {"x": np.ones((1, 5), np.float32)}))
        with pytest.raises(ModelExecutionError):
            await server.infer(InferenceRequest("scale", {"x": np.full((1, 4), 13, np.float32)}))
        text = ServerMetrics(server.metric_samples, gpu=False).render().decode()
        await server.stop()
        return text

    text = run(body)
    labels = {"model": "scale", "version": "1"}
    assert _value(text, "nv_inference_request_success", **labels) == 2
    assert _value(text, "nv_inference_count", **labels) == 4
    assert _value(text, "nv_inference_exec_count", **labels) == 2
    assert _value(text, "nv_inference_pending_request_count", **labels) == 0
    # the wrong shape was refused before it reached the model: Triton counts it nowhere
    assert _value(text, "nv_inference_request_failure", reason="OTHER", **labels) == 0
    assert _value(text, "nv_inference_request_failure", reason="BACKEND", **labels) == 1
    assert _value(text, "nv_inference_request_duration_us", **labels) > 0
    for name in (
        "nv_inference_queue_duration_us",
        "nv_inference_compute_input_duration_us",
        "nv_inference_compute_infer_duration_us",
        "nv_inference_compute_output_duration_us",
    ):
        assert _value(text, name, **labels) >= 0
    assert "# TYPE nv_inference_request_success counter" in text
    assert "# TYPE nv_inference_pending_request_count gauge" in text
    assert "_total" not in text and "_created" not in text


def test_metrics_endpoint_serves_on_a_bound_port() -> None:
    async def body() -> str:
        server = InferenceServer()
        await server.start()
        await server.register_model("scale", scale_factory(), scale_config())
        await server.infer(InferenceRequest("scale", {"x": np.ones((2, 4), np.float32)}))
        endpoint = MetricsEndpoint(ServerMetrics(server.metric_samples, gpu=False), port=0)
        await endpoint.start()
        assert endpoint.port > 0
        import asyncio

        url = f"http://127.0.0.1:{endpoint.port}/metrics"
        text = await asyncio.to_thread(
            lambda: urllib.request.urlopen(url, timeout=10).read().decode()
        )
        await endpoint.stop()
        await server.stop()
        return text

    text = run(body)
    assert _value(text, "nv_inference_count", model="scale", version="1") == 2
