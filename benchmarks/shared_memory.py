"""A 16 MiB tensor through system shared memory vs over the socket, HTTP and gRPC.

    python benchmarks/shared_memory.py                          # ~2 min: headrace and Triton
    python benchmarks/shared_memory.py --systems headrace --rounds 2 --requests 5   # a look

The model is the identity python-backend ``model.py`` (``serve_models/model_identity.py``):
INPUT0 (FP32, ``--mib`` MiB, default 16) comes back as OUTPUT0. Each request is one client
round trip, measured with ``time.perf_counter_ns`` around it, one request at a time:

| path | what one request does |
| --- | --- |
| socket | the input in the request body (HTTP binary tensor extension, gRPC raw contents), the output in the response, decoded with ``as_numpy`` |
| shm | input and output in registered system shared memory regions (``tritonclient.utils.shared_memory``); the data lives there, as it does for a producer that writes its tensors in place; the output is read as a view |
| shm+copy | as shm, plus the client copying the input into the region first and the output out of it after (a client whose data starts and ends in its own memory) |

Every server starts once (127.0.0.1, free ports) and stays up; each path gets a few warm-up
requests. Then, per round, every path of every system runs ``--requests`` requests in turn,
the order of systems and paths turning each round (client and servers share this machine's
cores, whose load drifts). The first answer of each path and round is checked against the
input. ``--systems`` adds NVIDIA Triton 2.51 (``../shared/tools/tritonserver``) serving the
same directory, for reference.

Output: ``results/shared_memory.json`` (machine, settings, every round of every path, the
summary: medians over rounds of each round's median latency, their range, and the socket
path's latency over each shared memory path's, round by round) and a rich table.
"""

from __future__ import annotations

import argparse
import shutil
import statistics
import sys
import tempfile
import time
import uuid
from collections import defaultdict
from collections.abc import Callable, Iterator
from contextlib import ExitStack, contextmanager
from pathlib import Path
from typing import Any

import numpy as np

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE / "serve_models"))

import report  # noqa: E402
import servers  # noqa: E402

PROTOCOLS = ("http", "grpc")
PATHS = ("socket", "shm", "shm+copy")
MODEL = "identity"
_CONFIG = """\
name: "identity"
backend: "python"
max_batch_size: 0
input { name: "INPUT0" data_type: TYPE_FP32 dims: [ -1 ] }
output { name: "OUTPUT0" data_type: TYPE_FP32 dims: [ -1 ] }
"""


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--systems",
        nargs="+",
        default=["headrace", "triton"],
        choices=["headrace", "triton"],
        help="servers to measure (default: headrace triton)",
    )
    parser.add_argument("--rounds", type=int, default=5, help="rounds (default: 5)")
    parser.add_argument(
        "--requests", type=int, default=20, help="requests per path and round (default: 20)"
    )
    parser.add_argument("--mib", type=int, default=16, help="input size in MiB (default: 16)")
    parser.add_argument(
        "--out",
        type=Path,
        default=HERE / "results" / "shared_memory.json",
        help="result file (default: benchmarks/results/shared_memory.json)",
    )
    parser.add_argument(
        "--keep", action="store_true", help="keep the work directory (default: removed)"
    )
    return parser.parse_args(argv)


def rotate(items: list[Any], round_no: int) -> list[Any]:
    """The order in round ``round_no``: turned by one place each round."""
    shift = round_no % len(items)
    return items[shift:] + items[:shift]


def write_repository(root: Path) -> Path:
    model = root / "repo" / MODEL
    (model / "1").mkdir(parents=True)
    (model / "config.pbtxt").write_text(_CONFIG, encoding="utf-8")
    shutil.copy(HERE / "serve_models" / "model_identity.py", model / "1" / "model.py")
    return root / "repo"


