"""Faults: what a model that raises, hangs or dies costs its own callers, and everyone else.

    python benchmarks/reliability/faults.py                  # ~2 min: 2 rounds
    python benchmarks/reliability/faults.py --rounds 1       # a look

One ``headrace serve`` (127.0.0.1) per round serves four copies of ``fault``
(``fault_models.py``, a Triton python-backend ``model.py``): ``steady`` (4 instances,
in-server), ``raising`` (in-server), ``hung`` (in-server, ``HEADRACE_EXECUTION_TIMEOUT_MS``
``--hang-timeout-ms``, a queue policy timeout of ``--queue-timeout-us``) and ``dying``
(``HEADRACE_PYTHON_RUNTIME`` process: its own worker process). While an open loop sends
``--steady-rate`` requests/s to ``steady`` over HTTP, the benchmark in turn makes
``raising`` raise (``--raises`` times), ``hung`` hang (one request, then ``--behind`` queued
behind it) and ``dying``'s worker end (``os._exit``, over gRPC), then waits until ``dying``
answers again (its worker restarted). Recorded: each fault's status, message and time to the
error; the time ``dying`` took to come back; every ``steady`` outcome (none may fail).

Then SIGTERM under load, per round on a fresh server: ``steady`` (``--drain-delay-ms`` per
request) gets an open loop of ``--drain-rate`` requests/s on each of HTTP and gRPC for
``--drain-seconds``, and the server gets SIGTERM halfway. Every request ends as answered,
refused (503 / UNAVAILABLE, or a connection refused: the server had stopped accepting), or
lost (any other error: a request the server may have accepted and not answered). The
server's exit status and its drain line are recorded.

Output: ``results/reliability/faults.json`` (machine, settings, every round, the summary).
"""

from __future__ import annotations

import argparse
import asyncio
import re
import signal
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent / "serve_models"))
sys.path.insert(0, str(HERE))

import load  # noqa: E402
import report  # noqa: E402
import servers  # noqa: E402
from fault_models import DIE, HANG, RAISE, write_fault_model  # noqa: E402


