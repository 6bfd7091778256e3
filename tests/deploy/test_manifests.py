"""Every manifest under deploy/, checked offline: Kubernetes objects against the Kubernetes
schemas bundled with ``kubernetes-validate`` (strict: an unknown key fails), KubeRay custom
resources against the fields of KubeRay's ray.io/v1 API (``kuberay_fields.py``) with their pod
templates and services against the Kubernetes schemas, and the ``headrace`` command lines in
them against headrace's own CLI parser. No cluster and no network: the schemas ship inside the
package (this file passes in a network namespace with loopback only:
``unshare -n sh -c 'ip link set lo up && exec python3 -m pytest tests/deploy'``)."""

from __future__ import annotations

import argparse
import re
import shlex
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml
from deploy_files import ROOT, all_documents, read_dockerfile, walk
from kuberay_fields import (
    API_VERSION,
    K8S,
    KINDS,
    OBJECT_META,
    POD_TEMPLATE,
    SERVICE,
    STRING_MAP,
    TOP_LEVEL,
)

from headrace.cli import build_parser

kubernetes_validate = pytest.importorskip("kubernetes_validate")

# The oldest Kubernetes the manifests are written for (preStop `sleep` is beta, on by
# default, from 1.30) and the newest schema the installed kubernetes-validate bundles.
K8S_VERSIONS = ("1.30", kubernetes_validate.latest_version())
DOCUMENTS = all_documents()
CORE = [(path, doc) for path, doc in DOCUMENTS if not doc["apiVersion"].startswith("ray.io/")]
KUBERAY = [(path, doc) for path, doc in DOCUMENTS if doc["apiVersion"].startswith("ray.io/")]
ENTRYPOINT = read_dockerfile(ROOT / "Dockerfile").exec_form("ENTRYPOINT")


def _id(item: tuple[Path, dict[str, Any]]) -> str:
    path, doc = item
    return f"{path.relative_to(ROOT / 'deploy')}:{doc['kind']}/{doc['metadata']['name']}"


def _validate(doc: dict[str, Any], where: str) -> None:
    for version in K8S_VERSIONS:
        try:
            kubernetes_validate.validate(doc, version, strict=True)
        except kubernetes_validate.ValidationError as exc:
            path = ".".join(str(p) for p in exc.path)
            raise AssertionError(f"{where}: {path}: {exc.message} (Kubernetes {version})") from exc


def test_the_manifests_are_all_found() -> None:
    kinds = {doc["kind"] for _, doc in DOCUMENTS}
    assert {"Deployment", "Service", "HorizontalPodAutoscaler", "NetworkPolicy"} <= kinds
    assert {"RayCluster", "RayJob", "RayService"} <= kinds


@pytest.mark.parametrize("item", CORE, ids=[_id(i) for i in CORE])
def test_kubernetes_objects_match_the_kubernetes_schemas(item: tuple[Path, dict]) -> None:
    _validate(item[1], _id(item))


# --- KubeRay custom resources --------------------------------------------------------------


def _check_fields(value: Any, schema: Any, where: str, core: list[tuple[str, dict]]) -> None:
    """Every key of ``value`` is a field of ``schema``; core types are queued for validation."""
    if isinstance(schema, dict):
        assert isinstance(value, dict), f"{where}: expected an object, got {value!r}"
        for key, item in value.items():
            assert key in schema, f"{where}: unknown field {key!r} (known: {sorted(schema)})"
            _check_fields(item, schema[key], f"{where}.{key}", core)
    elif isinstance(schema, list):
        assert isinstance(value, list), f"{where}: expected a list, got {value!r}"
        for index, item in enumerate(value):
            _check_fields(item, schema[0], f"{where}[{index}]", core)
    elif schema == STRING_MAP:
        assert isinstance(value, dict), f"{where}: expected a map, got {value!r}"
        bad = {k: v for k, v in value.items() if not isinstance(v, str)}
        assert not bad, f"{where}: values must be strings (quote them): {bad}"
    elif schema == POD_TEMPLATE:
        core.append((where, {"apiVersion": "v1", "kind": "PodTemplate",
                             "metadata": {"name": "check"}, "template": value}))  # fmt: skip
    elif schema == SERVICE:
        core.append((where, {"apiVersion": "v1", "kind": "Service", **value}))
    elif schema == OBJECT_META:
        core.append((where, {"apiVersion": "v1", "kind": "ConfigMap", "metadata": value}))
    elif schema == K8S:
        assert value is not None, f"{where}: empty"
    elif isinstance(schema, tuple) and all(isinstance(s, str) for s in schema):
        assert value in schema, f"{where}: {value!r} is not one of {schema}"
    else:
        types = schema if isinstance(schema, tuple) else (schema,)
        ok = isinstance(value, types) and not (isinstance(value, bool) and bool not in types)
        assert ok, f"{where}: {value!r} is not {' or '.join(t.__name__ for t in types)}"


