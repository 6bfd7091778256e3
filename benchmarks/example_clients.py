"""NVIDIA's example client programs, unmodified, against ``headrace serve`` (and NVIDIA Triton).

    python benchmarks/example_clients.py --examples DIR            # headrace, both repositories
    python benchmarks/example_clients.py --examples DIR --systems headrace triton

``DIR`` holds the programs of ``src/python/examples/`` of NVIDIA's triton-inference-server/
client repository (``simple_grpc_infer_client.py``, ``simple_http_model_control.py``, ...);
they are not ours to copy, so this script reads them from wherever they are and copies
nothing. It writes the model repositories the programs expect itself (nothing is fetched):
``simple`` (INT32 sum and difference), ``simple_int8`` (INT8), ``simple_string`` (the same on
numbers written as strings), ``simple_identity`` (BYTES identity), the sequence models
``simple_sequence``, ``simple_dyna_sequence`` and ``simple_string_dyna_sequence`` (see
``SEQUENCE_MODELS``), with the configs of Triton's QA repositories, once as ONNX models and
once as Triton python-backend models (the stateful string sequence model is python in both).
``VARIANTS`` runs some programs more than once with options (compression, headers, ``-d``).
Each program runs as ``python PROGRAM -u 127.0.0.1:PORT`` (the HTTP port for ``*http*``
programs, the gRPC port for the others) with a time limit, and passes when it exits 0.

A program's ``Setup`` says how its server runs: most need every model loaded; the model
control programs need ``--model-control-mode explicit`` and a repository of exactly as many
models as they count (7 for the HTTP one, 8 for the gRPC one), filled up with copies of
``simple``. Triton 2.51 here has the python backend only, so it serves the python repository.

Writes ``benchmarks/results/example_clients.json``: pass or fail, the exit status and the
end of the output, per program, per repository, per system.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE / "serve_models"))

import report  # noqa: E402
import servers  # noqa: E402

RESULT = HERE / "results" / "example_clients.json"
FLAVOURS = ("onnx", "python")
SYSTEMS = ("headrace", "triton")
PROGRAM_TIMEOUT_S = 120.0


@dataclass(frozen=True)
class Setup:
    """How the server runs for a program: control mode and how many models the repository
    holds (0: just the base models)."""

    mode: str = "none"
    models: int = 0


SETUPS: dict[str, Setup] = {
    "simple_http_model_control.py": Setup("explicit", 7),
    "simple_grpc_model_control.py": Setup("explicit", 8),
    "simple_http_aio_model_control.py": Setup("explicit", 7),
    "simple_grpc_aio_model_control.py": Setup("explicit", 8),
}
"""Programs that need another setup than every model loaded in mode ``none``."""

SKIPPED = {
    "cudashm": "needs a GPU (CUDA shared memory)",
    "image_client": "needs images and an image classification model",
    "ensemble_image": "needs images and an image classification model",
    "vllm": "needs a vLLM backend",
    "memory_growth": "a long soak loop, not an example of the API",
    "custom_repeat": "needs the C++ repeat backend",
    "grpc_image_client": "needs images and an image classification model",
    "grpc_client.py": "needs an image classification model (densenet_onnx, Inception input)",
}
"""Programs of that directory this script does not run, by a part of their name."""


# --- the repositories -----------------------------------------------------------------------

_ADD_SUB_PY = """\
import numpy as np
import triton_python_backend_utils as pb_utils


def _numbers(tensor):
    data = tensor.as_numpy()
    if data.dtype == np.object_:
        return np.array([int(x) for x in data.reshape(-1)], np.int32).reshape(data.shape), True
    return data, False


class TritonPythonModel:
    def execute(self, requests):
        responses = []
        for request in requests:
            a, strings = _numbers(pb_utils.get_input_tensor_by_name(request, "INPUT0"))
            b, _ = _numbers(pb_utils.get_input_tensor_by_name(request, "INPUT1"))
            out = []
            for name, value in (("OUTPUT0", a + b), ("OUTPUT1", a - b)):
                if strings:
                    value = np.array([str(v).encode() for v in value.reshape(-1)], np.object_)
                    value = value.reshape(a.shape)
                else:
                    value = value.astype(a.dtype, copy=False)
                out.append(pb_utils.Tensor(name, value))
            responses.append(pb_utils.InferenceResponse(output_tensors=out))
        return responses
"""

_IDENTITY_PY = """\
import triton_python_backend_utils as pb_utils


class TritonPythonModel:
    def execute(self, requests):
        responses = []
        for request in requests:
            data = pb_utils.get_input_tensor_by_name(request, "INPUT0").as_numpy()
            out = pb_utils.Tensor("OUTPUT0", data)
            responses.append(pb_utils.InferenceResponse(output_tensors=[out]))
        return responses
