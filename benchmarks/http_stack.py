"""HTTP stack choice by measurement: aiohttp vs ASGI on uvicorn, and headrace's own frontend.

    python benchmarks/http_stack.py                  # 3 rounds, concurrency 1 and 16 (< 5 min)
    python benchmarks/http_stack.py --rounds 1 --concurrency 16 --stacks aiohttp,asgi

Every stack serves the SAME minimal KServe v2 infer endpoint (``POST /v2/models/m/infer``, a
binary-tensor body: JSON header + 64 float32, ``Inference-Header-Content-Length``). The work
per request is shared code (:func:`infer_bytes`: orjson header, ``np.frombuffer``, one float32
out), so the stacks differ only in what carries the bytes:

- ``aiohttp``: aiohttp.web on uvloop (what ``headrace.server.http.frontend`` is built on);
- ``starlette``: Starlette on uvicorn with uvloop + httptools;
- ``asgi``: a bare ASGI callable on uvicorn with uvloop + httptools (the ASGI floor);
- ``headrace``: the real ``HttpFrontend`` + server core serving a bound Python callable
  (``headrace.server.binding.Server``), on uvloop; its gap to ``aiohttp`` is our own overhead.

perf_analyzer (HTTP, binary tensors, random data) is the client. Each server is a child
process bound to 127.0.0.1; with two or more CPUs the server is pinned to one CPU and the
client to the others. Stacks alternate over rounds (the order rotates each round) so slow
drift of the machine hits all of them. Results: benchmarks/results/http_stack.json with the
machine they ran on; a rich table on stdout. A budget (``--budget-s``) bounds the whole run.
"""

from __future__ import annotations

import argparse
import json
import os
import selectors
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import replace
from datetime import datetime, timezone
from importlib import metadata
from pathlib import Path
from typing import Any

import numpy as np

HERE = Path(__file__).resolve().parent
STACKS = ("aiohttp", "starlette", "asgi", "headrace")
BASELINE = "aiohttp"
MODEL = "m"
FEATURES = 64
MAX_BATCH = 8
INFER_PATH = f"/v2/models/{MODEL}/infer"
HEADER_LENGTH = "Inference-Header-Content-Length"
_READY_MARK = "HTTP_STACK_PORT"

# --- the shared endpoint ------------------------------------------------------------------

MODEL_METADATA = {
    "name": MODEL,
    "versions": ["1"],
    "platform": "python",
    "inputs": [{"name": "x", "datatype": "FP32", "shape": [-1, FEATURES]}],
    "outputs": [{"name": "y", "datatype": "FP32", "shape": [-1, 1]}],
}
MODEL_CONFIG = {
    "name": MODEL,
    "platform": "python",
    "backend": "python",
    "max_batch_size": MAX_BATCH,
    "input": [{"name": "x", "data_type": "TYPE_FP32", "dims": [FEATURES]}],
    "output": [{"name": "y", "data_type": "TYPE_FP32", "dims": [1]}],
}
MODEL_STATS = {"model_stats": [{"name": MODEL, "version": "1", "inference_count": 0}]}
SERVER_METADATA = {"name": "http_stack", "version": "0", "extensions": ["binary_tensor_data"]}


def json_routes() -> dict[str, bytes]:
    """The GET endpoints perf_analyzer reads before loading, pre-encoded (bodies are static)."""
    import orjson

    return {
        "/v2": orjson.dumps(SERVER_METADATA),
        "/v2/health/live": b"",
        "/v2/health/ready": b"",
        f"/v2/models/{MODEL}": orjson.dumps(MODEL_METADATA),
        f"/v2/models/{MODEL}/ready": b"",
        f"/v2/models/{MODEL}/config": orjson.dumps(MODEL_CONFIG),
        f"/v2/models/{MODEL}/stats": orjson.dumps(MODEL_STATS),
    }


