"""Overload: 10x the sustainable rate against a bounded queue, side by side with NVIDIA Triton.

    python benchmarks/reliability/overload.py                 # ~3 min: 2 rounds, HTTP and gRPC
    python benchmarks/reliability/overload.py --rounds 1 --seconds 3 --systems headrace   # a look

The model is ``fault`` (``fault_models.py``, a Triton python-backend ``model.py``) answering
each request after ``--delay-ms``, one instance, ``max_batch_size`` 1 and
``dynamic_batching { default_queue_policy { max_queue_size: --queue } }``: Triton's way to
bound a model's queue, which headrace reads the same way. Both servers serve the same
directory (headrace with ``--python-runtime in-server``; Triton 2.51 in its python-backend
stub, ``../shared/tools/tritonserver``), on 127.0.0.1.

Per system: first its sustainable rate, a closed loop of ``--concurrency`` clients for
``--warm-seconds`` (no request refused there). Then, per round and protocol (the systems'
order turning around each round), an open loop at ``--factor`` times that rate for
``--seconds`` (at most ``--max-requests``): each request sent on schedule whatever the
answers, by unmodified ``tritonclient`` (``http.aio`` / ``grpc.aio``) on one asyncio loop.
Every request ends as answered (checked: the echo of what was sent), refused (HTTP 503 / gRPC
UNAVAILABLE), another error, or lost (no answer within ``--answer-seconds`` of the last send).
Latencies are the client's (send to answer, client overhead included: an upper bound on the
server's). The server's resident memory (its process tree, Triton's stub included) is sampled
every 0.2 s during each load.

Output: ``results/reliability/overload.json`` (machine, settings, every load with its RSS
series, the summary) and a rich table.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
import tempfile
import time
from contextlib import ExitStack
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent / "serve_models"))
sys.path.insert(0, str(HERE))

import load  # noqa: E402
import report  # noqa: E402
import servers  # noqa: E402
from fault_models import write_fault_model  # noqa: E402

MODEL = "fault"
SYSTEMS = ("headrace", "triton")


def parse(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--systems", default=",".join(SYSTEMS), help="default %(default)s")
    parser.add_argument("--protocols", default="http,grpc", help="default %(default)s")
    parser.add_argument("--rounds", type=int, default=2, help="default %(default)s")
    parser.add_argument(
        "--seconds", type=float, default=8.0, help="open loop length (default %(default)s)"
    )
    parser.add_argument(
        "--factor",
        type=float,
        default=10.0,
        help="times the sustainable rate (default %(default)s)",
    )
    parser.add_argument(
        "--delay-ms", type=float, default=40.0, help="model time per request (default %(default)s)"
    )
    parser.add_argument("--queue", type=int, default=8, help="max_queue_size (default %(default)s)")
    parser.add_argument(
        "--concurrency", type=int, default=4, help="closed loop clients (default %(default)s)"
    )
    parser.add_argument(
        "--warm-seconds", type=float, default=4.0, help="closed loop length (default %(default)s)"
    )
    parser.add_argument(
        "--max-requests", type=int, default=20000, help="per load (default %(default)s)"
    )
    parser.add_argument("--answer-seconds", type=float, default=30.0, help="default %(default)s")
    parser.add_argument(
        "--out", default=str(HERE.parent / "results" / "reliability" / "overload.json"),
        help="result file (default %(default)s)",
    )  # fmt: skip
    return parser.parse_args(argv)


def summarize_load(outcomes: list[load.Outcome], sending_s: float) -> dict[str, Any]:
    """Counts, latencies and throughput of one load."""
    by_kind: dict[str, list[load.Outcome]] = {"ok": [], "refused": [], "error": [], "lost": []}
    for outcome in outcomes:
        by_kind[outcome.kind].append(outcome)
    refused = [o.latency_ms for o in by_kind["refused"]]
    accepted = [o.latency_ms for o in by_kind["ok"]]

    def ms(value: float | None) -> float | None:
        return None if value is None else round(value, 3)

    return {
        "sent": len(outcomes),
        "sending_s": round(sending_s, 3),
        "answered": len(by_kind["ok"]),
        "refused": len(refused),
        "errors": len(by_kind["error"]),
        "lost": len(by_kind["lost"]),
        "error_examples": sorted({o.message for o in by_kind["error"]})[:3],
        "refusal_message": by_kind["refused"][0].message if refused else None,
        "refused_p50_ms": ms(load.percentile(refused, 0.5)),
        "refused_p99_ms": ms(load.percentile(refused, 0.99)),
        "refused_max_ms": ms(max(refused) if refused else None),
        "refused_under_10ms": sum(1 for v in refused if v < 10.0),
        "answered_p50_ms": ms(load.percentile(accepted, 0.5)),
        "answered_p99_ms": ms(load.percentile(accepted, 0.99)),
        "answered_per_s": round(len(accepted) / sending_s, 2) if sending_s else None,
    }


async def sustainable_rate(url: str, args: argparse.Namespace) -> dict[str, Any]:
    send, close = await load.make_sender("http", url, MODEL, batched=True)
    try:
        outcomes, seconds = await load.closed_loop(
            send, args.concurrency, args.warm_seconds, args.max_requests, args.delay_ms
        )
    finally:
        await close()
    answered = sum(1 for o in outcomes if o.kind == "ok")
    return {
        "rate": answered / seconds,
        "answered": answered,
        "other": len(outcomes) - answered,
        "seconds": round(seconds, 3),
    }


async def overload(url: str, protocol: str, rate: float, args: argparse.Namespace) -> Any:
    send, close = await load.make_sender(protocol, url, MODEL, batched=True)
    try:
        return await load.open_loop(
            send, rate, args.seconds, args.max_requests, args.answer_seconds, args.delay_ms
        )
    finally:
        await close()


def summary(records: list[dict[str, Any]]) -> dict[str, Any]:
    """Per system: the worst of every load, so a quoted range covers every row."""
    out: dict[str, Any] = {}
    for system in sorted({r["system"] for r in records}):
        rows = [r for r in records if r["system"] == system]

        def span(key: str, rows: list[dict[str, Any]] = rows) -> list[float] | None:
            values = [r[key] for r in rows if r.get(key) is not None]
            return [min(values), max(values)] if values else None

        out[system] = {
            "loads": len(rows),
            "offered_per_s": span("offered_per_s"),
            "sustainable_per_s": span("sustainable_per_s"),
            "refused_fraction": span("refused_fraction"),
            "refused_p99_ms": span("refused_p99_ms"),
            "refused_max_ms": span("refused_max_ms"),
            "refused_under_10ms_fraction": span("refused_under_10ms_fraction"),
            "answered_p99_ms": span("answered_p99_ms"),
            "errors": sum(r["errors"] for r in rows),
            "lost": sum(r["lost"] for r in rows),
            "rss_growth_mb": span("rss_growth_mb"),
            "rss_max_mb": span("rss_max_mb"),
        }
    return out


def table(records: list[dict[str, Any]]) -> Any:
    from rich.table import Table

    view = Table(title=f"overload: {MODEL} at 10x its sustainable rate (ms: client side)")
    columns = (
        "system", "proto", "rnd", "offer/s", "sent", "ok", "503", "err", "503 p99",
        "503 max", "ok p99", "RSS MB",
    )  # fmt: skip
    for column in columns:
        view.add_column(column, justify="left" if column in ("system", "proto") else "right")
    for r in records:
        view.add_row(
            r["system"], r["protocol"], str(r["round"]), f"{r['offered_per_s']:.0f}",
            str(r["sent"]), str(r["answered"]), str(r["refused"]), str(r["errors"] + r["lost"]),
            _fmt(r["refused_p99_ms"]), _fmt(r["refused_max_ms"]), _fmt(r["answered_p99_ms"]),
            f"{r['rss_start_mb']:.0f}-{r['rss_max_mb']:.0f}",
        )  # fmt: skip
    return view


def _fmt(value: float | None) -> str:
    return "-" if value is None else f"{value:.2f}"


def main(argv: list[str]) -> int:
    from rich.console import Console

    args = parse(argv)
    started = time.monotonic()
    systems = [s for s in args.systems.split(",") if s]
    protocols = [p for p in args.protocols.split(",") if p]
    records: list[dict[str, Any]] = []
    rates: dict[str, dict[str, Any]] = {}
    error = None
    console = Console()
    with tempfile.TemporaryDirectory(prefix="overload-") as tmp, ExitStack() as stack:
        workdir = Path(tmp)
        repository = workdir / "repo"
        write_fault_model(repository, MODEL, max_batch_size=1, max_queue_size=args.queue)
        running = {}
        try:
            for system in systems:
                extra = ["--python-runtime", "in-server"] if system == "headrace" else []
                server = servers.launch(system, repository, [MODEL], workdir, {}, extra_args=extra)
                running[system] = stack.enter_context(server)
                url = server.ports.url("http")  # type: ignore[union-attr]
                rates[system] = asyncio.run(sustainable_rate(url, args))
                console.print(f"{system}: sustainable {rates[system]['rate']:.1f} requests/s")
            for round_index in range(args.rounds):
                order = systems if round_index % 2 == 0 else systems[::-1]
                for system in order:
                    server = running[system]
                    for protocol in protocols:
                        offered = args.factor * rates[system]["rate"]
                        url = server.ports.url(protocol)
                        with load.RssSampler(server.process.pid) as rss:
                            outcomes, sending = asyncio.run(overload(url, protocol, offered, args))
                        record = {
                            "system": system,
                            "protocol": protocol,
                            "round": round_index,
                            "sustainable_per_s": round(rates[system]["rate"], 2),
                            "offered_per_s": round(offered, 2),
                            **summarize_load(outcomes, sending),
                            "rss_mb": rss.samples,
                        }
                        mbs = [mb for _, mb in rss.samples]
                        record["rss_start_mb"] = mbs[0]
                        record["rss_max_mb"] = max(mbs)
                        record["rss_end_mb"] = mbs[-1]
                        record["rss_growth_mb"] = round(max(mbs) - mbs[0], 1)
                        sent = record["sent"] or 1
                        record["refused_fraction"] = round(record["refused"] / sent, 4)
                        refused = record["refused"] or 1
                        record["refused_under_10ms_fraction"] = round(
                            record["refused_under_10ms"] / refused, 4
                        )
                        records.append(record)
                        console.print(
                            f"{system} {protocol} round {round_index}: {record['answered']} "
                            f"answered, {record['refused']} refused (p99 "
                            f"{_fmt(record['refused_p99_ms'])} ms), "
                            f"{record['errors']} errors, {record['lost']} lost"
                        )
        except Exception as exc:  # keep what was measured, say what broke
            error = f"{type(exc).__name__}: {exc}"
            console.print(f"[red]{error}[/red]")
    result = {"systems": summary(records), "sustainable": rates}
    report.write_document(
        args.out, "reliability/overload", argv, args, started=started, error=error,
        summary=result, records=records,
    )  # fmt: skip
    console.print(table(records))
    console.print(f"wrote {args.out}")
    return 1 if error else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
