"""Shared test configuration: markers that need hardware or Ray are skipped when absent."""

from __future__ import annotations

import os

import pytest


def _has_gpu() -> bool:
    try:
        import torch
    except ImportError:
        return False
    return torch.cuda.is_available()


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    skip_gpu = pytest.mark.skip(reason="needs a GPU")
    skip_ray = pytest.mark.skip(
        reason="needs HEADRACE_RAY_TESTS=1 inside a private network namespace"
    )
    gpu = _has_gpu()
    ray_ok = os.environ.get("HEADRACE_RAY_TESTS") == "1"
    for item in items:
        if "gpu" in item.keywords and not gpu:
            item.add_marker(skip_gpu)
        if "ray" in item.keywords and not ray_ok:
            item.add_marker(skip_ray)


@pytest.fixture(scope="module")
def ray_cpus():  # type: ignore[no-untyped-def]
    """A local Ray with two CPUs for one test module (ray-marked tests only)."""
    ray = pytest.importorskip("ray")
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
    yield ray
    ray.shutdown()


def _http_server_params() -> list[object]:
    import importlib.util

    missing = importlib.util.find_spec("granian") is None
    granian = pytest.mark.skipif(missing, reason="granian is not installed (headrace[serve])")
    return ["aiohttp", pytest.param("granian", marks=granian)]


@pytest.fixture(scope="module", params=_http_server_params())
def http_server(request: pytest.FixtureRequest) -> str:
    """Each HTTP server the HTTP door runs on (``--http-server``), one module pass each."""
    return str(request.param)
