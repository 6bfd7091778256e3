"""What bounding a stream's pending responses costs a client that reads: decoupled responses/s,
before (``--base-src``, a tree without the bound) and after (this tree), side by side.

    python benchmarks/stream_backlog.py --base-src /tmp/base/src      # ~2 min
    python benchmarks/stream_backlog.py --base-src /tmp/base/src --protocol sse \
        --runtimes in-server --out benchmarks/results/stream_backlog_sse.json

With ``--protocol sse`` the stream is HTTP ``generate_stream`` (server-sent events over the
default HTTP server, granian) read from a plain socket, which measures what the SSE send
window (the granian door's pacing by the client's acknowledgements) costs a reading client.

One gRPC ``ModelStreamInfer`` stream (unmodified tritonclient) asks ``flood_decoupled``
(tests/data/python_models) for ``--count`` small responses and reads them as they come; the
time from the request to its last response gives responses/s. Both trees serve with
``--python-runtime in-server`` and ``process`` (the latter's worker now sends at most 64
responses of a request ahead of the server's acknowledgement). Rounds alternate the trees, the
order turning around each round; the table shows medians, the JSON every round.
"""

from __future__ import annotations

import argparse
import json
import shutil
import socket
import statistics
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

import numpy as np
import tritonclient.grpc as grpcclient
from rich.console import Console
from rich.table import Table

sys.path.insert(0, str(Path(__file__).parent))
from serve_models import servers

from headrace.bench.machine import machine_info

ROOT = Path(__file__).resolve().parent.parent
MODEL = ROOT / "tests" / "data" / "python_models" / "flood_decoupled"
RESULTS = Path(__file__).parent / "results" / "stream_backlog.json"


def _inputs(count: int, size: int) -> list[grpcclient.InferInput]:
    inputs = []
    for name, value in (("COUNT", count), ("SIZE", size)):
        tensor = grpcclient.InferInput(name, [1], "INT32")
        tensor.set_data_from_numpy(np.array([value], dtype=np.int32))
        inputs.append(tensor)
    return inputs


def responses_per_second(url: str, count: int, size: int) -> float:
    done = threading.Event()
    got = [0]

    def callback(result: Any, error: Any) -> None:
        if error is not None:
            raise RuntimeError(str(error))
        got[0] += 1
        if got[0] == count:
            done.set()

    with grpcclient.InferenceServerClient(url) as client:
        client.start_stream(callback)
        start = time.perf_counter()
        client.async_stream_infer("flood_decoupled", _inputs(count, size))
        if not done.wait(300):
            raise RuntimeError(f"only {got[0]} of {count} responses came in 300 s")
        elapsed = time.perf_counter() - start
        client.stop_stream()
    return count / elapsed


def sse_responses_per_second(address: str, count: int, size: int) -> float:
    """One ``generate_stream`` request read to its ``count``-th event, from a plain socket."""
    host, _, port = address.rpartition(":")
    body = json.dumps({"COUNT": count, "SIZE": size}).encode()
    head = (
        "POST /v2/models/flood_decoupled/generate_stream HTTP/1.1\r\n"
        f"Host: {host}\r\nContent-Type: application/json\r\n"
        f"Content-Length: {len(body)}\r\n\r\n"
    ).encode()
    with socket.create_connection((host, int(port)), timeout=120) as sock:
        started = time.perf_counter()
        sock.sendall(head + body)
        seen, tail = 0, b""
        while seen < count:
            chunk = sock.recv(1 << 18)
            if not chunk:
                raise RuntimeError(f"the stream ended after {seen} of {count} events")
            data = tail + chunk
            seen += data.count(b"data: ")
            tail = data[-5:]  # shorter than a marker: one split across reads counts once
        return count / (time.perf_counter() - started)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--base-src", required=True, help="src/ of the tree without the bound")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--count", type=int, default=5000, help="responses per request")
    parser.add_argument("--size", type=int, default=16, help="INT32 values per response")
    parser.add_argument("--runtimes", default="in-server,process")
    parser.add_argument("--protocol", choices=("grpc", "sse"), default="grpc")
    parser.add_argument("--out", type=Path, default=RESULTS)
    args = parser.parse_args()
    results: Path = args.out
    trees = {"before": str(Path(args.base_src).resolve()), "after": str(ROOT / "src")}
    runtimes = args.runtimes.split(",")
    records: list[dict[str, Any]] = []
    with tempfile.TemporaryDirectory() as tmp:
        repository = Path(tmp) / "repo"
        shutil.copytree(MODEL, repository / "flood_decoupled")
        for round_index in range(args.rounds):
            order = list(trees) if round_index % 2 == 0 else list(reversed(trees))
            for runtime in runtimes:
                for tree in order:
                    servers.HEADRACE_ENV.clear()
                    servers.HEADRACE_ENV["PYTHONPATH"] = trees[tree]
                    workdir = Path(tmp) / f"{tree}-{runtime}-{round_index}"
                    workdir.mkdir()
                    with servers.launch(
                        "headrace",
                        repository,
                        ["flood_decoupled"],
                        workdir,
                        {},
                        extra_args=["--python-runtime", runtime],
                    ) as server:
                        assert server.ports is not None
                        measure = (
                            responses_per_second
                            if args.protocol == "grpc"
                            else sse_responses_per_second
                        )
                        url = server.ports.url("grpc" if args.protocol == "grpc" else "http")
                        measure(url, min(args.count, 500), args.size)  # warm-up
                        rate = measure(url, args.count, args.size)
                    records.append(
                        {"round": round_index, "tree": tree, "runtime": runtime, "rate": rate}
                    )
                    print(f"round {round_index} {runtime:9} {tree:6} {rate:9.0f} responses/s")
    table = Table(title="decoupled stream responses/s (medians), before and after the bound")
    for column in ("runtime", "before", "after", "after/before"):
        table.add_column(column, justify="right")
    summary = []
    for runtime in runtimes:
        medians = {
            tree: statistics.median(
                r["rate"] for r in records if r["tree"] == tree and r["runtime"] == runtime
            )
            for tree in trees
        }
        ratio = medians["after"] / medians["before"]
        summary.append({"runtime": runtime, **medians, "ratio": ratio})
        table.add_row(
            runtime, f"{medians['before']:.0f}", f"{medians['after']:.0f}", f"{ratio:.2f}"
        )
    Console().print(table)
    results.parent.mkdir(exist_ok=True)
    results.write_text(
        json.dumps(
            {
                "machine": machine_info(),
                "settings": {
                    k: str(v) if isinstance(v, Path) else v
                    for k, v in vars(args).items()
                    if k != "base_src"
                },
                "summary": summary,
                "records": records,
            },
            indent=2,
        )
        + "\n"
    )
    print(f"wrote {results}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
