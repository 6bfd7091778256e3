"""Choosing the HTTP server (``--http-server``): the factory, the option, the missing extra."""

from __future__ import annotations

import sys

import pytest

from headrace.errors import InvalidConfig, MissingDependency
from headrace.server.app import FrontendOptions
from headrace.server.core import InferenceServer
from headrace.server.http.options import HttpOptions
from headrace.server.http.servers import DEFAULT_HTTP_SERVER, HTTP_SERVERS, make_http_frontend


def test_each_server_is_offered_and_the_default_is_one_of_them() -> None:
    assert HTTP_SERVERS == ("aiohttp", "granian")
    assert DEFAULT_HTTP_SERVER in HTTP_SERVERS
    assert FrontendOptions().http_server == DEFAULT_HTTP_SERVER


def test_an_unknown_server_is_refused_naming_the_choices() -> None:
    with pytest.raises(InvalidConfig, match="--http-server must be one of aiohttp, granian"):
        FrontendOptions(http_server="tornado")
    with pytest.raises(ValueError, match="unknown HTTP server 'tornado'"):
        make_http_frontend("tornado", InferenceServer(), "127.0.0.1", 0)


def test_granian_missing_names_the_extra(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "granian._granian", None)  # import fails as if absent
    with pytest.raises(MissingDependency, match=r"pip install 'headrace\[serve\]'"):
        make_http_frontend("granian", InferenceServer(), "127.0.0.1", 0)


def test_aiohttp_needs_no_granian(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "granian", None)
    frontend = make_http_frontend("aiohttp", InferenceServer(), "127.0.0.1", 0)
    assert type(frontend).__name__ == "HttpFrontend"


def test_serve_help_shows_the_flag_and_its_default(capsys: pytest.CaptureFixture[str]) -> None:
    from headrace.cli import build_parser

    with pytest.raises(SystemExit):
        build_parser().parse_args(["serve", "--help"])
    out = " ".join(capsys.readouterr().out.split())
    assert "--http-server {aiohttp,granian}" in out
    assert f"(default {DEFAULT_HTTP_SERVER})" in out


@pytest.mark.parametrize("http_server", ["aiohttp", "granian"])
def test_both_servers_take_one_options_object(http_server: str) -> None:
    pytest.importorskip(http_server)
    options = HttpOptions(max_body_bytes=1 << 20, header_timeout_s=2.0, reuse_port=True)
    frontend = make_http_frontend(http_server, InferenceServer(), "127.0.0.1", 0, options)
    assert type(frontend).__name__ == {"aiohttp": "HttpFrontend"}.get(
        http_server, "GranianHttpFrontend"
    )
    with pytest.raises(ValueError, match="--max-body-bytes must be positive, got 0"):
        HttpOptions(max_body_bytes=0)
