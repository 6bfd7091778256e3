"""The extras in pyproject.toml install what the README's commands need, and nothing empty."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

tomllib = pytest.importorskip("tomllib")  # Python 3.11+

EXTRAS = tomllib.loads((Path(__file__).parents[1] / "pyproject.toml").read_text())["project"][
    "optional-dependencies"
]


def _requirements(extra: str) -> list[str]:
    """Every requirement ``headrace[extra]`` brings in, through headrace's own extras."""
    found: list[str] = []
    for requirement in EXTRAS[extra]:
        own = re.fullmatch(r"headrace\[([\w,]+)\]", requirement)
        if own:
            for name in own.group(1).split(","):
                found.extend(_requirements(name))
        else:
            found.append(requirement)
    return found


def _client_extras(requirements: list[str]) -> set[str]:
    extras: set[str] = set()
    for requirement in requirements:
        match = re.match(r"tritonclient\[([\w,-]+)\]", requirement)
        if match:
            extras.update(match.group(1).split(","))
    return extras


@pytest.mark.parametrize("extra", ["all", "test"])
def test_both_triton_clients_come_with_the_readme_extras(extra: str) -> None:
    assert {"http", "grpc"} <= _client_extras(_requirements(extra))


# ids are prefixed: a bare "gpu" or "ray" id would read as that marker in conftest.py
@pytest.mark.parametrize("extra", sorted(EXTRAS), ids=lambda name: f"extra-{name}")
def test_no_extra_installs_the_perf_analyzer_placeholder(extra: str) -> None:
    requirements = _requirements(extra)
    assert "all" not in _client_extras(requirements)  # tritonclient[all] pulls perf-analyzer
    assert not [r for r in requirements if r.replace("_", "-").startswith("perf-analyzer")]
