"""ParticleNet batch-size scan: direct vs served (headrace serve, HTTP and gRPC), ONNX and
TorchScript, with the resource monitor alongside: one ``headrace bench scan`` run.

    python benchmarks/bench_scan_particlenet.py                  # ~5 min on 2 busy cores
    python benchmarks/bench_scan_particlenet.py --trials 10 --out /tmp/scan.json   # a look

It builds the examples repository, serves its two ``particlenet`` models with
``headrace serve`` on 127.0.0.1 (free ports), and runs::

    headrace bench scan particlenet particlenet_torchscript --repository REPO --direct \\
        --url http://127.0.0.1:HTTP --url grpc://127.0.0.1:GRPC --monitor --out OUT

so the six targets (2 models x direct/HTTP/gRPC) take turns at each batch size. The server is
stopped with SIGTERM afterwards. Extra arguments after ``--`` go to ``bench scan``.

``--torch-threads`` (default 1) sets ``OMP_NUM_THREADS`` for the server and the scan alike:
on this shared 2-core machine under load, TorchScript ParticleNet batches of 4-16 ran about ten
times slower with 2 intra-op threads than with 1, the OpenMP threads waiting on each other at
every barrier. onnxruntime keeps its own pool.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

MODELS = ("particlenet", "particlenet_torchscript")
START_TIMEOUT_S = 120.0


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--trials", type=int, default=100, help="trials per point (default 100)")
    parser.add_argument(
        "--batch-sizes", default="1,2,4,8,16,32,64", help="comma list (default 1,2,4,...,64)"
    )
    parser.add_argument(
        "--out",
        default="",
        help="result JSON (default benchmarks/results/bench_scan_particlenet_cpu.json, "
        "never replacing a file)",
    )
    parser.add_argument(
        "--torch-threads",
        type=int,
        default=1,
        help="torch intra-op threads, server and direct scan alike (OMP_NUM_THREADS); "
        "0 = torch's default (default 1)",
    )
    parser.add_argument("scan_args", nargs="*", help="more `bench scan` arguments, after --")
    args = parser.parse_args()
    if args.torch_threads > 0:
        os.environ["OMP_NUM_THREADS"] = str(args.torch_threads)  # the server and the scan
    with tempfile.TemporaryDirectory() as scratch:
        examples = Path(scratch) / "examples"
        repo = Path(scratch) / "repo"
        _run([sys.executable, "-m", "headrace.cli", "examples", "create", str(examples)])
        for model in MODELS:
            shutil.copytree(examples / model, repo / model)
        server, ports = _serve(repo, Path(scratch))
        try:
            command = [
                sys.executable,
                "-m",
                "headrace.cli",
                "bench",
                "scan",
                *MODELS,
                "--repository",
                str(repo),
                "--direct",
                "--url",
                f"http://127.0.0.1:{ports['http']}",
                "--url",
                f"grpc://127.0.0.1:{ports['grpc']}",
                "--trials",
                str(args.trials),
                "--batch-sizes",
                args.batch_sizes,
                "--monitor",
                *(["--torch-threads", str(args.torch_threads)] if args.torch_threads else []),
                *(["--out", args.out] if args.out else []),
                *args.scan_args,
            ]
            _run(command)
        finally:
            server.send_signal(signal.SIGTERM)
            server.wait(timeout=60)
    return 0


def _run(command: list[str]) -> None:
    print("$", " ".join(command), flush=True)
    subprocess.run(command, check=True)


def _serve(repo: Path, scratch: Path) -> tuple[subprocess.Popen[bytes], dict[str, int]]:
    ports_file = scratch / "ports.json"
    command = [sys.executable, "-m", "headrace.cli", "serve", str(repo), "--host", "127.0.0.1"]
    for door in ("http", "grpc", "metrics"):
        command += [f"--{door}-port", "0"]
    server = subprocess.Popen([*command, "--ports-file", str(ports_file)])
    deadline = time.monotonic() + START_TIMEOUT_S
    while not ports_file.exists():
        try:
            code = server.wait(timeout=0.1)
        except subprocess.TimeoutExpired:
            code = None
        if code is not None or time.monotonic() > deadline:
            server.kill()
            raise SystemExit(f"headrace serve did not start (exit {code})")
    ports = {key: int(value) for key, value in json.loads(ports_file.read_text()).items()}
    _wait_ready(f"127.0.0.1:{ports['http']}", deadline, server)
    return server, ports


def _wait_ready(url: str, deadline: float, server: subprocess.Popen[bytes]) -> None:
    import tritonclient.http as httpclient

    client = httpclient.InferenceServerClient(url)
    try:
        while True:
            try:
                if client.is_server_ready():
                    return
            except Exception:  # refused while the server opens its doors
                pass
            if time.monotonic() > deadline or server.poll() is not None:
                raise SystemExit("headrace serve did not become ready")
            try:
                server.wait(timeout=0.1)
            except subprocess.TimeoutExpired:
                pass
    finally:
        client.close()


if __name__ == "__main__":
    os.environ.setdefault("PYTHONUNBUFFERED", "1")
    sys.exit(main())