def infer_bytes(body: bytes, header_length: int | None) -> tuple[bytes, int]:
    """One binary-tensor request in, one binary response out: ``(body, header length)``.

    The model sums the 64 features of each row. Raises ValueError naming what is wrong, which
    every stack turns into a 400.
    """
    import orjson

    if header_length is None:
        raise ValueError(f"missing {HEADER_LENGTH}: this endpoint takes binary tensors only")
    if not 0 < header_length <= len(body):
        raise ValueError(f"{HEADER_LENGTH} {header_length} outside a body of {len(body)} bytes")
    header = orjson.loads(body[:header_length])
    (spec,) = header["inputs"]
    x = np.frombuffer(body, dtype=np.float32, offset=header_length).reshape(spec["shape"])
    if x.shape[-1] != FEATURES:
        raise ValueError(f"input 'x' has shape {list(x.shape)}, model '{MODEL}' expects [-1, 64]")
    y = x.sum(axis=-1, keepdims=True, dtype=np.float32)
    out = {
        "model_name": MODEL,
        "model_version": "1",
        "id": header.get("id", ""),
        "outputs": [
            {
                "name": "y",
                "datatype": "FP32",
                "shape": list(y.shape),
                "parameters": {"binary_data_size": y.nbytes},
            }
        ],
    }
    head = orjson.dumps(out)
    return head + y.tobytes(), len(head)


def _error_body(exc: Exception) -> bytes:
    import orjson

    return orjson.dumps({"error": f"{type(exc).__name__}: {exc}"})


# --- the stacks (each runs in its own child process) ----------------------------------------


def _announce(port: int) -> None:
    """Tell the parent which port to load; the socket is listening when this is printed."""
    print(f"{_READY_MARK} {port}", flush=True)


def serve_aiohttp() -> None:
    """aiohttp.web on uvloop, the stack headrace's HttpFrontend uses."""
    import asyncio

    import uvloop
    from aiohttp import web

    routes = json_routes()

    async def infer(request: web.Request) -> web.Response:
        body = await request.read()
        raw = request.headers.get(HEADER_LENGTH)
        try:
            out, length = infer_bytes(body, int(raw) if raw is not None else None)
        except (ValueError, KeyError, TypeError) as exc:
            return web.Response(body=_error_body(exc), status=400, content_type="application/json")
        return web.Response(
            body=out, headers={HEADER_LENGTH: str(length)}, content_type="application/octet-stream"
        )

    def static(body: bytes) -> Callable[[web.Request], Any]:
        async def handler(_: web.Request) -> web.Response:
            return web.Response(body=body, content_type="application/json")

        return handler

    async def main() -> None:
        app = web.Application()
        for path, body in routes.items():
            app.router.add_get(path, static(body), allow_head=False)
        app.router.add_post(INFER_PATH, infer)
        runner = web.AppRunner(app, access_log=None)
        await runner.setup()
        await web.TCPSite(runner, "127.0.0.1", 0).start()
        _announce(int(runner.addresses[0][1]))
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, stop.set)
        await stop.wait()
        await runner.cleanup()

    uvloop.run(main())


def bare_asgi_app() -> Callable[..., Any]:
    """The endpoint as a bare ASGI 3 callable: no framework between uvicorn and the work."""
    routes = json_routes()
    json_headers = [(b"content-type", b"application/json")]

    async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            return
        path, method = scope["path"], scope["method"]
        if method == "POST" and path == INFER_PATH:
            chunks = []
            more = True
            while more:
                message = await receive()
                chunks.append(message.get("body", b""))
                more = message.get("more_body", False)
            raw = dict(scope["headers"]).get(HEADER_LENGTH.lower().encode())
            try:
                out, length = infer_bytes(b"".join(chunks), int(raw) if raw is not None else None)
            except (ValueError, KeyError, TypeError) as exc:
                await _asgi_send(send, 400, json_headers, _error_body(exc))
                return
            headers = [
                (b"content-type", b"application/octet-stream"),
                (HEADER_LENGTH.encode(), str(length).encode()),
            ]
            await _asgi_send(send, 200, headers, out)
        elif method == "GET" and path in routes:
            await _asgi_send(send, 200, json_headers, routes[path])
        else:
            await _asgi_send(send, 404, json_headers, b'{"error":"Not Found"}')

    return app


async def _asgi_send(
    send: Any, status: int, headers: list[tuple[bytes, bytes]], body: bytes
) -> None:
    headers = [*headers, (b"content-length", str(len(body)).encode())]
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": body})


