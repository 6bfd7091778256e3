"""Read the repository's deployment files for the offline checks: Dockerfiles and manifests.

A Dockerfile is read as docker reads its instructions (continuation lines joined, comments
dropped, ``ARG`` defaults substituted into ``${NAME}``); manifests are every YAML document
under ``deploy/``. Nothing here talks to docker or to a cluster.
"""

from __future__ import annotations

import json
import re
import shlex
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

ROOT = Path(__file__).resolve().parents[2]
DOCKERFILES = (ROOT / "Dockerfile", ROOT / "Dockerfile.cuda")
DEPLOY = ROOT / "deploy"


@dataclass
class Dockerfile:
    """The instructions of one Dockerfile, in order, and what the header says it is built as."""

    path: Path
    instructions: list[tuple[str, str]] = field(default_factory=list)
    args: dict[str, str] = field(default_factory=dict)
    tags: list[str] = field(default_factory=list)

    def all(self, name: str) -> list[str]:
        return [value for key, value in self.instructions if key == name]

    def one(self, name: str) -> str:
        values = self.all(name)
        assert len(values) == 1, f"{self.path.name}: {len(values)} {name} instructions"
        return values[0]

    def exec_form(self, name: str) -> list[str]:
        """An ENTRYPOINT/CMD in JSON (exec) form; the shell form is refused."""
        value = json.loads(self.one(name))
        assert isinstance(value, list) and all(isinstance(v, str) for v in value), value
        return value

    def expand(self, text: str) -> str:
        """``${NAME}`` and ``$NAME`` replaced by the ARG defaults (what a plain build uses)."""
        return re.sub(
            r"\$\{(\w+)\}|\$(\w+)",
            lambda m: self.args.get(m.group(1) or m.group(2), m.group(0)),
            text,
        )


def read_dockerfile(path: Path) -> Dockerfile:
    result = Dockerfile(path)
    logical = ""
    for raw in path.read_text().splitlines():
        stripped = raw.strip()
        if stripped.startswith("#"):
            tag = re.search(r"docker build .*-t (\S+)", stripped)
            if tag:
                result.tags.append(tag.group(1))
            continue
        if not stripped and not logical:
            continue
        if stripped.endswith("\\"):
            logical += stripped[:-1] + " "
            continue
        logical += stripped
        keyword, _, value = logical.partition(" ")
        result.instructions.append((keyword.upper(), value.strip()))
        if keyword.upper() == "ARG" and "=" in value:
            name, _, default = value.strip().partition("=")
            result.args.setdefault(name, default)
        logical = ""
    assert not logical, f"{path.name} ends inside a continued line"
    return result


def pip_installs(dockerfile: Dockerfile) -> list[list[str]]:
    """The arguments of every ``pip install`` in the RUN instructions, ARGs expanded."""
    found = []
    for run in dockerfile.all("RUN"):
        for command in re.split(r"&&|;", dockerfile.expand(run)):
            words = shlex.split(command)
            if words[:2] == ["pip", "install"]:
                found.append(words[2:])
    return found


def manifest_files() -> list[Path]:
    return sorted(DEPLOY.rglob("*.yaml"))


def documents(path: Path) -> list[dict[str, Any]]:
    """The YAML documents of one file (empty ones dropped)."""
    return [doc for doc in yaml.safe_load_all(path.read_text()) if doc is not None]


def all_documents() -> list[tuple[Path, dict[str, Any]]]:
    return [(path, doc) for path in manifest_files() for doc in documents(path)]


def walk(node: Any, key: str) -> list[Any]:
    """Every value stored under ``key`` anywhere in a document."""
    found = []
    if isinstance(node, dict):
        for k, v in node.items():
            if k == key:
                found.append(v)
            found.extend(walk(v, key))
    elif isinstance(node, list):
        for item in node:
            found.extend(walk(item, key))
    return found