class Regions:
    """The client's input and output regions, registered with every server under test."""

    def __init__(self, byte_size: int) -> None:
        import tritonclient.utils.shared_memory as shm

        self.shm = shm
        self.byte_size = byte_size
        tag = uuid.uuid4().hex[:8]
        self.keys = {"in": f"/headrace-bench-in-{tag}", "out": f"/headrace-bench-out-{tag}"}
        self.handles = {
            role: shm.create_shared_memory_region(f"bench_{role}", key, byte_size)
            for role, key in self.keys.items()
        }

    def register(self, client: Any) -> None:
        client.unregister_system_shared_memory()
        for role, key in self.keys.items():
            client.register_system_shared_memory(f"bench_{role}", key, self.byte_size)

    def destroy(self) -> None:
        for handle in self.handles.values():
            self.shm.destroy_shared_memory_region(handle)


def request_function(
    protocol: str, path: str, client: Any, regions: Regions, x: np.ndarray
) -> Callable[[], np.ndarray]:
    """One round trip of ``path`` over ``protocol``; returns the output as the client sees it."""
    if protocol == "http":
        import tritonclient.http as module
    else:
        import tritonclient.grpc as module  # type: ignore[no-redef]
    shm = regions.shm
    size = regions.byte_size
    shape = list(x.shape)
    if path == "socket":

        def socket() -> np.ndarray:
            tensor = module.InferInput("INPUT0", shape, "FP32")
            tensor.set_data_from_numpy(x)
            if protocol == "http":
                output = module.InferRequestedOutput("OUTPUT0", binary_data=True)
            else:
                output = module.InferRequestedOutput("OUTPUT0")
            return client.infer(MODEL, [tensor], outputs=[output]).as_numpy("OUTPUT0")

        return socket
    copy = path == "shm+copy"
    if not copy:
        shm.set_shared_memory_region(regions.handles["in"], [x])  # the data lives there

    def shared() -> np.ndarray:
        if copy:
            shm.set_shared_memory_region(regions.handles["in"], [x])
        tensor = module.InferInput("INPUT0", shape, "FP32")
        tensor.set_shared_memory("bench_in", size)
        output = module.InferRequestedOutput("OUTPUT0")
        output.set_shared_memory("bench_out", size)
        client.infer(MODEL, [tensor], outputs=[output])
        y = shm.get_contents_as_numpy(regions.handles["out"], np.float32, shape)
        return np.array(y) if copy else y

    return shared


def measure(call: Callable[[], np.ndarray], x: np.ndarray, requests: int) -> dict[str, Any]:
    y = call()
    checked = bool(np.array_equal(y, x))
    times_ms = []
    for _ in range(requests):
        start = time.perf_counter_ns()
        call()
        times_ms.append((time.perf_counter_ns() - start) / 1e6)
    return {
        "checked": checked,
        "median_ms": statistics.median(times_ms),
        "min_ms": min(times_ms),
        "max_ms": max(times_ms),
        "times_ms": [round(t, 3) for t in times_ms],
    }


@contextmanager
def start_servers(workdir: Path, systems: list[str]) -> Iterator[dict[str, Any]]:
    repository = write_repository(workdir)
    with ExitStack() as stack:
        running = {}
        for system in systems:
            server = servers.launch(system, repository, [MODEL], workdir, {})
            stack.callback(server.stop)
            running[system] = server
        yield running