def starlette_app() -> Callable[..., Any]:
    """The endpoint as a Starlette application (routing, Request/Response objects)."""
    from starlette.applications import Starlette
    from starlette.requests import Request
    from starlette.responses import Response
    from starlette.routing import Route

    async def infer(request: Request) -> Response:
        body = await request.body()
        raw = request.headers.get(HEADER_LENGTH)
        try:
            out, length = infer_bytes(body, int(raw) if raw is not None else None)
        except (ValueError, KeyError, TypeError) as exc:
            return Response(_error_body(exc), status_code=400, media_type="application/json")
        return Response(
            out, media_type="application/octet-stream", headers={HEADER_LENGTH: str(length)}
        )

    def static(body: bytes) -> Callable[[Request], Any]:
        async def handler(_: Request) -> Response:
            return Response(body, media_type="application/json")

        return handler

    routes = [Route(path, static(body), methods=["GET"]) for path, body in json_routes().items()]
    routes.append(Route(INFER_PATH, infer, methods=["POST"]))
    return Starlette(routes=routes)


def serve_uvicorn(app: Callable[..., Any]) -> None:
    """``app`` on uvicorn with uvloop and httptools; uvicorn drains on SIGTERM itself."""
    import socket

    import uvicorn

    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind(("127.0.0.1", 0))
    sock.listen(1024)  # connections queue here until uvicorn starts accepting
    config = uvicorn.Config(
        app,
        loop="uvloop",
        http="httptools",
        lifespan="off",
        access_log=False,
        log_level="warning",
        interface="asgi3",
    )
    _announce(sock.getsockname()[1])
    uvicorn.Server(config).run(sockets=[sock])


def serve_headrace() -> None:
    """The real HttpFrontend and server core on uvloop, serving the same sum as a callable."""
    import asyncio

    import uvloop

    from headrace.server.app import FrontendOptions
    from headrace.server.binding import Server, Tensor

    signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGTERM, signal.SIGINT})  # for sigwait
    asyncio.set_event_loop_policy(uvloop.EventLoopPolicy())  # Server's loop thread gets uvloop
    server = Server(FrontendOptions(http_port=0, grpc_port=None, metrics_port=None))
    server.bind(
        MODEL,
        lambda x: {"y": x.sum(axis=-1, keepdims=True, dtype=np.float32)},
        inputs=[Tensor("x", np.float32, (FEATURES,))],
        outputs=[Tensor("y", np.float32, (1,))],
        max_batch_size=MAX_BATCH,
        batching=False,
    )
    server.start()
    try:
        _announce(server.http_port)
        signal.sigwait({signal.SIGTERM, signal.SIGINT})
    finally:
        server.stop()


def serve(stack: str, cpu: int | None) -> None:
    """Child-process entry point: pin to ``cpu`` when given, then serve ``stack`` until SIGTERM."""
    if cpu is not None:
        os.sched_setaffinity(0, {cpu})
    if stack == "aiohttp":
        serve_aiohttp()
    elif stack == "starlette":
        serve_uvicorn(starlette_app())
    elif stack == "asgi":
        serve_uvicorn(bare_asgi_app())
    elif stack == "headrace":
        serve_headrace()
    else:
        raise SystemExit(f"unknown stack {stack!r}; choose from {list(STACKS)}")


# --- the driver -----------------------------------------------------------------------------


class ServerStartFailed(RuntimeError):
    """A stack's server exited or did not announce its port in time; the message has its log."""


@contextmanager
def running(stack: str, cpu: int | None, log: Path, timeout_s: float = 60.0) -> Iterator[int]:
    """Start ``stack`` in a child process, yield its port, and stop it (SIGTERM, then KILL)."""
    command = [sys.executable, str(Path(__file__).resolve()), "--serve", stack]
    if cpu is not None:
        command += ["--cpu", str(cpu)]
    with open(log, "wb") as log_file:
        process = subprocess.Popen(
            command, stdout=subprocess.PIPE, stderr=log_file, start_new_session=True
        )
        try:
            yield _read_port(process, stack, log, timeout_s)
        finally:
            _stop(process)


