"""The restricted-API flags' parsing, the HTTP path and gRPC method groups, the exposure warning."""

from __future__ import annotations

import pytest
from tritonclient.grpc import service_pb2

from headrace.errors import InvalidConfig
from headrace.server.grpc.restricted import METHOD_GROUPS
from headrace.server.http.restricted import api_group, refusal
from headrace.server.http.routes import ROUTES
from headrace.server.security import (
    API_GROUPS,
    GRPC_KEY_PREFIX,
    Restriction,
    SecurityOptions,
    is_loopback,
    parse_restricted,
)


def test_parse_maps_each_group_to_its_key() -> None:
    parsed = parse_restricted(
        ["health,metadata:Admin-Key=v1", "inference:other=v2"], "--http-restricted-api", "api"
    )
    assert parsed.groups == {
        "health": Restriction("admin-key", "v1"),
        "metadata": Restriction("admin-key", "v1"),
        "inference": Restriction("other", "v2"),
    }


def test_parse_puts_triton_prefix_before_grpc_keys() -> None:
    parsed = parse_restricted(["statistics:k=v"], "--grpc-restricted-protocol", "protocol",
                              prefix=GRPC_KEY_PREFIX)  # fmt: skip
    assert parsed.groups["statistics"].header == "triton-grpc-protocol-k"


@pytest.mark.parametrize("text", ["health", "health:k", ":k=v", "health:=v", "health:k="])
def test_parse_refuses_malformed_values_in_triton_words(text: str) -> None:
    with pytest.raises(InvalidConfig, match="option format is '<config name>:<setting>=<value>'"):
        parse_restricted([text], "--http-restricted-api", "api")


def test_value_compared_exactly() -> None:
    key = Restriction("k", "secret")
    assert key.allows("secret")
    assert not key.allows("Secret")
    assert not key.allows("secret ")
    assert not key.allows(None)
    assert not key.allows("")


def test_every_http_route_has_a_group() -> None:
    for route in ROUTES:
        path = route.pattern.replace("{version:[0-9]+}", "1")
        for name in ("model", "region"):
            path = path.replace("{" + name + "}", "x")
        assert api_group(path) in API_GROUPS, route


@pytest.mark.parametrize(
    ("path", "group"),
    [
        ("/v2", "metadata"),
        ("/v2/health/live", "health"),
        ("/v2/models/m/ready", "health"),
        ("/v2/models/m/versions/3/ready", "health"),
        ("/v2/models/m", "metadata"),
        ("/v2/models/m/config", "model-config"),
        ("/v2/models/stats", "statistics"),
        ("/v2/models/m/stats", "statistics"),
        ("/v2/models/m/generate_stream", "inference"),
        ("/v2/repository/index", "model-repository"),
        ("/v2/cudasharedmemory/region/r/register", "shared-memory"),
        ("/v2/trace/setting", "trace"),
        ("/v2/models/m/trace/setting", "trace"),
        ("/v2/logging", "logging"),
        ("/metrics", None),
        ("/v2/unknown", None),
    ],
)
def test_http_groups_as_triton_decides_them(path: str, group: str | None) -> None:
    assert api_group(path) == group


def test_every_grpc_method_has_a_group() -> None:
    service = service_pb2.DESCRIPTOR.services_by_name["GRPCInferenceService"]
    assert {m.name for m in service.methods} == set(METHOD_GROUPS)
    assert set(METHOD_GROUPS.values()) == set(API_GROUPS)


def test_refusal_is_tritons_403() -> None:
    restricted = parse_restricted(["inference:k=v"], "--http-restricted-api", "api")
    refused = refusal(restricted, "/v2/models/m/infer", {})
    assert refused is not None
    assert (refused.status, refused.content_type) == (403, "text/plain")
    assert refused.body == b'{"error":"This API is restricted, expecting header \'k\'"}'
    assert refusal(restricted, "/v2/models/m/infer", {"k": "v"}) is None
    assert refusal(restricted, "/v2/models/m", {}) is None