@pytest.mark.parametrize("item", KUBERAY, ids=[_id(i) for i in KUBERAY])
def test_kuberay_resources_use_only_kuberay_fields(item: tuple[Path, dict]) -> None:
    doc, where = item[1], _id(item)
    assert doc["apiVersion"] == API_VERSION, f"{where}: apiVersion {doc['apiVersion']}"
    assert doc["kind"] in KINDS, f"{where}: kind {doc['kind']}"
    assert set(doc) <= TOP_LEVEL, f"{where}: unknown top-level keys {set(doc) - TOP_LEVEL}"
    core: list[tuple[str, dict]] = []
    _check_fields(doc["metadata"], OBJECT_META, f"{where}.metadata", core)
    _check_fields(doc["spec"], KINDS[doc["kind"]], f"{where}.spec", core)
    assert any(d["kind"] == "PodTemplate" for _, d in core), f"{where}: no pod template found"
    for place, wrapped in core:
        _validate(wrapped, place)


def test_the_field_check_reports_a_misspelt_or_misplaced_key() -> None:
    rayservice = next(doc for _, doc in KUBERAY if doc["kind"] == "RayService")
    bad = yaml.safe_load(yaml.safe_dump(rayservice))
    bad["spec"]["rayClusterConfig"]["workerGroupSpecs"][0]["minReplica"] = 1
    with pytest.raises(AssertionError, match="unknown field 'minReplica'"):
        _check_fields(bad["spec"], KINDS["RayService"], "spec", [])
    bad = yaml.safe_load(yaml.safe_dump(rayservice))
    bad["spec"]["rayClusterConfig"]["headGroupSpec"]["rayStartParams"]["num-cpus"] = 0
    with pytest.raises(AssertionError, match="values must be strings"):
        _check_fields(bad["spec"], KINDS["RayService"], "spec", [])
    core: list[tuple[str, dict]] = []
    bad = yaml.safe_load(yaml.safe_dump(rayservice))
    bad["spec"]["rayClusterConfig"]["headGroupSpec"]["template"]["spec"]["containers"][0][
        "volumeMount"
    ] = []
    _check_fields(bad["spec"], KINDS["RayService"], "spec", core)
    with pytest.raises(AssertionError, match="volumeMount"):
        for place, wrapped in core:
            _validate(wrapped, place)


def test_rayservice_serve_config_declares_no_application_and_no_proxy() -> None:
    for _, doc in KUBERAY:
        if doc["kind"] == "RayService":
            config = yaml.safe_load(doc["spec"]["serveConfigV2"])
            assert config == {"proxy_location": "Disabled", "applications": []}


# --- the headrace command lines ------------------------------------------------------------


def _parse(argv: list[str], where: str) -> argparse.Namespace:
    parser = build_parser()
    args, unknown = parser.parse_known_args(argv)
    assert unknown == [], f"{where}: `headrace {shlex.join(argv)}` leaves {unknown}"
    return args


def _commands() -> list[tuple[str, list[str], dict[str, Any]]]:
    """(where, headrace argv, container) for every container that runs headrace."""
    found = []
    for path, doc in DOCUMENTS:
        for container in walk(doc, "containers"):
            for c in container:
                where = f"{_id((path, doc))}:{c['name']}"
                if not c.get("image", "").startswith("headrace:"):
                    continue
                ray_node = doc["apiVersion"].startswith("ray.io/")
                if "command" not in c and not ray_node:  # the image's entrypoint
                    found.append((where, [*ENTRYPOINT[1:], *c.get("args", [])], c))
                    continue
                script = " ".join(c.get("args", []))
                line = re.search(r"exec headrace ((?:\\\n|[^\n])*)", script)
                if line:
                    found.append((where, shlex.split(line.group(1).replace("\\\n", " ")), c))
        if doc["kind"] == "RayJob":
            found.append((_id((path, doc)), shlex.split(doc["spec"]["entrypoint"])[1:], {}))
    return found


COMMANDS = _commands()