def _read_port(process: subprocess.Popen[bytes], stack: str, log: Path, timeout_s: float) -> int:
    assert process.stdout is not None
    deadline = time.monotonic() + timeout_s
    with selectors.DefaultSelector() as selector:
        selector.register(process.stdout, selectors.EVENT_READ)
        while (left := deadline - time.monotonic()) > 0:
            if not selector.select(left):
                break
            line = process.stdout.readline().decode(errors="replace")
            if not line:  # EOF: the child exited
                break
            if line.startswith(_READY_MARK):
                return int(line.split()[1])
    tail = log.read_text(errors="replace")[-2000:] if log.exists() else ""
    raise ServerStartFailed(
        f"stack {stack!r} did not announce a port within {timeout_s:.0f} s "
        f"(exit code {process.poll()}): {tail}"
    )


def _stop(process: subprocess.Popen[bytes], grace_s: float = 10.0) -> None:
    for sig in (signal.SIGTERM, signal.SIGKILL):
        try:
            os.killpg(process.pid, sig)
        except ProcessLookupError:
            break
        try:
            process.wait(timeout=grace_s)
            break
        except subprocess.TimeoutExpired:
            continue
    if process.stdout is not None:
        process.stdout.close()


class BudgetSpent(RuntimeError):
    """Too little of ``--budget-s`` is left to start (or finish) another load."""


def perf_load(port: int, concurrency: int, args: argparse.Namespace) -> Any:
    """The perf_analyzer load for one point (binary FP32 [1, 64], perf_analyzer's random data)."""
    from headrace.bench.perf_analyzer import PerfLoad

    return PerfLoad(
        model=MODEL,
        url=f"127.0.0.1:{port}",
        protocol="http",
        concurrency=concurrency,
        shapes={"x": [FEATURES]},
        measurement_ms=args.window_ms,
        max_trials=args.max_trials,
        stability_percent=args.stability,
    )


def run_load(load: Any, args: argparse.Namespace, deadline: float) -> Any:
    """Run ``load`` if the budget still has room for its 3 windows; raise BudgetSpent if not."""
    from headrace.bench.perf_analyzer import PerfAnalyzerFailed, run_perf_analyzer

    left = deadline - time.monotonic()
    if left < 3 * load.measurement_ms / 1000 + 5:
        raise BudgetSpent(f"{left:.0f} s of --budget-s {args.budget_s:g} left, too few for a load")
    try:
        return run_perf_analyzer(load, executable=args.tool, timeout_s=min(load.bound_s(), left))
    except PerfAnalyzerFailed as exc:
        if time.monotonic() >= deadline:
            raise BudgetSpent(f"a load ran past --budget-s {args.budget_s:g}") from exc
        raise


def warm_up(port: int, args: argparse.Namespace, deadline: float) -> str | None:
    """Three short windows at the highest concurrency, discarded: connections, first calls.

    Returns why it failed, or None; a failed warm-up is not fatal (the measured load that
    follows fails loudly if the server is really broken).
    """
    from headrace.bench.perf_analyzer import PerfAnalyzerFailed

    load = replace(
        perf_load(port, max(args.concurrency), args),
        measurement_ms=1000,
        max_trials=3,
        stability_percent=1e6,
    )
    try:
        run_load(load, args, deadline)
    except BudgetSpent:
        raise
    except PerfAnalyzerFailed as exc:
        return str(exc)[-200:]
    return None


def measure(
    port: int, concurrency: int, args: argparse.Namespace, deadline: float
) -> dict[str, Any]:
    """One perf_analyzer load; an unstable level is kept, flagged, from 3 more windows."""
    from headrace.bench.perf_analyzer import UnstableMeasurement

    load = perf_load(port, concurrency, args)
    started = time.monotonic()
    load_avg = os.getloadavg()[0]
    stable = True
    try:
        row = run_load(load, args, deadline)
    except UnstableMeasurement:
        stable = False
        row = run_load(replace(load, stability_percent=1e6, max_trials=3), args, deadline)
    return {
        "concurrency": concurrency,
        "stable": stable,
        "load_avg_1m_before": load_avg,
        "seconds": round(time.monotonic() - started, 2),
        "throughput": row.throughput,
        "p50_us": row.p50_us,
        "p90_us": row.p90_us,
        "p99_us": row.p99_us,
        "avg_us": row.avg_us,
    }


