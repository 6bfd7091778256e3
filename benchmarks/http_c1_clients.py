"""HTTP at concurrency 1: how much of the rate is the client's own time, per client.

    python benchmarks/http_c1_clients.py              # ~3 min on 2 cores
    python benchmarks/http_c1_clients.py --rounds 1 --seconds 1

At concurrency 1 a closed loop sends the next request only when the last answer is read, so
its rate is 1 / (client time + wire + server time): two clients can measure the same server
and disagree by their own cost per request. This study serves the examples' ``identity_bytes``
model (16 strings of 128 characters per request, as ``bench_load_vs_perf_analyzer.py``) from
one ``headrace serve`` pinned to ``--server-cpus`` and drives it, one client at a time and
taking turns round by round, from ``--client-cpus`` with:

- ``raw``: the floor, a few lines over a blocking socket: one ``sendall`` of the pre-built
  request, read to the end of the body, check the status;
- ``raw-split``: the same, with the headers and the body in two writes (as perf_analyzer's
  libcurl sends a request), to tell its framing's cost from its client's;
- ``headrace``: ``headrace bench load --concurrency 1`` (its generator);
- ``perf_analyzer``: NVIDIA's, through ``headrace bench load --perf-analyzer``.

The table gives each client's median throughput and p50 over rounds and its ratio to ``raw``.
Results: benchmarks/results/http_c1_clients.json, with the machine.
"""

from __future__ import annotations

import argparse
import os
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE / "serve_models"))
sys.path.insert(0, str(HERE))

import report  # noqa: E402
import servers  # noqa: E402
from bench_load_vs_perf_analyzer import pin_tree  # noqa: E402

from headrace.bench.load import LoadPoint, LoadSettings, fetch_target, run_load  # noqa: E402
from headrace.bench.load_inputs import http_message, random_inputs  # noqa: E402
from headrace.bench.perf_analyzer import locate  # noqa: E402

MODEL = "identity_bytes"
SHAPES = {"INPUT0": [16]}
CLIENTS = ("raw", "raw-split", "headrace", "perf_analyzer")


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--rounds", type=int, default=5, help="(default 5)")
    p.add_argument(
        "--seconds", type=float, default=3.0, help="raw clients: measured time (default 3)"
    )
    p.add_argument("--window-ms", type=int, default=1000, help="bench load windows (default 1000)")
    p.add_argument("--server-cpus", default="1", help="(default 1)")
    p.add_argument("--client-cpus", default="0", help="(default 0)")
    p.add_argument("--perf-analyzer", default=None, help="executable (default: located)")
    p.add_argument("--out", type=Path, default=HERE / "results" / "http_c1_clients.json")
    return p.parse_args(argv)


def raw_client(address: str, message: bytes, split: bool, seconds: float) -> dict[str, float]:
    """Closed loop on one keep-alive connection for ``seconds`` (after a 0.5 s warm-up)."""
    host, _, port = address.rpartition(":")
    head_end = message.index(b"\r\n\r\n") + 4
    parts = [message[:head_end], message[head_end:]] if split else [message]
    latencies: list[int] = []
    with socket.create_connection((host, int(port)), timeout=10) as sock:
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        buffer = b""
        warm_until = time.monotonic() + 0.5
        while time.monotonic() < warm_until:
            buffer = _exchange(sock, parts, buffer)
        started = time.monotonic_ns()
        end = started + int(seconds * 1e9)
        now = started
        while now < end:
            buffer = _exchange(sock, parts, buffer)
            after = time.monotonic_ns()
            latencies.append(after - now)
            now = after
    elapsed_s = (now - started) / 1e9
    return {
        "throughput": len(latencies) / elapsed_s,
        "p50_us": statistics.median(latencies) / 1e3,
        "requests": len(latencies),
    }


def _exchange(sock: socket.socket, parts: list[bytes], buffer: bytes) -> bytes:
    """Send one request, read its whole response; what is left over stays in the buffer."""
    for part in parts:
        sock.sendall(part)
    while b"\r\n\r\n" not in buffer:
        buffer += _recv(sock)
    head, _, rest = buffer.partition(b"\r\n\r\n")
    lines = head.split(b"\r\n")
    if lines[0].split(b" ")[1] != b"200":
        raise RuntimeError(f"server answered {lines[0]!r}")
    length = next(
        int(line.split(b":", 1)[1]) for line in lines if line.lower().startswith(b"content-length")
    )
    while len(rest) < length:
        rest += _recv(sock)
    return rest[length:]


