"""Ensembles side by side: headrace and NVIDIA Triton 2.51 serve the same repository.

    python benchmarks/ensemble_vs_triton.py [--out benchmarks/results/ensemble_vs_triton.json]

The repository holds Triton python-backend models (``model.py``) and three ensembles over
them: a chain, a diamond (fan-out then fan-in) and an ensemble of ensembles. Both servers
load it unchanged (explicit mode, ensembles only: their steps load with them), and one client
script sends the same requests to both over HTTP and gRPC: plain requests, a batch, and one
whose step fails. It compares the outputs, the error statuses and the ensembles' statistics
(inference and execution counts, successes), prints a table and writes every answer to the
JSON. Needs ``../shared/tools/tritonserver`` (it installs itself on first use).
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import textwrap
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import numpy as np

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE / "serve_models"))

import servers  # noqa: E402

ENSEMBLES = ("chain", "diamond", "outer")
OUTPUTS = {"chain": ["OUT"], "diamond": ["DIFF", "SUM"], "outer": ["OUT"]}

MODEL_PY = """
import numpy as np
import triton_python_backend_utils as pb_utils

OUTPUTS = {outputs!r}


class TritonPythonModel:
    def execute(self, requests):
        responses = []
        for request in requests:
            values = {{t.name(): t.as_numpy() for t in request.inputs()}}
            if {fails_on_negative} and (values[next(iter(values))] < 0).any():
                raise ValueError("negative input")
            outputs = [
                pb_utils.Tensor(name, np.asarray(eval(expr, {{"np": np}}, values)))
                for name, expr in OUTPUTS.items()
            ]
            responses.append(pb_utils.InferenceResponse(output_tensors=outputs))
        return responses
