"""The Dockerfiles, checked offline (no docker here): what they install exists, what they run
parses as a real ``headrace serve`` command line, and they agree with each other and with the
Kubernetes and KubeRay manifests that name their images."""

from __future__ import annotations

import argparse
import re

import pytest
from deploy_files import (
    DOCKERFILES,
    ROOT,
    Dockerfile,
    all_documents,
    pip_installs,
    read_dockerfile,
    walk,
)
from packaging.requirements import Requirement

from headrace.cli import build_parser

tomllib = pytest.importorskip("tomllib")  # Python 3.11+

PROJECT = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
EXTRAS = PROJECT["optional-dependencies"]
IMAGES = {path.name: read_dockerfile(path) for path in DOCKERFILES}
CPU, CUDA = IMAGES["Dockerfile"], IMAGES["Dockerfile.cuda"]
both = pytest.mark.parametrize("dockerfile", list(IMAGES.values()), ids=list(IMAGES))


def _headrace_extras(dockerfile: Dockerfile) -> set[str]:
    """The extras of every ``pip install .[...]`` (the package from the build context)."""
    extras: set[str] = set()
    for words in pip_installs(dockerfile):
        for word in words:
            match = re.fullmatch(r"\.\[([\w,-]+)\]", word)
            if match:
                extras.update(match.group(1).split(","))
    return extras


def _pinned(dockerfile: Dockerfile, name: str) -> str:
    """The version of ``name`` that the pip installs pin with ``==``."""
    pins = {
        str(req.specifier).removeprefix("==")
        for words in pip_installs(dockerfile)
        for word in words
        if not word.startswith(("-", ".", "http"))
        for req in [Requirement(word)]
        if req.name == name and str(req.specifier).startswith("==")
    }
    assert len(pins) == 1, f"{dockerfile.path.name}: {name} pinned as {pins}"
    return pins.pop()


def _serve_args(dockerfile: Dockerfile) -> argparse.Namespace:
    argv = dockerfile.exec_form("ENTRYPOINT") + dockerfile.exec_form("CMD")
    assert argv[0] == "headrace", argv
    try:
        return build_parser().parse_args(argv[1:])
    except SystemExit as exc:  # argparse's way of refusing a flag
        raise AssertionError(f"{dockerfile.path.name}: `{' '.join(argv)}` does not parse") from exc


@both
def test_every_extra_installed_exists_in_pyproject(dockerfile: Dockerfile) -> None:
    extras = _headrace_extras(dockerfile)
    assert extras, f"{dockerfile.path.name} installs no headrace extras"
    assert extras <= set(EXTRAS), extras - set(EXTRAS)
    assert "serve" in extras and "ray" in extras


def test_cpu_image_has_onnxruntime_and_cuda_image_onnxruntime_gpu() -> None:
    assert {"onnx", "torch"} <= _headrace_extras(CPU)
    assert "gpu" in _headrace_extras(CUDA)
    # onnxruntime-gpu and onnxruntime install the same module: never both (pyproject.toml).
    assert "onnx" not in _headrace_extras(CUDA)
    assert any(r.startswith("onnxruntime-gpu") for r in EXTRAS["gpu"])
    assert "--index-url" in pip_installs(CPU)[0] and "/cpu" in CPU.args["TORCH_INDEX_URL"]


@both
def test_entrypoint_is_headrace_serve_on_every_interface(dockerfile: Dockerfile) -> None:
    args = _serve_args(dockerfile)
    assert args.command == "serve"
    assert args.host == "0.0.0.0"  # inside the container, loopback reaches no one
    exposed = {int(port) for port in dockerfile.one("EXPOSE").split()}
    assert exposed == {args.http_port, args.grpc_port, args.metrics_port} == {8000, 8001, 8002}


@both
def test_healthcheck_asks_the_http_door_for_readiness(dockerfile: Dockerfile) -> None:
    check = dockerfile.one("HEALTHCHECK")
    assert "http://127.0.0.1:8000/v2/health/ready" in check
    assert "CMD" in check


@both
def test_runs_as_a_non_root_user_with_a_fixed_uid(dockerfile: Dockerfile) -> None:
    assert dockerfile.one("USER").split(":")[0] == "10001"
    assert any("useradd --uid 10001" in run for run in dockerfile.all("RUN"))


def test_both_images_share_python_ray_torch_and_command() -> None:
    for name in ("PYTHON_VERSION", "RAY_VERSION", "TORCH_VERSION"):
        assert CPU.args[name] == CUDA.args[name], name
    assert _pinned(CPU, "ray") == _pinned(CUDA, "ray") == CPU.args["RAY_VERSION"]
    assert _pinned(CPU, "torch") == _pinned(CUDA, "torch")
    torch_range = Requirement(next(r for r in EXTRAS["torch"] if r.startswith("torch"))).specifier
    assert _pinned(CPU, "torch") in torch_range
    ray_range = Requirement(EXTRAS["ray"][0]).specifier
    assert CPU.args["RAY_VERSION"] in ray_range
    assert CPU.exec_form("ENTRYPOINT") == CUDA.exec_form("ENTRYPOINT")
    assert CPU.exec_form("CMD") == CUDA.exec_form("CMD")
    assert "ubuntu24.04" in CUDA.args["CUDA_IMAGE"]  # whose python3 is 3.12
    assert CUDA.args["PYTHON_VERSION"] == "3.12"


def test_kuberay_manifests_use_the_images_ray_version() -> None:
    versions = {
        (path.name, version)
        for path, doc in all_documents()
        if doc["apiVersion"].startswith("ray.io/")
        for version in walk(doc, "rayVersion")
    }
    assert versions, "no KubeRay manifest names a rayVersion"
    assert {version for _, version in versions} == {CPU.args["RAY_VERSION"]}, versions


def test_every_manifest_image_is_one_the_dockerfiles_build() -> None:
    built = {tag for dockerfile in IMAGES.values() for tag in dockerfile.tags}
    assert built == {"headrace:latest", "headrace:latest-cuda"}
    named = {(path.name, image) for path, doc in all_documents() for image in walk(doc, "image")}
    assert named
    assert {image for _, image in named} <= built, [n for n in named if n[1] not in built]