def summarize(records: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """One row per (system, protocol, path): medians over rounds of each round's median, their
    range, and the socket path's latency over this path's, round by round."""
    by_key: dict[tuple[str, str, str], list[dict[str, Any]]] = defaultdict(list)
    for r in records:
        by_key[(r["system"], r["protocol"], r["path"])].append(r)
    rows = []
    for (system, protocol, path), group in sorted(by_key.items()):
        medians = [g["median_ms"] for g in group]
        row: dict[str, Any] = {
            "system": system,
            "protocol": protocol,
            "path": path,
            "rounds": len(group),
            "median_ms": statistics.median(medians),
            "round_medians_ms": [min(medians), max(medians)],
            "all_checked": all(g["checked"] for g in group),
        }
        if path != "socket":
            socket = {g["round"]: g["median_ms"] for g in by_key[(system, protocol, "socket")]}
            ratios = [socket[g["round"]] / g["median_ms"] for g in group if g["round"] in socket]
            if ratios:
                row["socket_over_this"] = statistics.median(ratios)
                row["socket_over_this_rounds"] = [min(ratios), max(ratios)]
        rows.append(row)
    return rows


def print_table(summary: list[dict[str, Any]], mib: int, rounds: int) -> None:
    from rich.console import Console
    from rich.table import Table

    table = Table(title=f"{mib} MiB FP32 identity round trip, medians of {rounds} rounds")
    for column in ("system", "proto", "path", "ms", "round medians ms", "GB/s", "socket ÷ this"):
        table.add_column(column, justify="right" if column not in ("system", "proto") else "left")
    for row in summary:
        gbps = 2 * mib * 2**20 / (row["median_ms"] / 1e3) / 1e9  # input and output
        ratio = "-"
        if "socket_over_this" in row:
            low, high = row["socket_over_this_rounds"]
            ratio = f"{row['socket_over_this']:.1f}x [{low:.1f}-{high:.1f}]"
        low_ms, high_ms = row["round_medians_ms"]
        table.add_row(
            row["system"],
            row["protocol"],
            row["path"] + ("" if row["all_checked"] else " (WRONG)"),
            f"{row['median_ms']:.2f}",
            f"{low_ms:.2f}-{high_ms:.2f}",
            f"{gbps:.1f}",
            ratio,
        )
    Console().print(table)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    import tritonclient.grpc as grpcclient
    import tritonclient.http as httpclient

    started = time.monotonic()
    x = np.random.default_rng(0).random(args.mib * 2**20 // 4, dtype=np.float32)
    regions = Regions(x.nbytes)
    workdir = Path(tempfile.mkdtemp(prefix="shm-bench-"))
    records: list[dict[str, Any]] = []
    error = None
    try:
        with start_servers(workdir, args.systems) as running:
            print(f"servers up in {time.monotonic() - started:.0f} s: {', '.join(running)}")
            calls: dict[tuple[str, str, str], Callable[[], np.ndarray]] = {}
            for system, server in running.items():
                for protocol in PROTOCOLS:
                    url = server.ports.url(protocol)
                    if protocol == "http":
                        client: Any = httpclient.InferenceServerClient(
                            url, connection_timeout=120.0, network_timeout=120.0
                        )
                    else:
                        client = grpcclient.InferenceServerClient(url)
                    regions.register(client)
                    for path in PATHS:
                        call = request_function(protocol, path, client, regions, x)
                        calls[(system, protocol, path)] = call
                        measure(call, x, 3)  # warm-up
            keys = list(calls)
            for round_no in range(args.rounds):
                for key in rotate(keys, round_no):
                    system, protocol, path = key
                    if path != "socket":  # input in place, output zeroed: the check sees a write
                        regions.shm.set_shared_memory_region(regions.handles["in"], [x])
                        regions.shm.set_shared_memory_region(
                            regions.handles["out"], [np.zeros_like(x)]
                        )
                    record = measure(calls[key], x, args.requests)
                    record.update(system=system, protocol=protocol, path=path, round=round_no)
                    records.append(record)
                    print(
                        f"round {round_no + 1} {system:>8} {protocol} {path:>8}: "
                        f"{record['median_ms']:8.2f} ms median"
                        + ("" if record["checked"] else "  WRONG OUTPUT"),
                        flush=True,
                    )
    except Exception as exc:  # recorded with what was measured before it
        error = f"{type(exc).__name__}: {exc}"
        print(f"stopped: {error}", file=sys.stderr)
    finally:
        regions.destroy()
        if not args.keep:
            shutil.rmtree(workdir, ignore_errors=True)
    summary = summarize(records)
    report.write_document(
        args.out,
        "shared_memory",
        argv if argv is not None else sys.argv[1:],
        args,
        started=started,
        error=error,
        summary=summary,
        records=records,
    )
    print_table(summary, args.mib, args.rounds)
    print(f"results: {args.out}" + (f" (kept {workdir})" if args.keep else ""))
    return 1 if error or not all(r["checked"] for r in records) else 0


if __name__ == "__main__":
    sys.exit(main())