@pytest.mark.parametrize(
    ("host", "loopback"),
    [
        ("127.0.0.1", True),
        ("::1", True),
        ("localhost", True),
        ("0.0.0.0", False),
        ("10.1.2.3", False),
    ],
)
def test_loopback(host: str, loopback: bool) -> None:
    assert is_loopback(host) is loopback


def test_open_model_control_beyond_loopback_is_warned() -> None:
    assert SecurityOptions().exposure_warnings("127.0.0.1", "explicit") == []
    assert SecurityOptions().exposure_warnings("0.0.0.0", "none") == []
    warnings = SecurityOptions().exposure_warnings("0.0.0.0", "explicit")
    assert len(warnings) == 2
    assert "--http-restricted-api model-repository:KEY=VALUE" in warnings[0]
    guarded = SecurityOptions(
        http_restricted=parse_restricted(["model-repository:k=v"], "f", "api"),
        grpc_restricted=parse_restricted(["model-repository:k=v"], "f", "protocol"),
    )
    assert guarded.exposure_warnings("0.0.0.0", "explicit") == []


def test_serve_flags_become_security_options() -> None:
    import argparse

    from headrace.server.security_cli import add_security_arguments, security_options

    parser = argparse.ArgumentParser()
    add_security_arguments(parser)
    args = parser.parse_args(
        [
            "--http-restricted-api=statistics:k=v",
            "--grpc-restricted-protocol=inference:g=w",
            "--metrics-restricted=m=x",
            "--metrics-address=127.0.0.1",
            "--grpc-use-ssl-mutual",
            "--grpc-server-cert=c.pem",
            "--grpc-server-key=k.pem",
            "--grpc-root-cert=ca.pem",
            "--http-ssl-cert=h.pem",
            "--http-ssl-key=hk.pem",
            "--http-header-timeout=2.5",
            "--http-body-timeout=7",
            "--http-keepalive-timeout=90",
            "--grpc-max-concurrent-streams=64",
        ]
    )
    options = security_options(args)
    assert options.http_restricted.groups == {"statistics": Restriction("k", "v")}
    assert options.grpc_restricted.groups == {
        "inference": Restriction("triton-grpc-protocol-g", "w")
    }
    assert options.metrics_restricted == Restriction("m", "x")
    assert options.metrics_address == "127.0.0.1"
    assert options.grpc_tls.enabled and options.grpc_tls.mutual
    assert (options.http_tls.cert, options.http_tls.key) == ("h.pem", "hk.pem")
    assert (options.http_header_timeout_s, options.http_body_timeout_s) == (2.5, 7.0)
    assert options.http_keepalive_timeout_s == 90.0
    assert options.grpc_max_concurrent_streams == 64


@pytest.mark.parametrize(
    ("flags", "use_ssl"),
    [([], False), (["--grpc-use-ssl"], True), (["--grpc-use-ssl=true"], True),
     (["--grpc-use-ssl=false"], False), (["--grpc-use-ssl", "0"], False)],
)  # fmt: skip
def test_grpc_use_ssl_takes_tritons_boolean_forms(flags: list[str], use_ssl: bool) -> None:
    import argparse

    from headrace.server.security_cli import add_security_arguments

    parser = argparse.ArgumentParser()
    add_security_arguments(parser)
    assert parser.parse_args(flags).grpc_use_ssl is use_ssl


def test_every_security_and_bound_flag_shows_its_default() -> None:
    import argparse

    from headrace.server.security_cli import add_security_arguments

    parser = argparse.ArgumentParser()
    add_security_arguments(parser)
    flags = [a for a in parser._actions if a.option_strings and a.dest != "help"]
    assert {"--default-max-queue-size", "--max-shared-memory-regions"} <= {
        f for a in flags for f in a.option_strings
    }
    for action in flags:
        assert action.help is not None and "default" in action.help, action.option_strings