"""

_ADD_SUB_CONFIG = """\
name: "{name}"
{runtime}
max_batch_size: 8
input {{ name: "INPUT0" data_type: {dtype} dims: [ 16 ] }}
input {{ name: "INPUT1" data_type: {dtype} dims: [ 16 ] }}
output {{ name: "OUTPUT0" data_type: {dtype} dims: [ 16 ] }}
output {{ name: "OUTPUT1" data_type: {dtype} dims: [ 16 ] }}
"""

_IDENTITY_CONFIG = """\
name: "{name}"
{runtime}
max_batch_size: 8
input {{ name: "INPUT0" data_type: TYPE_STRING dims: [ -1 ] }}
output {{ name: "OUTPUT0" data_type: TYPE_STRING dims: [ -1 ] }}
"""

_SEQUENCE_PY = """\
import numpy as np
import triton_python_backend_utils as pb_utils


def _get(request, name):
    tensor = pb_utils.get_input_tensor_by_name(request, name)
    return None if tensor is None else tensor.as_numpy()


class TritonPythonModel:
    def execute(self, requests):
        responses = []
        for request in requests:
            value = _get(request, "INPUT").astype(np.int64) + _get(request, "START")
            end, corrid = _get(request, "END"), _get(request, "CORRID")
            if end is not None:
                value = value + end * corrid.astype(np.int64)
            out = pb_utils.Tensor("OUTPUT", value.astype(np.int32))
            responses.append(pb_utils.InferenceResponse(output_tensors=[out]))
        return responses
"""

_CONTROL = """\
    {{ name: "{name}" control [ {{ kind: CONTROL_SEQUENCE_{kind} {values} }} ] }}"""

_SEQUENCE_CONFIG = """\
name: "{name}"
{runtime}
max_batch_size: 8
sequence_batching {{
  max_sequence_idle_microseconds: 5000000
  control_input [
{controls}
  ]
}}
input {{ name: "INPUT" data_type: TYPE_INT32 dims: [ 1 ] }}
output {{ name: "OUTPUT" data_type: TYPE_INT32 dims: [ 1 ] }}
"""

SEQUENCE_MODELS = {
    "simple_sequence": ("START", "READY"),
    "simple_dyna_sequence": ("START", "END", "READY", "CORRID"),
    "simple_string_dyna_sequence": ("START", "END", "READY", "CORRID"),
}
"""The sequence models of Triton's example programs, with their control inputs: the output
is the input, plus 1 on a sequence's first request, plus the correlation ID on its last
(the dyna model), as the programs check. ``simple_string_dyna_sequence`` takes string
correlation IDs (of digits) and sums the sequence's inputs, plus the ID on its last request:
it keeps state, so it is a python model in both repositories."""

_STRING_DYNA_PY = """\\
import numpy as np
import triton_python_backend_utils as pb_utils


def _get(request, name):
    return pb_utils.get_input_tensor_by_name(request, name).as_numpy()


class TritonPythonModel:
    def initialize(self, args):
        self.sums = {}

    def execute(self, requests):
        responses = []
        for request in requests:
            corrid = _get(request, "CORRID").reshape(-1)[0]
            corrid = corrid.decode() if isinstance(corrid, bytes) else str(corrid)
            value = int(_get(request, "INPUT").reshape(-1)[0])
            total = value if _get(request, "START").reshape(-1)[0] else self.sums[corrid] + value
            self.sums[corrid] = total
            if _get(request, "END").reshape(-1)[0]:
                del self.sums[corrid]
                total += int(corrid)
            out = pb_utils.Tensor("OUTPUT", np.array([[total]], np.int32))
            responses.append(pb_utils.InferenceResponse(output_tensors=[out]))
        return responses