def _recv(sock: socket.socket) -> bytes:
    chunk = sock.recv(1 << 16)
    if not chunk:
        raise ConnectionError("the server closed the connection")
    return chunk


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    started = time.monotonic()
    tool = locate(args.perf_analyzer)
    records: list[dict[str, Any]] = []
    with tempfile.TemporaryDirectory(prefix="http-c1-") as tmp:
        repository = Path(tmp) / "repo"
        subprocess.run(
            [sys.executable, "-m", "headrace.cli", "examples", "create", str(repository)],
            check=True,
            capture_output=True,
        )
        with servers.launch("headrace", repository, [MODEL], Path(tmp), {}) as server:
            assert server.ports is not None
            pin_tree(server.process.pid, {int(c) for c in args.server_cpus.split(",")})
            os.sched_setaffinity(0, {int(c) for c in args.client_cpus.split(",")})
            address = f"127.0.0.1:{server.ports.http}"
            settings = LoadSettings(
                url=address,
                model=MODEL,
                protocol="http",
                shapes=SHAPES,
                window_ms=args.window_ms,
                stability_percent=20.0,
                max_trials=8,
                processes=1,
            )
            target = fetch_target(settings)
            message = http_message(address, target, random_inputs(target, 1))
            for round_no in range(args.rounds):
                order = CLIENTS if round_no % 2 == 0 else CLIENTS[::-1]
                for client in order:
                    if client.startswith("raw"):
                        result = raw_client(address, message, client == "raw-split", args.seconds)
                    else:
                        generator = "perf_analyzer" if client == "perf_analyzer" else "headrace"
                        (point,) = run_load(settings, [LoadPoint(concurrency=1)], generator, tool)
                        done = point.as_dict()
                        if "throughput" not in done:
                            raise RuntimeError(f"{client}: {done.get('error')}")
                        result = {"throughput": done["throughput"], "p50_us": done["p50_us"]}
                    record = {"client": client, "round": round_no, **result}
                    records.append(record)
                    print(
                        f"r{round_no} {client}: {result['throughput']:.1f} infer/s, "
                        f"p50 {result['p50_us']:.0f} us",
                        flush=True,
                    )
    summary = summarize(records)
    _print(summary)
    report.write_document(
        args.out,
        "http_c1_clients",
        sys.argv[1:] if argv is None else argv,
        args,
        started=started,
        error=None,
        summary=summary,
        records=records,
    )
    print(f"results: {args.out}")
    return 0


def summarize(records: list[dict[str, Any]]) -> dict[str, Any]:
    """Per client: median throughput and p50 over rounds, the ratio to the raw floor, and the
    time per request it adds over the floor (from the p50s)."""
    rows = []
    for client in CLIENTS:
        mine = [r for r in records if r["client"] == client]
        if mine:
            rows.append(
                {
                    "client": client,
                    "rounds": len(mine),
                    "throughput": statistics.median(r["throughput"] for r in mine),
                    "p50_us": statistics.median(r["p50_us"] for r in mine),
                }
            )
    floor = next((r for r in rows if r["client"] == "raw"), None)
    for row in rows:
        row["ratio_to_raw"] = row["throughput"] / floor["throughput"] if floor else None
        row["p50_over_raw_us"] = row["p50_us"] - floor["p50_us"] if floor else None
    return {"model": MODEL, "concurrency": 1, "clients": rows}


def _print(summary: dict[str, Any]) -> None:
    from rich.console import Console
    from rich.table import Table

    table = Table(title=f"HTTP, concurrency 1, {summary['model']} (median over rounds)")
    for column in ("client", "inf/s", "p50 µs", "ratio to raw", "p50 over raw, µs"):
        table.add_column(column)
    for row in summary["clients"]:
        table.add_row(
            row["client"],
            f"{row['throughput']:.1f}",
            f"{row['p50_us']:.0f}",
            f"{row['ratio_to_raw']:.3f}" if row["ratio_to_raw"] is not None else "-",
            f"{row['p50_over_raw_us']:+.0f}" if row["p50_over_raw_us"] is not None else "-",
        )
    Console(width=120).print(table)


if __name__ == "__main__":
    sys.exit(main())
