"""What the server tells a backend about where it runs."""

from __future__ import annotations

from headrace.config import ModelConfig
from headrace.server.models.loading import VersionSource


def test_instances_loaded_by_the_server_know_they_share_cores_with_its_frontends() -> None:
    source = VersionSource("m", 1, ModelConfig(name="m"), factory=lambda context: None)
    assert source.context().serving
    # direct and offline use (bench scan, headrace run) build contexts that do not say so
    from headrace.backends.base import BackendContext

    assert not BackendContext("m", 1, "", "", ModelConfig(name="m")).serving
