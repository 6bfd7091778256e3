"""Sequences and decoupled models side by side: headrace and NVIDIA Triton 2.51, same repository.

    python benchmarks/stateful_vs_triton.py [--out benchmarks/results/stateful_vs_triton.json]

One repository of Triton python-backend models (tests/data/python_models): the sequence models
(direct and oldest strategies, control inputs, uint64 and string correlation ids, implicit
state) and the decoupled ones, with plain models beside them. Both servers load it unchanged
(explicit mode) and the same client scripts run against each, one server after the other:

- ``sequences``: :func:`sequence_client.scenario` over HTTP, gRPC and a gRPC stream;
- ``generate``: the HTTP generate / generate_stream cases of :mod:`decoupled_client`;
- ``streams``: decoupled and plain models over gRPC ``ModelStreamInfer``, each kind on a stream
  of its own, unary requests to a decoupled model, and last (NVIDIA Triton 2.51 cannot serve it)
  rounds of one stream mixing decoupled and plain models, after each of which the script asks
  whether the server is still live;
- ``statistics``: each model's inference count and success / fail counts, read before the
  mixed streams (the counts that do not depend on timing).

Each case is ``same``, ``differs on purpose`` (a documented difference, :mod:`verdicts`, whose
rule checks both answers) or ``differs`` (a finding). It prints a table of cases and writes
both transcripts with every verdict to the JSON; exit status 1 when a case differs.
Needs ``../shared/tools/tritonserver`` (it installs itself on first use).
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
from collections import Counter
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE / "serve_models"))
sys.path.insert(0, str(HERE / "stateful"))

import decoupled_client  # noqa: E402
import sequence_client  # noqa: E402
import servers  # noqa: E402
import verdicts  # noqa: E402

MODELS = [*sequence_client.SEQUENCE_MODELS, *decoupled_client.DECOUPLED_MODELS]
MIXED = "one stream mixing decoupled and plain models"
EXIT_WAIT_S = 10.0  # how long a server that stopped answering gets to exit, for its status


def write_repository(root: Path) -> Path:
    sequence_client.sequence_repository(root)
    decoupled_client.decoupled_repository(root)
    return root


def client_run(server: servers.ServerProcess) -> dict[str, dict[str, Any]]:
    """Every client script against one server; the transcript, grouped by script."""
    assert server.ports is not None
    http, grpc = server.ports.url("http"), server.ports.url("grpc")
    transcript = {
        "sequences": sequence_client.scenario(http, grpc),
        "generate": decoupled_client.generate_scenario(server.ports.http),
        "streams": decoupled_client.stream_scenario(http, grpc),
    }
    transcript["statistics"] = {model: _statistics(server, model) for model in MODELS}
    rounds = decoupled_client.mixed_stream(http, grpc)  # last: it may end the server
    mixed: dict[str, Any] = {"rounds": rounds}
    if not rounds[-1]["server_live_after"]:
        mixed["server_exit"] = _exit_status(server)
        mixed["server_log"] = _fatal_lines(server.log_path)
    transcript["streams"][MIXED] = mixed
    return transcript


def _statistics(server: servers.ServerProcess, model: str) -> dict[str, int]:
    """The counts of a model's statistics that do not depend on timing (batches do)."""
    stats = server.stats(model)
    return {
        "inference_count": int(stats.get("inference_count", 0)),
        "success": int(stats["inference_stats"]["success"]["count"]),
        "fail": int(stats["inference_stats"]["fail"]["count"]),
    }


def _exit_status(server: servers.ServerProcess) -> int | None:
    try:
        return server.process.wait(timeout=EXIT_WAIT_S)
    except subprocess.TimeoutExpired:
        return None


def _fatal_lines(log: Path) -> list[str]:
    """The log lines that say why a server died (assertions, signals), stack frames left out."""
    words = ("ASSERTION", "Signal (", "Segmentation fault", "Aborted")
    lines = log.read_text(errors="replace").splitlines()
    return [line.strip() for line in lines if any(word in line for word in words)][:8]