def test_headrace_commands_are_found() -> None:
    subcommands = sorted(argv[0] for _, argv, _ in COMMANDS)
    assert subcommands.count("serve") >= 2 and "run" in subcommands, COMMANDS


@pytest.mark.parametrize("item", COMMANDS, ids=[c[0] for c in COMMANDS])
def test_headrace_command_lines_parse(item: tuple[str, list[str], dict]) -> None:
    where, argv, container = item
    args = _parse(argv, where)
    if args.command != "serve":
        return
    assert args.host == "0.0.0.0", where  # a pod is reached on its own address
    ports = {p["name"]: p["containerPort"] for p in container.get("ports", [])}
    assert ports == {"http": args.http_port, "grpc": args.grpc_port,
                     "metrics": args.metrics_port}, where  # fmt: skip
    # SECURITY.md: model control is off or restricted; TLS on both doors; keys from a Secret.
    restricted = " ".join(args.http_restricted_api or [])
    assert args.model_control_mode == "none" or "model-repository" in restricted, where
    assert "model-repository" in restricted and "statistics" in restricted, where
    assert args.http_ssl_cert and args.grpc_use_ssl and args.metrics_restricted, where
    secret_env = {e["name"] for e in container.get("env", []) if "secretKeyRef" in str(e)}
    keys = set(re.findall(r"\$\(?\{?(\w+)", " ".join(argv)))
    assert keys and keys <= secret_env, f"{where}: keys {keys} not all from a Secret"
    for probe, path in (
        ("readinessProbe", "/v2/health/ready"),
        ("livenessProbe", "/v2/health/live"),
    ):
        get = container[probe]["httpGet"]
        assert (get["path"], get["port"], get["scheme"]) == (path, "http", "HTTPS"), where


def test_every_pod_runs_as_the_images_user() -> None:
    contexts = [
        (path.name, context)
        for path, doc in DOCUMENTS
        for template in walk(doc, "template")
        if isinstance(template, dict) and "spec" in template
        for context in [template["spec"].get("securityContext", {})]
    ]
    ours = [(name, c) for name, c in contexts if name in ("deployment.yaml", "rayservice.yaml")]
    assert ours and all(c.get("runAsUser") == 10001 and c.get("runAsNonRoot") for _, c in ours)


# --- the autoscaler's metric ---------------------------------------------------------------


def test_hpa_metric_is_the_adapter_rule_over_metrics_headrace_exports() -> None:
    from headrace.server.metrics import ServerMetrics

    exported = set(re.findall(r"^# TYPE (\w+) ", ServerMetrics(list, gpu=False).render().decode(),
                              re.MULTILINE))  # fmt: skip
    adapter = next(
        doc for _, doc in CORE if doc["metadata"]["name"] == "prometheus-adapter-headrace"
    )
    rules = yaml.safe_load(adapter["data"]["config.yaml"])["rules"]
    (rule,) = rules
    used = set(re.findall(r"\b(nv_\w+)\{", rule["metricsQuery"] + rule["seriesQuery"]))
    assert used == {"nv_inference_queue_duration_us", "nv_inference_request_success"}
    assert used <= exported, used - exported
    hpa = next(doc for _, doc in CORE if doc["kind"] == "HorizontalPodAutoscaler")
    (metric,) = hpa["spec"]["metrics"]
    assert metric["pods"]["metric"]["name"] == rule["name"]["as"]
    target = hpa["spec"]["scaleTargetRef"]
    deployments = {doc["metadata"]["name"] for _, doc in CORE if doc["kind"] == "Deployment"}
    assert target["kind"] == "Deployment" and target["name"] in deployments


def _shell_scripts() -> list[tuple[str, str]]:
    return [
        (f"{_id((path, doc))}:{c['name']}", " ".join(c.get("args", [])))
        for path, doc in DOCUMENTS
        for containers in walk(doc, "containers")
        for c in containers
        if c.get("command", [])[:2] == ["/bin/bash", "-lc"]
    ]


@pytest.mark.parametrize("item", _shell_scripts(), ids=lambda item: item[0])
def test_container_shell_scripts_are_valid_bash(item: tuple[str, str]) -> None:
    where, script = item
    check = subprocess.run(["bash", "-n", "-c", script], capture_output=True, text=True)
    assert check.returncode == 0, f"{where}: {check.stderr}"
    # KubeRay's generated `ray start` runs in every Ray container that sets its own command.
    assert "$KUBERAY_GEN_RAY_START_CMD" in script and "ulimit -n 65536" in script, where