def run_rounds(
    args: argparse.Namespace, cpus: tuple[int | None, set[int] | None], say: Callable[[str], None]
) -> list[dict[str, Any]]:
    """Every stack, every concurrency, ``args.rounds`` times; the stack order rotates."""
    server_cpu, client_cpus = cpus
    if not client_cpus:
        return _run_rounds(args, server_cpu, say)
    before = os.sched_getaffinity(0)
    os.sched_setaffinity(0, client_cpus)  # perf_analyzer inherits it
    try:
        return _run_rounds(args, server_cpu, say)
    finally:
        os.sched_setaffinity(0, before)


def _run_rounds(
    args: argparse.Namespace, server_cpu: int | None, say: Callable[[str], None]
) -> list[dict[str, Any]]:
    deadline = time.monotonic() + args.budget_s
    runs: list[dict[str, Any]] = []
    with tempfile.TemporaryDirectory(prefix="http-stack-") as tmp:
        for round_no in range(args.rounds):
            shift = round_no % len(args.stacks)
            for stack in args.stacks[shift:] + args.stacks[:shift]:
                log = Path(tmp) / f"{stack}-{round_no}.log"
                started = time.monotonic()
                with running(stack, server_cpu, log) as port:
                    say(f"round {round_no + 1} {stack:9} up in {time.monotonic() - started:.1f} s")
                    try:
                        failed = warm_up(port, args, deadline)
                        if failed:
                            say(f"  warm-up failed (continuing): {failed}")
                        for concurrency in args.concurrency:
                            record = measure(port, concurrency, args, deadline)
                            record.update(stack=stack, round=round_no)
                            runs.append(record)
                            say(_describe(record))
                    except BudgetSpent as exc:
                        say(f"stopping early: {exc}")
                        return runs
    return runs


def _describe(record: dict[str, Any]) -> str:
    return (
        f"  c={record['concurrency']:<3} {record['throughput']:9.1f} inf/s  "
        f"p50 {record['p50_us'] / 1e3:6.3f} ms  p99 {record['p99_us'] / 1e3:6.3f} ms"
        + ("" if record["stable"] else "  (unstable)")
    )


def summarize(runs: list[dict[str, Any]], stacks: list[str]) -> list[dict[str, Any]]:
    """Median over rounds per (stack, concurrency), with ratios to the aiohttp baseline."""
    rows = []
    for concurrency in sorted({r["concurrency"] for r in runs}):
        medians: dict[str, dict[str, Any]] = {}
        for stack in stacks:
            mine = [r for r in runs if r["stack"] == stack and r["concurrency"] == concurrency]
            if not mine:
                continue
            tput = [r["throughput"] for r in mine]
            medians[stack] = {
                "stack": stack,
                "concurrency": concurrency,
                "rounds": len(mine),
                "unstable": sum(not r["stable"] for r in mine),
                "throughput": statistics.median(tput),
                "throughput_min": min(tput),
                "throughput_max": max(tput),
                "p50_us": statistics.median(r["p50_us"] for r in mine),
                "p99_us": statistics.median(r["p99_us"] for r in mine),
            }
        base = medians.get(BASELINE)
        for row in medians.values():
            row["throughput_vs_aiohttp"] = row["throughput"] / base["throughput"] if base else None
            row["p50_vs_aiohttp"] = row["p50_us"] / base["p50_us"] if base else None
            rows.append(row)
    return rows