def parse(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    add = parser.add_argument
    add("--rounds", type=int, default=2, help="default %(default)s")
    add("--steady-rate", type=float, default=50.0, help="requests/s (default %(default)s)")
    add("--raises", type=int, default=20, help="default %(default)s")
    add("--hang-timeout-ms", type=int, default=500, help="default %(default)s")
    add("--queue-timeout-us", type=int, default=200_000, help="default %(default)s")
    add(
        "--behind",
        type=int,
        default=3,
        help="requests queued behind the hung one (default %(default)s)",
    )
    add(
        "--drain-rate",
        type=float,
        default=100.0,
        help="requests/s per protocol (default %(default)s)",
    )
    add("--drain-seconds", type=float, default=4.0, help="default %(default)s")
    add("--drain-delay-ms", type=float, default=50.0, help="default %(default)s")
    add(
        "--out", default=str(HERE.parent / "results" / "reliability" / "faults.json"),
        help="result file (default %(default)s)",
    )  # fmt: skip
    return parser.parse_args(argv)


def write_repository(root: Path, args: argparse.Namespace) -> None:
    write_fault_model(root, "steady", instances=4, runtime="in-server")
    write_fault_model(root, "raising", runtime="in-server")
    write_fault_model(
        root, "hung", runtime="in-server", execution_timeout_ms=args.hang_timeout_ms,
        queue_timeout_us=args.queue_timeout_us,
    )  # fmt: skip
    write_fault_model(root, "dying", runtime="process")


def _outcome(o: load.Outcome) -> dict[str, Any]:
    return {"kind": o.kind, "ms": round(o.latency_ms, 2), "message": o.message}


async def faults_with_steady(
    server: servers.ServerProcess, args: argparse.Namespace
) -> dict[str, Any]:
    """Run the faults while a bounded open loop keeps ``steady`` busy; count its outcomes."""
    http = server.ports.url("http")  # type: ignore[union-attr]
    steady, close = await load.make_sender("http", http, "steady")
    stop = asyncio.Event()
    outcomes: list[load.Outcome] = []

    async def keep_sending() -> None:
        interval = 1.0 / args.steady_rate
        tasks: list[asyncio.Task[load.Outcome]] = []
        while not stop.is_set() and len(tasks) < 100_000:
            tasks.append(asyncio.create_task(load.one(steady, float(len(tasks) % 1000))))
            try:
                await asyncio.wait_for(stop.wait(), interval)
            except asyncio.TimeoutError:
                pass
        outcomes.extend(await load.collect(tasks, 30))

    sender = asyncio.create_task(keep_sending())
    try:
        result = await faults_steps(server, args)
    finally:
        stop.set()
        await sender
        await close()
    ok = [o.latency_ms for o in outcomes if o.kind == "ok"]
    result["steady"] = {
        "sent": len(outcomes),
        "answered": len(ok),
        "failed": len(outcomes) - len(ok),
        "failures": sorted({o.message for o in outcomes if o.kind != "ok"})[:3],
        "p50_ms": _round(load.percentile(ok, 0.5)),
        "p99_ms": _round(load.percentile(ok, 0.99)),
        "max_ms": _round(max(ok) if ok else None),
    }
    return result


def _round(value: float | None) -> float | None:
    return None if value is None else round(value, 2)


async def faults_steps(server: servers.ServerProcess, args: argparse.Namespace) -> dict[str, Any]:
    http, grpc = server.ports.url("http"), server.ports.url("grpc")  # type: ignore[union-attr]
    result: dict[str, Any] = {}
    raising, close = await load.make_sender("http", http, "raising")
    result["raise"] = [_outcome(await load.one(raising, RAISE)) for _ in range(args.raises)]
    result["raise_then_serves"] = _outcome(await load.one(raising, 2.0))
    await close()

    hung, close = await load.make_sender("http", http, "hung")
    first = asyncio.create_task(load.one(hung, HANG))
    await asyncio.sleep(0.1)  # the hung request reaches the model before the others
    behind = [asyncio.create_task(load.one(hung, 1.0)) for _ in range(args.behind)]
    result["hang"] = _outcome(await first)
    result["behind_hang"] = [_outcome(await task) for task in behind]
    await close()

    dying, close = await load.make_sender("grpc", grpc, "dying")
    result["die"] = _outcome(await load.one(dying, DIE))
    began = time.perf_counter()
    attempts, back = 0, None
    while time.perf_counter() - began < 60:
        attempts += 1
        back = await load.one(dying, 3.0)
        if back.kind == "ok":
            break
        await asyncio.sleep(0.05)
    result["die_recovery_s"] = round(time.perf_counter() - began, 3)
    result["die_recovery_attempts"] = attempts
    result["die_recovered"] = back is not None and back.kind == "ok"
    await close()
    return result


async def drain_round(server: servers.ServerProcess, args: argparse.Namespace) -> dict[str, Any]:
    """Open loops on HTTP and gRPC; SIGTERM halfway; every outcome classified."""
    senders = []
    for protocol in ("http", "grpc"):
        send, close = await load.make_sender(protocol, server.ports.url(protocol), "steady")  # type: ignore[union-attr]
        senders.append((protocol, send, close))

    async def signal_halfway() -> float:
        await asyncio.sleep(args.drain_seconds / 2)
        server.process.send_signal(signal.SIGTERM)
        return time.perf_counter()

    count = int(args.drain_rate * args.drain_seconds)
    loops = [
        load.open_loop(send, args.drain_rate, args.drain_seconds, count, 30, args.drain_delay_ms)
        for _, send, _ in senders
    ]
    *results, _ = await asyncio.gather(*loops, signal_halfway())
    for _, _, close in senders:
        try:
            await close()
        except Exception:  # the server is gone; nothing to close cleanly
            pass
    record: dict[str, Any] = {}
    for (protocol, _, _), (outcomes, _sending) in zip(senders, results):
        kinds: dict[str, int] = {"answered": 0, "refused": 0, "refused_connect": 0, "lost": 0}
        examples: set[str] = set()
        for o in outcomes:
            if o.kind == "ok":
                kinds["answered"] += 1
            elif o.kind == "refused":
                kinds["refused"] += 1
            elif "Cannot connect" in o.message or "Connection refused" in o.message:
                kinds["refused_connect"] += 1
            else:
                kinds["lost"] += 1
                examples.add(o.message[:200])
        record[protocol] = {"sent": len(outcomes), **kinds, "lost_examples": sorted(examples)[:3]}
    return record


def drain_outcome(server: servers.ServerProcess) -> dict[str, Any]:
    code = server.process.wait(timeout=60)
    log = server.log_path.read_text(errors="replace")
    closed = re.search(r"draining (\d+) requests in flight", log)
    drained = re.search(r"drained (\d+) requests in flight in ([0-9.]+) s", log)
    return {
        "exit_code": code,
        "in_flight_at_signal": int(closed.group(1)) if closed else None,
        "drain_s": float(drained.group(2)) if drained else None,
        "drain_lines": [
            line for line in log.splitlines() if "headrace: " in line and "serving" not in line
        ][-3:],
    }


def summary(rounds: list[dict[str, Any]]) -> dict[str, Any]:
    def span(values: list[float]) -> list[float] | None:
        return [min(values), max(values)] if values else None

    faults = [r["faults"] for r in rounds if "faults" in r]
    drains = [r["drain"] for r in rounds if "drain" in r]
    return {
        "raise_ms": span([o["ms"] for f in faults for o in f["raise"]]),
        "raise_all_500": all(o["message"].startswith("500") for f in faults for o in f["raise"]),
        "hang_error_ms": span([f["hang"]["ms"] for f in faults]),
        "behind_hang_ms": span([o["ms"] for f in faults for o in f["behind_hang"]]),
        "die_error_ms": span([f["die"]["ms"] for f in faults]),
        "die_recovery_s": span([f["die_recovery_s"] for f in faults]),
        "steady_failed": sum(f["steady"]["failed"] for f in faults),
        "steady_sent": sum(f["steady"]["sent"] for f in faults),
        "steady_p99_ms": span([f["steady"]["p99_ms"] for f in faults if f["steady"]["p99_ms"]]),
        "drain_exit_codes": sorted({d["exit_code"] for d in drains}),
        "drain_in_flight": span([d["in_flight_at_signal"] for d in drains if d["in_flight_at_signal"] is not None]),
        "drain_s": span([d["drain_s"] for d in drains if d["drain_s"] is not None]),
        "drain_lost": sum(d[p]["lost"] for d in drains for p in ("http", "grpc")),
        "drain_answered": sum(d[p]["answered"] for d in drains for p in ("http", "grpc")),
        "drain_refused": sum(d[p]["refused"] + d[p]["refused_connect"] for d in drains for p in ("http", "grpc")),
    }  # fmt: skip


def table(rounds: list[dict[str, Any]]) -> Any:
    from rich.table import Table

    view = Table(title="faults (ms: client side, to the error)")
    for column in ("rnd", "raise", "hang", "behind", "die", "back s", "steady", "SIGTERM"):
        view.add_column(column, justify="right")
    for r in rounds:
        f, d = r.get("faults"), r.get("drain")
        if f is None or d is None:
            continue
        raise_ms = [o["ms"] for o in f["raise"]]
        behind_ms = [o["ms"] for o in f["behind_hang"]]
        lost = d["http"]["lost"] + d["grpc"]["lost"]
        answered = d["http"]["answered"] + d["grpc"]["answered"]
        view.add_row(
            str(r["round"]), f"{max(raise_ms):.1f}", f"{f['hang']['ms']:.0f}",
            f"{max(behind_ms):.0f}", f"{f['die']['ms']:.0f}", f"{f['die_recovery_s']:.2f}",
            f"{f['steady']['failed']}/{f['steady']['sent']} failed",
            f"exit {d['exit_code']}, {answered} ok, {lost} lost",
        )  # fmt: skip
    return view


def main(argv: list[str]) -> int:
    from rich.console import Console

    args = parse(argv)
    started = time.monotonic()
    console = Console()
    rounds: list[dict[str, Any]] = []
    error = None
    with tempfile.TemporaryDirectory(prefix="faults-") as tmp:
        workdir = Path(tmp)
        repository = workdir / "repo"
        write_repository(repository, args)
        models = ["steady", "raising", "hung", "dying"]
        try:
            for index in range(args.rounds):
                record: dict[str, Any] = {"round": index}
                rounds.append(record)
                timeout = ["--exit-timeout-secs", "2"]
                with servers.launch(
                    "headrace", repository, models, workdir, {}, extra_args=timeout
                ) as server:
                    record["faults"] = asyncio.run(faults_with_steady(server, args))
                    server.stop()
                    record["faults"]["exit_code"] = server.process.returncode
                drain_repo = workdir / f"drain{index}"
                write_fault_model(drain_repo, "steady", instances=4, runtime="in-server")
                with servers.launch("headrace", drain_repo, ["steady"], workdir, {}) as server:
                    record["drain"] = asyncio.run(drain_round(server, args))
                    record["drain"].update(drain_outcome(server))
                console.print(f"round {index}: {record['faults']['steady']}, {record['drain']}")
        except Exception as exc:  # keep what was measured, say what broke
            error = f"{type(exc).__name__}: {exc}"
            console.print(f"[red]{error}[/red]")
    report.write_document(
        args.out, "reliability/faults", argv, args, started=started, error=error,
        summary=summary(rounds), records=rounds,
    )  # fmt: skip
    console.print(table(rounds))
    console.print(f"wrote {args.out}")
    return 1 if error else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