"""


def _tensors(names: list[str], dtype: str = "TYPE_FP32") -> str:
    return ", ".join(f'{{ name: "{n}" data_type: {dtype} dims: [ 4 ] }}' for n in names)


def python_model(
    root: Path, name: str, inputs: list[str], outputs: dict[str, str], fails: bool = False
) -> None:
    """A python-backend model: FP32 [4] inputs, each output a numpy expression of them."""
    (root / name / "1").mkdir(parents=True)
    (root / name / "config.pbtxt").write_text(
        f'name: "{name}"\nbackend: "python"\nmax_batch_size: 8\n'
        f"input [ {_tensors(inputs)} ]\noutput [ {_tensors(list(outputs))} ]\n"
    )
    source = MODEL_PY.format(outputs=outputs, fails_on_negative=fails)
    (root / name / "1" / "model.py").write_text(textwrap.dedent(source))


def ensemble(
    root: Path,
    name: str,
    inputs: list[str],
    outputs: list[str],
    steps: list[tuple[str, dict[str, str], dict[str, str]]],
) -> None:
    """An ensemble config; each step is (model, input_map, output_map)."""
    (root / name / "1").mkdir(parents=True)

    def maps(kind: str, mapping: dict[str, str]) -> str:
        return " ".join(f'{kind} {{ key: "{k}" value: "{v}" }}' for k, v in mapping.items())

    text = ", ".join(
        f'{{ model_name: "{model}" model_version: -1 {maps("input_map", i)} '
        f"{maps('output_map', o)} }}"
        for model, i, o in steps
    )
    (root / name / "config.pbtxt").write_text(
        f'name: "{name}"\nplatform: "ensemble"\nmax_batch_size: 8\n'
        f"input [ {_tensors(inputs)} ]\noutput [ {_tensors(outputs)} ]\n"
        f"ensemble_scheduling {{ step [ {text} ] }}\n"
    )


def write_repository(root: Path) -> None:
    python_model(root, "double", ["X"], {"Y": "X * 2"})
    python_model(root, "triple", ["X"], {"Y": "X * 3"})
    python_model(root, "plus_one", ["X"], {"Y": "X + 1"}, fails=True)
    python_model(root, "add_sub", ["A", "B"], {"SUM": "A + B", "DIFF": "A - B"})
    ensemble(
        root,
        "chain",
        ["IN"],
        ["OUT"],
        [("double", {"X": "IN"}, {"Y": "mid"}), ("plus_one", {"X": "mid"}, {"Y": "OUT"})],
    )
    ensemble(
        root,
        "diamond",
        ["IN"],
        ["SUM", "DIFF"],
        [
            ("double", {"X": "IN"}, {"Y": "twice"}),
            ("triple", {"X": "IN"}, {"Y": "thrice"}),
            ("add_sub", {"A": "twice", "B": "thrice"}, {"SUM": "SUM", "DIFF": "DIFF"}),
        ],
    )
    ensemble(
        root,
        "outer",
        ["IN"],
        ["OUT"],
        [("diamond", {"IN": "IN"}, {"SUM": "s"}), ("double", {"X": "s"}, {"Y": "OUT"})],
    )


CASES: list[tuple[str, str, list[list[float]]]] = [
    ("chain", "one row", [[1, 2, 3, 4]]),
    ("chain", "a batch of three", [[1, 2, 3, 4], [5, 6, 7, 8], [0.5, 1.5, 2, 3]]),
    ("chain", "a step fails", [[-1, 2, 3, 4]]),
    ("diamond", "fan-out, fan-in", [[1, 2, 3, 4], [2, 2, 2, 2]]),
    ("outer", "an ensemble of ensembles", [[1, 1, 2, 3]]),
]


def client_run(http_url: str, grpc_url: str) -> dict[str, Any]:
    """The same requests over HTTP and gRPC; every answer as plain data."""
    import tritonclient.grpc as grpcclient
    import tritonclient.http as httpclient
    from tritonclient.utils import InferenceServerException

    answers: dict[str, Any] = {}
    for protocol, module, url in (
        ("http", httpclient, http_url),
        ("grpc", grpcclient, grpc_url),
    ):
        client = module.InferenceServerClient(url)
        for model, case, rows in CASES:
            x = np.asarray(rows, dtype=np.float32)
            tensor = module.InferInput("IN", list(x.shape), "FP32")
            tensor.set_data_from_numpy(x)
            key = f"{protocol} {model}: {case}"
            try:
                result = client.infer(model, [tensor])
            except InferenceServerException as exc:
                answers[key] = {"status": str(exc.status())}
                continue
            answers[key] = {name: result.as_numpy(name).tolist() for name in OUTPUTS[model]}
        client.close()
    stats_client = httpclient.InferenceServerClient(http_url)
    for model in ENSEMBLES:
        stats = stats_client.get_inference_statistics(model)["model_stats"][0]
        answers[f"statistics {model}"] = {
            "inference_count": int(stats["inference_count"]),
            "execution_count": int(stats["execution_count"]),
            "success": int(stats["inference_stats"]["success"]["count"]),
        }
    stats_client.close()
    return answers


def serve_and_ask(system: str, repository: Path, workdir: Path) -> dict[str, Any]:
    options = {"max_batch_size": 8, "max_queue_delay_us": 0, "instances": 1}
    with servers.launch(system, repository, list(ENSEMBLES), workdir, options) as server:
        assert server.ports is not None
        return client_run(server.ports.url("http"), server.ports.url("grpc"))


def compare(workdir: Path) -> dict[str, Any]:
    """Serve the repository with both systems, one after the other; both sets of answers."""
    repository = workdir / "repository"
    write_repository(repository)
    headrace = serve_and_ask("headrace", repository, workdir)
    triton = serve_and_ask("triton", repository, workdir)
    differ = sorted(
        key for key in headrace.keys() | triton.keys() if _differ(headrace, triton, key)
    )
    return {"headrace": headrace, "triton": triton, "differ": differ}


def _differ(a: dict[str, Any], b: dict[str, Any], key: str) -> bool:
    left, right = a.get(key), b.get(key)
    if not isinstance(left, dict) or not isinstance(right, dict) or left.keys() != right.keys():
        return left != right
    for name in left:
        if isinstance(left[name], list):
            if not np.allclose(np.asarray(left[name]), np.asarray(right[name])):
                return True
        elif left[name] != right[name]:
            return True
    return False


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--out",
        type=Path,
        default=HERE / "results" / "ensemble_vs_triton.json",
        help="result JSON (default benchmarks/results/ensemble_vs_triton.json)",
    )
    args = parser.parse_args(argv)
    from rich.console import Console
    from rich.table import Table

    from headrace.bench.machine import machine_info

    with tempfile.TemporaryDirectory(prefix="ensemble-vs-triton-") as tmp:
        result = compare(Path(tmp))
    table = Table(title="ensembles: headrace vs Triton 2.51, same repository, same requests")
    for column in ("request", "headrace", "triton", "same"):
        table.add_column(column)
    for key in sorted(result["headrace"]):
        same = key not in result["differ"]
        table.add_row(
            key,
            json.dumps(result["headrace"][key])[:48],
            json.dumps(result["triton"].get(key))[:48],
            "yes" if same else "NO",
        )
    Console().print(table)
    document = {
        "benchmark": "ensemble_vs_triton",
        "date": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "machine": machine_info(),
        **result,
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(document, indent=1) + "\n")
    print(f"results: {args.out}; {len(result['differ'])} answers differ")
    return 1 if result["differ"] else 0


if __name__ == "__main__":
    raise SystemExit(main())