def print_table(summary: list[dict[str, Any]]) -> None:
    from rich.console import Console
    from rich.table import Table

    table = Table(title="HTTP stack: POST /v2/models/m/infer, 64 x FP32 binary, perf_analyzer")
    for column in ("stack", "conc.", "infer/s (median)", "min-max", "p50 ms", "p99 ms"):
        table.add_column(column, justify="left" if column == "stack" else "right")
    table.add_column("x aiohttp tput", justify="right")
    table.add_column("x aiohttp p50", justify="right")
    for row in summary:
        ratio = row["throughput_vs_aiohttp"]
        p50_ratio = row["p50_vs_aiohttp"]
        table.add_row(
            row["stack"],
            str(row["concurrency"]),
            f"{row['throughput']:.0f}",
            f"{row['throughput_min']:.0f}-{row['throughput_max']:.0f}",
            f"{row['p50_us'] / 1e3:.3f}",
            f"{row['p99_us'] / 1e3:.3f}",
            "-" if ratio is None else f"{ratio:.2f}",
            "-" if p50_ratio is None else f"{p50_ratio:.2f}",
        )
    console = Console()
    Console(width=max(console.width, 110)).print(table)  # no ellipsis in logs and pipes


def versions() -> dict[str, str | None]:
    found: dict[str, str | None] = {}
    for name in ("aiohttp", "uvloop", "uvicorn", "starlette", "httptools", "orjson", "numpy"):
        try:
            found[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            found[name] = None
    return found


def split_cpus(pin: bool) -> tuple[int | None, set[int] | None]:
    """Server on the first usable CPU, client on the rest; no pinning on one CPU or if asked."""
    usable = sorted(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else []
    if not pin or len(usable) < 2:
        return None, None
    return usable[0], set(usable[1:])


def _csv(kind: Callable[[str], Any]) -> Callable[[str], list[Any]]:
    return lambda text: [kind(part) for part in text.split(",") if part]


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--stacks", type=_csv(str), default=list(STACKS))
    p.add_argument("--concurrency", type=_csv(int), default=[1, 16])
    p.add_argument("--rounds", type=int, default=3)
    p.add_argument("--window-ms", type=int, default=2000, help="perf_analyzer -p")
    p.add_argument("--max-trials", type=int, default=3, help="perf_analyzer -r")
    p.add_argument("--stability", type=float, default=100.0, help="perf_analyzer -s (percent)")
    p.add_argument("--budget-s", type=float, default=270.0, help="stop starting loads after")
    p.add_argument("--no-pin", action="store_true", help="do not split CPUs server/client")
    p.add_argument("--perf-analyzer", dest="tool", default=None, help="perf_analyzer executable")
    p.add_argument("--out", type=Path, default=HERE / "results" / "http_stack.json")
    p.add_argument("--serve", choices=STACKS, help=argparse.SUPPRESS)
    p.add_argument("--cpu", type=int, default=None, help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    unknown = sorted(set(args.stacks) - set(STACKS))
    if unknown:
        p.error(f"unknown stacks {unknown}; choose from {list(STACKS)}")
    if args.rounds < 1 or not args.concurrency or min(args.concurrency) < 1:
        p.error(f"need rounds >= 1 and concurrencies >= 1, got {args.rounds}, {args.concurrency}")
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if args.serve:
        serve(args.serve, args.cpu)
        return 0
    from headrace.bench.machine import machine_info
    from headrace.bench.perf_analyzer import locate

    args.tool = locate(args.tool)
    cpus = split_cpus(not args.no_pin)
    started = time.monotonic()
    runs = run_rounds(args, cpus, lambda line: print(line, file=sys.stderr, flush=True))
    summary = summarize(runs, args.stacks)
    result = {
        "benchmark": "http_stack",
        "created": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "seconds": round(time.monotonic() - started, 1),
        "machine": machine_info(),
        "versions": versions(),
        "settings": {
            "stacks": args.stacks,
            "concurrency": args.concurrency,
            "rounds": args.rounds,
            "window_ms": args.window_ms,
            "max_trials": args.max_trials,
            "stability_percent": args.stability,
            "budget_s": args.budget_s,
            "server_cpu": cpus[0],
            "client_cpus": sorted(cpus[1]) if cpus[1] else None,
            "request": f"POST {INFER_PATH}, binary FP32 [1, {FEATURES}], random data",
        },
        "summary": summary,
        "runs": runs,
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2) + "\n", encoding="utf-8")
    print_table(summary)
    print(f"wrote {args.out} in {result['seconds']} s", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
