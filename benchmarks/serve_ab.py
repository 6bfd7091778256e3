"""A/B of ``headrace serve`` settings: the same loads under each setting, alternating.

    python benchmarks/serve_ab.py --setting default= \\
        --setting passive="OMP_WAIT_POLICY=PASSIVE" \\
        --setting t100="--run-now-below-us 100" \\
        --models mlp,compute --formats python,torchscript --protocols http \\
        --concurrency 16,64 --rounds 3 --out benchmarks/results/serve_ab.json

A setting is ``NAME=SPEC``: SPEC's leading ``KEY=VALUE`` words go into the server's
environment (read before torch loads: thread pools, OpenMP wait policy), the rest are
``headrace serve`` flags. Every other flag is serve_overhead.py's (models, formats,
protocols, concurrency, windows, batching). Each round starts a fresh server per setting,
the order turning around every round, and runs every load of serve_overhead.py on it
(throughput, p50/p99, batch formed, server CPU per inference). The summary holds medians over
rounds and each setting's ratio to the first one; the JSON keeps every record and the machine.
"""

from __future__ import annotations

import argparse
import json
import shlex
import sys
import time
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

import serve_overhead  # noqa: E402
from serve_overhead import report, servers  # noqa: E402

from headrace.bench.machine import machine_info  # noqa: E402


def parse_setting(text: str) -> tuple[str, dict[str, str], list[str]]:
    """``NAME=SPEC`` -> name, environment, headrace serve flags."""
    name, sep, spec = text.partition("=")
    if not sep or not name:
        raise argparse.ArgumentTypeError(f"a setting is NAME=SPEC, got {text!r}")
    words = shlex.split(spec)
    env: dict[str, str] = {}
    while words and "=" in words[0] and not words[0].startswith("-"):
        key, _, value = words.pop(0).partition("=")
        env[key] = value
    return name, env, words


def summarize(records: list[dict[str, Any]], names: list[str]) -> list[dict[str, Any]]:
    """One row per (model, protocol, concurrency): each setting's medians, ratios to the first."""
    merged = report.medians(records, by="setting", keep=())
    loads = sorted({key[1:] for key in merged})
    rows = []
    for model, protocol, concurrency in loads:
        row: dict[str, Any] = {"model": model, "protocol": protocol, "concurrency": concurrency}
        for name in names:
            row[name] = merged.get((name, model, protocol, concurrency))
        base = row[names[0]]
        for name in names[1:]:
            row[f"{name}_over_{names[0]}"] = (
                row[name]["throughput"] / base["throughput"] if row[name] and base else None
            )
        rows.append(row)
    return rows


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0], add_help=True)
    parser.add_argument("--setting", action="append", type=parse_setting, required=True)
    parser.add_argument("--rounds", type=int, default=3, help="rounds (default 3)")
    parser.add_argument("--out", type=Path, default=HERE / "results" / "serve_ab.json")
    own, rest = parser.parse_known_args(argv)
    names = [name for name, _, _ in own.setting]
    if len(set(names)) != len(names) or len(names) < 2:
        parser.error(f"give two or more settings with distinct names, got {names}")
    if own.rounds < 1:
        parser.error("--rounds must be at least 1")
    args = serve_overhead.parse_args([*rest, "--systems", "headrace"])
    from rich.console import Console
    from rich.table import Table

    log = serve_overhead.console_log()
    started = time.monotonic()

    def rounds(chosen: list[Any], workdir: Path, tool: str, records: list[dict[str, Any]]) -> None:
        batching = serve_overhead.Batching(
            args.max_batch_size, args.max_queue_delay_us, args.instances
        )
        serve_overhead.write_repository(workdir / "repository", chosen, batching)
        for round_no in range(own.rounds):
            order = own.setting if round_no % 2 == 0 else own.setting[::-1]
            for name, env, flags in order:
                log(f"round {round_no + 1}/{own.rounds}: {name}")
                servers.HEADRACE_ARGS[:] = flags
                servers.HEADRACE_ENV.clear()
                servers.HEADRACE_ENV.update(env)
                got = serve_overhead.run_system("headrace", chosen, workdir, args, tool, log)
                records += [{**r, "setting": name, "round": round_no} for r in got]

    records, error = serve_overhead.collect(args, "serve-ab-", rounds, log)
    summary = summarize(records, names)
    document = {
        "benchmark": "serve_ab",
        "date": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "duration_s": round(time.monotonic() - started, 1),
        "command": " ".join([Path(sys.argv[0]).name, *(argv or sys.argv[1:])]),
        "error": error,
        "machine": machine_info(),
        "settings": {name: {"env": env, "flags": flags} for name, env, flags in own.setting},
        "records": records,
        "summary": summary,
    }
    own.out.parent.mkdir(parents=True, exist_ok=True)
    own.out.write_text(json.dumps(document, indent=1, default=str) + "\n")

    table = Table(title=f"headrace serve A/B, medians of {own.rounds} rounds")
    for column in ("model", "proto", "c", *(f"{n} inf/s" for n in names)):
        table.add_column(column)
    for name in names[1:]:
        table.add_column(f"{name}/{names[0]}")
    table.add_column("server CPU us/inf")
    for row in summary:
        cells = [row["model"], row["protocol"], str(row["concurrency"])]
        cells += [f"{row[n]['throughput']:.0f}" if row[n] else "-" for n in names]
        for name in names[1:]:
            ratio = row[f"{name}_over_{names[0]}"]
            cells.append(f"{ratio:.2f}" if ratio is not None else "-")
        cpu = [row[n]["server_cpu_us_per_inference"] if row[n] else None for n in names]
        cells.append("/".join(f"{c:.0f}" if c else "-" for c in cpu))
        table.add_row(*cells)
    Console(width=160).print(table)
    log(f"wrote {own.out}")
    return 1 if error else 0


if __name__ == "__main__":
    sys.exit(main())
