"""The one ``headrace serve`` launcher: its command, and a server that dies while starting."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

from headrace.bench import serve_launch
from headrace.errors import Unavailable


def test_the_command_binds_loopback_on_port_zero_and_reports_its_ports(tmp_path: Path) -> None:
    command = serve_launch.serve_command(tmp_path / "repo", tmp_path / "p.json", ["-v"])
    assert command[:4] == [sys.executable, "-m", "headrace.cli", "serve"]
    for flag in ("--http-port", "--grpc-port", "--metrics-port"):
        assert command[command.index(flag) + 1] == "0"
    assert command[command.index("--host") + 1] == "127.0.0.1"
    assert command[command.index("--ports-file") + 1] == str(tmp_path / "p.json")
    assert command[-1] == "-v"


def test_a_server_that_exits_is_reported_with_its_log(tmp_path: Path) -> None:
    with pytest.raises(Unavailable, match=r"exited with .* before it could write its ports file"):
        serve_launch.launch(tmp_path / "no-such-repository", tmp_path, timeout_s=60.0)
    assert (tmp_path / "serve.log").is_file()