"""


def _sequence_config(name: str, runtime: str) -> str:
    controls = []
    for control in SEQUENCE_MODELS[name]:
        corrid = "TYPE_STRING" if name == "simple_string_dyna_sequence" else "TYPE_UINT64"
        values = f"data_type: {corrid}" if control == "CORRID" else "int32_false_true: [ 0, 1 ]"
        controls.append(_CONTROL.format(name=control, kind=control, values=values))
    return _SEQUENCE_CONFIG.format(name=name, runtime=runtime, controls=",\n".join(controls))


_RUNTIME = {"onnx": 'platform: "onnxruntime_onnx"', "python": 'backend: "python"'}
BASE_MODELS = ("simple", "simple_int8", "simple_string", "simple_identity")


def write_repository(path: Path, flavour: str, models: int = 0) -> Path:
    """The repository of ``flavour`` (onnx or python): the base models, then copies of
    ``simple`` (``simple_copy_N``) until it holds ``models`` models."""
    runtime = _RUNTIME[flavour]
    kinds = {
        "simple": "TYPE_INT32",
        "simple_int8": "TYPE_INT8",
        "simple_string": "TYPE_STRING",
    }
    names = list(BASE_MODELS)
    names += [f"simple_copy_{i}" for i in range(max(0, models - len(names)))]
    if not models:
        for name in SEQUENCE_MODELS:
            version = path / name / "1"
            version.mkdir(parents=True, exist_ok=True)
            stateful = name == "simple_string_dyna_sequence"
            config = _sequence_config(name, _RUNTIME["python"] if stateful else runtime)
            (path / name / "config.pbtxt").write_text(config, encoding="utf-8")
            if stateful:
                (version / "model.py").write_text(_STRING_DYNA_PY, encoding="utf-8")
            elif flavour == "python":
                (version / "model.py").write_text(_SEQUENCE_PY, encoding="utf-8")
            else:
                (version / "model.onnx").write_bytes(_onnx_sequence(name))
    for name in names:
        version = path / name / "1"
        version.mkdir(parents=True, exist_ok=True)
        if name == "simple_identity":
            config = _IDENTITY_CONFIG.format(name=name, runtime=runtime)
        else:
            dtype = kinds.get(name, "TYPE_INT32")
            config = _ADD_SUB_CONFIG.format(name=name, runtime=runtime, dtype=dtype)
        (path / name / "config.pbtxt").write_text(config, encoding="utf-8")
        if flavour == "python":
            code = _IDENTITY_PY if name == "simple_identity" else _ADD_SUB_PY
            (version / "model.py").write_text(code, encoding="utf-8")
        else:
            (version / "model.onnx").write_bytes(_onnx_model(name))
    return path


def _onnx_model(name: str) -> bytes:
    """The ONNX graph of a base model: sum and difference, computed in INT32 (strings and
    INT8 are cast there and back), or the identity of a string tensor."""
    from onnx import TensorProto, helper

    if name == "simple_identity":
        graph = helper.make_graph(
            [helper.make_node("Identity", ["INPUT0"], ["OUTPUT0"])],
            name,
            [helper.make_tensor_value_info("INPUT0", TensorProto.STRING, [None, None])],
            [helper.make_tensor_value_info("OUTPUT0", TensorProto.STRING, [None, None])],
        )
    else:
        wire = {"simple_int8": TensorProto.INT8, "simple_string": TensorProto.STRING}.get(
            name, TensorProto.INT32
        )
        nodes = []
        a, b = "INPUT0", "INPUT1"
        if wire != TensorProto.INT32:
            nodes += [
                helper.make_node("Cast", ["INPUT0"], ["a"], to=TensorProto.INT32),
                helper.make_node("Cast", ["INPUT1"], ["b"], to=TensorProto.INT32),
            ]
            a, b = "a", "b"
        sums = ("OUTPUT0", "OUTPUT1") if wire == TensorProto.INT32 else ("sum", "diff")
        nodes += [
            helper.make_node("Add", [a, b], [sums[0]]),
            helper.make_node("Sub", [a, b], [sums[1]]),
        ]
        if wire != TensorProto.INT32:
            nodes += [
                helper.make_node("Cast", ["sum"], ["OUTPUT0"], to=wire),
                helper.make_node("Cast", ["diff"], ["OUTPUT1"], to=wire),
            ]
        shape = [None, 16]
        graph = helper.make_graph(
            nodes,
            name,
            [helper.make_tensor_value_info(n, wire, shape) for n in ("INPUT0", "INPUT1")],
            [helper.make_tensor_value_info(n, wire, shape) for n in ("OUTPUT0", "OUTPUT1")],
        )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    return bytes(model.SerializeToString())


def _onnx_sequence(name: str) -> bytes:
    """OUTPUT = INPUT + START (+ END * CORRID for the dyna model), in INT32."""
    from onnx import TensorProto, helper

    controls = SEQUENCE_MODELS[name]
    nodes = [helper.make_node("Add", ["INPUT", "START"], ["started"])]
    if "CORRID" in controls:
        nodes += [
            helper.make_node("Cast", ["CORRID"], ["corrid"], to=TensorProto.INT32),
            helper.make_node("Mul", ["END", "corrid"], ["added"]),
            helper.make_node("Add", ["started", "added"], ["OUTPUT"]),
        ]
    else:
        nodes[0].output[0] = "OUTPUT"
    shape = [None, 1]
    inputs = [helper.make_tensor_value_info("INPUT", TensorProto.INT32, shape)]
    for control in controls:
        kind = TensorProto.UINT64 if control == "CORRID" else TensorProto.INT32
        inputs.append(helper.make_tensor_value_info(control, kind, shape))
    outputs = [helper.make_tensor_value_info("OUTPUT", TensorProto.INT32, shape)]
    graph = helper.make_graph(nodes, name, inputs, outputs)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    return bytes(model.SerializeToString())


# --- the servers ----------------------------------------------------------------------------


def _command(system: str, repository: Path, setup: Setup, ports_file: Path) -> list[str]:
    if system == "headrace":
        command = [sys.executable, "-m", "headrace.cli", "serve", str(repository)]
        command += ["--host", "127.0.0.1", "--http-port", "0", "--grpc-port", "0"]
        command += ["--metrics-port", "0", "--ports-file", str(ports_file)]
        return [*command, "--model-control-mode", setup.mode]
    http, grpc, metrics = servers.free_ports(3)
    ports_file.write_text(json.dumps({"http": http, "grpc": grpc, "metrics": metrics}))
    command = [servers.shared_tool("tritonserver"), str(repository), str(http), str(grpc)]
    return [*command, str(metrics), "--", f"--model-control-mode={setup.mode}"]


def _serve(system: str, repository: Path, setup: Setup, workdir: Path) -> Any:
    ports_file = workdir / f"{system}-ports.json"
    ports_file.unlink(missing_ok=True)
    command = _command(system, repository, setup, ports_file)
    log = workdir / f"{system}-{repository.name}.log"
    server = servers.ServerProcess(system, command, dict(os.environ), log)
    ready = [*BASE_MODELS, *SEQUENCE_MODELS] if setup.mode == "none" else []
    try:
        if system == "triton":
            found = json.loads(ports_file.read_text())
            server.ports = servers.Ports(found["http"], found["grpc"], found["metrics"])
            server.wait_ready(ready, 180.0, None)
        else:
            server.wait_ready(ready, 120.0, ports_file)
        if not ready:  # explicit mode, nothing loaded: wait for the server itself
            _wait_live(server)
    except BaseException:
        server.stop()
        raise
    return server


def _wait_live(server: Any) -> None:
    deadline = time.monotonic() + 60.0
    while time.monotonic() < deadline:
        try:
            server._get("/v2/health/live", timeout=2)
            return
        except OSError:
            try:
                server.process.wait(timeout=0.25)
            except subprocess.TimeoutExpired:
                continue
            raise servers.ServerStartFailed(
                f"{server.system} exited: {server.log_tail()}"
            ) from None
    raise servers.ServerStartFailed(f"{server.system} not live in 60 s: {server.log_tail()}")


# --- running the programs -------------------------------------------------------------------


def programs(examples: Path, only: list[str]) -> tuple[list[Path], dict[str, str]]:
    """The programs to run (``only`` narrows them by name) and those skipped, with why."""
    run, skipped = [], {}
    for path in sorted(examples.glob("*.py")):
        if only and path.name not in only and path.stem not in only:
            continue
        why = next((why for part, why in SKIPPED.items() if part in path.name), None)
        if why:
            skipped[path.name] = why
        else:
            run.append(path)
    return run, skipped


VARIANTS: dict[str, tuple[tuple[str, tuple[str, ...]], ...]] = {
    "reuse_infer_objects_client.py": (("http", ()), ("grpc", ("-i", "grpc"))),
    "simple_http_infer_client.py": (
        ("http", ()),
        ("http", ("--request-compression-algorithm", "gzip")),
        ("http", ("--response-compression-algorithm", "gzip")),
        ("http", ("--request-compression-algorithm", "deflate")),
        ("http", ("--response-compression-algorithm", "deflate")),
        ("http", ("-H", "test:1")),
    ),
    "simple_grpc_infer_client.py": (
        ("grpc", ()),
        ("grpc", ("-C", "gzip")),
        ("grpc", ("-C", "deflate")),
    ),
    "simple_grpc_aio_infer_client.py": (("grpc", ()), ("grpc", ("-C", "gzip"))),
    "simple_grpc_sequence_sync_infer_client.py": (("grpc", ()), ("grpc", ("-d",))),
    "simple_grpc_sequence_stream_infer_client.py": (("grpc", ()), ("grpc", ("-d",))),
    "simple_grpc_aio_sequence_stream_infer_client.py": (("grpc", ()), ("grpc", ("-d",))),
    "simple_http_sequence_sync_infer_client.py": (("http", ()), ("http", ("-d",))),
}
"""Programs run more than once, with these protocols and arguments (their name in the
record carries the arguments)."""


def variants(program: Path) -> tuple[tuple[str, tuple[str, ...]], ...]:
    """The (protocol, extra arguments) runs of ``program``: by default one, on the protocol
    its name says."""
    protocol = "http" if "http" in program.name else "grpc"
    return VARIANTS.get(program.name, ((protocol, ()),))


def run_program(
    program: Path, server: Any, protocol: str = "", extra: tuple[str, ...] = ()
) -> dict[str, Any]:
    assert server.ports is not None
    protocol = protocol or variants(program)[0][0]
    port = server.ports.http if protocol == "http" else server.ports.grpc
    command = [sys.executable, str(program), *extra, "-u", f"127.0.0.1:{port}"]
    started = time.monotonic()
    try:
        done = subprocess.run(
            command, capture_output=True, text=True, timeout=PROGRAM_TIMEOUT_S, cwd=program.parent
        )
        code, output = done.returncode, done.stdout + done.stderr
    except subprocess.TimeoutExpired as exc:
        code, output = None, f"timed out after {PROGRAM_TIMEOUT_S:.0f} s: {exc.output or ''}"
    return {
        "passed": code == 0,
        "exit_code": code,
        "seconds": round(time.monotonic() - started, 2),
        "output_tail": str(output)[-1500:],
    }


def run_all(
    examples: Path, systems: list[str], flavours: list[str], only: list[str], workdir: Path
) -> tuple[list[dict[str, Any]], dict[str, str]]:
    chosen, skipped = programs(examples, only)
    groups: dict[Setup, list[Path]] = {}
    for program in chosen:
        groups.setdefault(SETUPS.get(program.name, Setup()), []).append(program)
    records = []
    for system in systems:
        for flavour in flavours:
            if system == "triton" and flavour == "onnx":
                continue  # Triton here has the python backend only
            for setup, group in groups.items():
                name = f"{flavour}-{setup.mode}-{setup.models}"
                repository = write_repository(workdir / system / name, flavour, setup.models)
                server = _serve(system, repository, setup, workdir)
                try:
                    for program in group:
                        for protocol, extra in variants(program):
                            outcome = run_program(program, server, protocol, extra)
                            label = " ".join([program.name, *extra])
                            records.append(
                                {"program": label, "system": system, "repository": flavour}
                                | outcome
                            )
                            mark = "pass" if outcome["passed"] else "FAIL"
                            print(f"{system:9} {flavour:7} {mark} {label}", flush=True)
                finally:
                    server.stop()
    return records, skipped


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--examples", type=Path, required=True, help="directory of NVIDIA's example programs"
    )
    parser.add_argument(
        "--systems", nargs="+", choices=SYSTEMS, default=["headrace"], help="(default headrace)"
    )
    parser.add_argument(
        "--flavours", nargs="+", choices=FLAVOURS, default=list(FLAVOURS), help="(default both)"
    )
    parser.add_argument("--only", nargs="*", default=[], help="program names (default: all)")
    parser.add_argument("--out", type=Path, default=RESULT, help=f"(default {RESULT})")
    args = parser.parse_args(argv)
    started = time.monotonic()
    with tempfile.TemporaryDirectory(prefix="example-clients-") as tmp:
        records, skipped = run_all(
            args.examples.resolve(), args.systems, args.flavours, args.only, Path(tmp)
        )
        if os.environ.get("KEEP_EXAMPLE_LOGS"):
            shutil.copytree(tmp, os.environ["KEEP_EXAMPLE_LOGS"], dirs_exist_ok=True)
    summary = {
        f"{system}/{flavour}": {
            "passed": sum(
                r["passed"] for r in records if (r["system"], r["repository"]) == (system, flavour)
            ),
            "ran": sum(1 for r in records if (r["system"], r["repository"]) == (system, flavour)),
        }
        for system, flavour in sorted({(r["system"], r["repository"]) for r in records})
    }
    summary["skipped"] = skipped  # type: ignore[assignment]
    settings = argparse.Namespace(
        systems=args.systems, flavours=args.flavours, only=args.only, examples="DIR"
    )
    report.write_document(
        args.out,
        "example_clients",
        ["--examples", "DIR", *(sys.argv[3:] if argv is None else argv[2:])],
        settings,
        started=started,
        error=None,
        summary=summary,
        records=records,
    )
    failed = [r for r in records if not r["passed"]]
    print(json.dumps({k: v for k, v in summary.items() if k != "skipped"}, indent=1))
    return 1 if failed else 0


if __name__ == "__main__":
    raise SystemExit(main())