def serve_and_ask(system: str, repository: Path, workdir: Path) -> dict[str, Any]:
    options = {"max_batch_size": 8, "max_queue_delay_us": 0, "instances": 1}
    with servers.launch(system, repository, MODELS, workdir, options) as server:
        return client_run(server)


RULES = {
    "sequences": verdicts.SEQUENCE_RULES,
    "generate": verdicts.generate_rules(),
    "streams": verdicts.STREAM_RULES,
    "statistics": verdicts.STATISTICS_RULES,
}


def judge(headrace: dict[str, Any], triton: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """Every case's verdict, per group, as plain data."""
    return {
        group: {
            case: found.as_dict()
            for case, found in verdicts.classify(
                headrace.get(group, {}), triton.get(group, {}), rules
            ).items()
        }
        for group, rules in RULES.items()
    }


def summary(cases: dict[str, dict[str, Any]]) -> dict[str, Any]:
    """How many cases got each verdict, and the names of those that differ unexpectedly."""
    counts = Counter(v["verdict"] for group in cases.values() for v in group.values())
    differ = [
        f"{group}: {case}"
        for group, found in cases.items()
        for case, v in found.items()
        if v["verdict"] == verdicts.DIFFERS
    ]
    return {"counts": dict(sorted(counts.items())), "differ": differ}


def compare(workdir: Path) -> dict[str, Any]:
    """Serve the repository with both systems, one after the other; transcripts and verdicts."""
    repository = write_repository(workdir / "repository")
    headrace = serve_and_ask("headrace", repository, workdir)
    triton = serve_and_ask("triton", repository, workdir)
    cases = judge(headrace, triton)
    return {"headrace": headrace, "triton": triton, "cases": cases, "summary": summary(cases)}


def _short(answer: Any, width: int = 60) -> str:
    text = json.dumps(answer)
    return text if len(text) <= width else text[: width - 1] + "…"


def mixed_summary(answer: dict[str, Any]) -> str:
    """How a server took the mixed streams: rounds served in full, and whether it died."""
    rounds = answer["rounds"]
    served = sum(1 for r in rounds if r["complete"] and r["problems"] == [])
    text = f"{served}/{len(rounds)} rounds served in full"
    if not rounds[-1]["server_live_after"]:
        text += f", then the server died (exit {answer.get('server_exit')})"
    return text


def _note(result: dict[str, Any], group: str, case: str, found: dict[str, str]) -> str:
    ours = result["headrace"].get(group, {}).get(case)
    theirs = result["triton"].get(group, {}).get(case)
    if found["verdict"] == verdicts.DIFFERS:
        return f"headrace {_short(ours)}\ntriton {_short(theirs)}"
    if case == MIXED:
        return f"{found['reason']}: headrace {mixed_summary(ours)}; triton {mixed_summary(theirs)}"
    return found.get("reason", "")


def print_table(result: dict[str, Any]) -> None:
    from rich.console import Console
    from rich.table import Table
    from rich.text import Text

    table = Table(title="sequences and decoupled models: headrace vs Triton 2.51, same requests")
    for column in ("group", "case", "verdict", "reason / answers"):
        table.add_column(column, overflow="fold")
    for group, cases in result["cases"].items():
        for case, found in cases.items():
            note = _note(result, group, case, found)
            table.add_row(group, Text(case), found["verdict"], Text(note))
    Console(width=160).print(table)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--out",
        type=Path,
        default=HERE / "results" / "stateful_vs_triton.json",
        help="result JSON (default benchmarks/results/stateful_vs_triton.json)",
    )
    args = parser.parse_args(argv)
    from headrace.bench.machine import machine_info

    with tempfile.TemporaryDirectory(prefix="stateful-vs-triton-") as tmp:
        result = compare(Path(tmp))
    print_table(result)
    document = {
        "benchmark": "stateful_vs_triton",
        "date": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "machine": machine_info(),
        "reasons": verdicts.REASONS,
        **result,
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(document, indent=1) + "\n")
    counts = ", ".join(f"{n} {kind}" for kind, n in result["summary"]["counts"].items())
    print(f"results: {args.out}; {counts}")
    return 1 if result["summary"]["differ"] else 0


if __name__ == "__main__":
    raise SystemExit(main())
