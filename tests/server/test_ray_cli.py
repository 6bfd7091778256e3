"""``headrace serve --ray-address …``: the flags, their defaults, and which models go to Ray."""

from __future__ import annotations

import argparse
import logging

import pytest

from headrace.config import ModelConfig
from headrace.errors import InvalidConfig
from headrace.server.models.loading import VersionSource, _ray_builder
from headrace.server.options import RayServing
from headrace.server.ray_cli import add_ray_arguments, ray_serving


def _parse(*flags: str) -> argparse.Namespace:
    parser = argparse.ArgumentParser()
    add_ray_arguments(parser)
    return parser.parse_args(list(flags))


def test_off_by_default_and_every_flag_shows_its_default() -> None:
    assert ray_serving(_parse()) is None
    parser = argparse.ArgumentParser()
    add_ray_arguments(parser)
    for action in parser._actions[1:]:
        assert "default" in (action.help or ""), action.dest


def test_flags_become_ray_serving() -> None:
    assert ray_serving(_parse("--ray-address", "local")) == RayServing(address="")
    serving = ray_serving(
        _parse(
            "--ray-address",
            "ray://head:10001",
            "--ray-num-gpus-per-instance",
            "0.25",
            "--ray-max-restarts",
            "3",
            "--ray-namespace",
            "prod",
        )
    )
    assert serving == RayServing("ray://head:10001", 0.25, 3, "prod")
    shared = ray_serving(_parse("--ray-address", "auto", "--ray-namespace", "p", "--ray-share"))
    assert shared is not None and shared.share
    waiting = ray_serving(_parse("--ray-address", "auto", "--ray-placement-timeout", "600"))
    assert waiting is not None and waiting.placement_timeout_s == 600.0
    assert RayServing().placement_timeout_s == 0.0  # fail fast unless asked to wait


@pytest.mark.parametrize(
    ("flags", "message"),
    [
        (("--ray-num-gpus-per-instance", "0"), "--ray-num-gpus-per-instance must be positive"),
        (("--ray-max-restarts", "-2"), "--ray-max-restarts must be -1 or more, got -2"),
        (("--ray-share",), "--ray-share needs --ray-namespace"),
        (("--ray-placement-timeout", "-1"), "--ray-placement-timeout must be 0 or more, got -1"),
    ],
)
def test_bad_values_name_the_flag(flags: tuple[str, ...], message: str) -> None:
    with pytest.raises(InvalidConfig, match=message):
        ray_serving(_parse("--ray-address", "auto", *flags))


def _source(decoupled: bool) -> VersionSource:
    config = ModelConfig(name="m", max_batch_size=4)
    config.model_transaction_policy.decoupled = decoupled
    return VersionSource("m", 1, config, factory=lambda context: None)


def test_a_decoupled_model_stays_in_the_server_and_says_so(
    caplog: pytest.LogCaptureFixture,
) -> None:
    from headrace.engine.ray_executor import RayExecutor

    serving = RayServing(
        address="auto", num_gpus_per_instance=0.5, namespace="ns", placement_timeout_s=30
    )
    assert _ray_builder(_source(False), None) is None
    builder = _ray_builder(_source(False), serving)
    assert isinstance(builder, RayExecutor)  # made without joining Ray
    assert (builder.address, builder.num_gpus, builder.namespace) == ("auto", 0.5, "ns")
    assert builder.placement_timeout_s == 30
    with caplog.at_level(logging.WARNING):
        assert _ray_builder(_source(True), serving) is None
    assert "model 'm' is decoupled" in caplog.text and "--ray-address" in caplog.text
