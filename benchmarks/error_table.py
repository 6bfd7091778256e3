"""Every error a client can provoke, answered by headrace and by NVIDIA Triton 2.51 side by side.

    python benchmarks/error_table.py                 # ~1 min: both servers, both modes
    python benchmarks/error_table.py --systems headrace   # headrace's column only

Writes ``benchmarks/results/error_table.json`` and the document ``docs/errors.md``: one row
per case (``error_cases.CASES``) and protocol with Triton's status and text, headrace's, and
whether a client sees the same thing. Both servers serve one python-backend repository that
this script writes (``error_cases.write_repository``), on 127.0.0.1: once in explicit
control mode (``simple`` and ``strings`` loaded) and once in mode ``none``; each keeps its
default body limit. Triton is ``../shared/tools/tritonserver``.

A row is ``same`` when the status is the same and headrace's text starts with Triton's first
sentence (all of Triton's text when it has one), adding detail after it; ``status only`` when the status matches and the
words do not; ``different`` otherwise. ``NOTES`` says why for each row that is not ``same``.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
sys.path.insert(0, str(HERE / "serve_models"))

import error_cases  # noqa: E402
import report  # noqa: E402
import servers  # noqa: E402

RESULT = HERE / "results" / "error_table.json"
DOCUMENT = HERE.parent / "docs" / "errors.md"
SYSTEMS = ("triton", "headrace")
PROTOCOLS = ("http", "grpc")

NOTES: dict[str, str] = {
    "unknown_datatype/grpc": (
        "the gRPC decoder refuses the datatype before the request is routed, so it cannot name "
        "the model's datatype; Triton's words up to '<invalid>' are kept"
    ),
    "negative_dimension/http": (
        "deliberate: malformed JSON is a 400 in headrace (DESIGN: bad input), Triton 2.51 "
        "sends 500 from its JSON parser; the words start alike"
    ),
    "data_count_mismatch/http": "deliberate 400 for bad input, as negative_dimension/http",
    "bad_json/http": (
        "deliberate 400 for bad input; the parser's own detail (orjson's, RapidJSON's) differs"
    ),
    "json_not_an_object/http": "deliberate 400 for bad input; headrace says what is wrong",
    "json_no_inputs/http": "deliberate 400 for bad input, same words",
    "json_data_wrong_type/http": "deliberate 400 for bad input; the parser's detail differs",
    "header_length_not_a_number/http": (
        "Triton reads a non-numeric Inference-Header-Content-Length as 0 (a raw request); "
        "headrace refuses the header"
    ),
    "body_over_limit/http": (
        "Triton 2.51 has no body limit (it parses the 64 MiB of spaces and fails as JSON); "
        "headrace refuses the body past --max-body-bytes with a deliberate 400 that says so, "
        "read by the client: it reads and drops the rest before answering (a lingering close)"
    ),
    "load_failing_model": (
        "Triton's first sentence carries the python traceback of the model's stub; headrace "
        "keeps the phrase 'load failed for model' and the exception"
    ),
    "stats_unknown_version": "Triton's words, then which versions serve",
    "raw_and_typed_contents/grpc": "same status; the words are the strict area's to change",
    "load_file_without_config/http": (
        "headrace refuses this in the HTTP door before the load; the security area owns load "
        "file: overrides"
    ),
}
"""Why a row differs, by ``case/protocol`` or ``case`` (see the module docstring)."""


def _command(system: str, repository: Path, mode: str, ports_file: Path) -> list[str]:
    if system == "headrace":
        command = [sys.executable, "-m", "headrace.cli", "serve", str(repository)]
        command += ["--host", "127.0.0.1", "--http-port", "0", "--grpc-port", "0"]
        command += ["--metrics-port", "0", "--ports-file", str(ports_file)]
        command += ["--model-control-mode", mode]
        command += ["--exit-on-error=false"]  # as for Triton below: ``broken`` fails to load
        if mode == "explicit":
            command += [arg for m in error_cases.LOADED for arg in ("--load-model", m)]
        return command
    http, grpc, metrics = servers.free_ports(3)
    ports_file.write_text(json.dumps({"http": http, "grpc": grpc, "metrics": metrics}))
    command = [servers.shared_tool("tritonserver"), str(repository), str(http), str(grpc)]
    command += [str(metrics), "--", f"--model-control-mode={mode}", "--log-verbose=0"]
    command += ["--exit-on-error=false"]  # mode none loads ``broken`` too, which fails
    if mode == "explicit":
        command += [f"--load-model={m}" for m in error_cases.LOADED]
    return command


@contextmanager
def serving(system: str, repository: Path, mode: str, workdir: Path) -> Iterator[Any]:
    """``system`` serving ``repository`` in control ``mode`` until the block ends."""
    import os

    ports_file = workdir / f"{system}-{mode}-ports.json"
    ports_file.unlink(missing_ok=True)
    command = _command(system, repository, mode, ports_file)
    log = workdir / f"{system}-{mode}.log"
    server = servers.ServerProcess(system, command, dict(os.environ), log)
    try:
        if system == "triton":
            found = json.loads(ports_file.read_text())
            server.ports = servers.Ports(found["http"], found["grpc"], found["metrics"])
            server.wait_ready(list(error_cases.LOADED), 180.0, None)
        else:
            server.wait_ready(list(error_cases.LOADED), 120.0, ports_file)
        assert server.ports is not None
        yield error_cases.Endpoint(server.ports.http, server.ports.grpc)
    finally:
        server.stop()


def collect(system: str, repository: Path, workdir: Path) -> dict[tuple[str, str], Any]:
    """Every case's answer from ``system``, by (case name, protocol); the repository's path
    reads ``REPO`` in the texts, so answers compare across runs."""
    answers: dict[tuple[str, str], Any] = {}
    for mode in ("explicit", "none"):
        cases = [case for case in error_cases.CASES if case.mode == mode]
        with serving(system, repository, mode, workdir) as endpoint:
            for case in cases:
                for protocol in PROTOCOLS:
                    if getattr(case, protocol) is not None:
                        answer = error_cases.ask(case, protocol, endpoint)
                        answer["text"] = answer["text"].replace(str(repository), "REPO")
                        answers[(case.name, protocol)] = answer
    return answers


def verdict(triton: dict[str, Any] | None, headrace: dict[str, Any] | None) -> str:
    """``same``, ``status only`` or ``different`` (see the module docstring)."""
    if triton is None or headrace is None:
        return "not compared"
    if triton["status"] != headrace["status"]:
        return "different"
    if headrace["text"].startswith(phrase(triton["text"])):
        return "same"
    return "status only"


def phrase(text: str) -> str:
    """Triton's words a client matches on: its text up to the end of its first sentence."""
    end = text.find(". ")
    return text if end < 0 else text[: end + 1]


def rows(answers: dict[str, dict[tuple[str, str], Any]]) -> list[dict[str, Any]]:
    out = []
    for case in error_cases.CASES:
        for protocol in PROTOCOLS:
            if getattr(case, protocol) is None:
                continue
            key = (case.name, protocol)
            triton = answers.get("triton", {}).get(key)
            headrace = answers.get("headrace", {}).get(key)
            row = {
                "case": case.name,
                "protocol": protocol,
                "what": case.what,
                "mode": case.mode,
                "owner": case.owner,
                "triton": triton,
                "headrace": headrace,
                "verdict": verdict(triton, headrace),
            }
            note = NOTES.get(f"{case.name}/{protocol}", NOTES.get(case.name, ""))
            if note:
                row["note"] = note
            out.append(row)
    return out


def _cell(answer: dict[str, Any] | None) -> str:
    if answer is None:
        return "—"
    text = answer["text"].replace("|", "\\|").replace("\n", " ")
    if len(text) > 300:
        text = text[:300] + "…"
    return f"**{answer['status']}** {text}" if text else f"**{answer['status']}**"


def markdown(table: list[dict[str, Any]], machine: dict[str, Any]) -> str:
    same = sum(1 for row in table if row["verdict"] == "same")
    lines = [
        "# Errors: headrace beside NVIDIA Triton 2.51",
        "",
        "Every error a client can provoke, sent as the same bytes to `headrace serve` and to",
        "NVIDIA Triton 2.51 (`../shared/tools/tritonserver`, python backend) serving the same",
        "python-backend repository, over HTTP and gRPC. Written by `benchmarks/error_table.py`",
        "(the cases are `benchmarks/error_cases.py`; the raw answers are",
        "`benchmarks/results/error_table.json`); `tests/integration/test_error_table.py` checks",
        "headrace's column, and compares with Triton where it is installed.",
        "",
        "A row is **same** when the status matches and headrace's text starts with Triton's",
        "first sentence (all of it when it has one sentence), then may add detail; **status",
        "only** when only the status matches.",
        "HTTP answers show the status and the body's `error` field; gRPC answers the status",
        "code and its details. `owner` names the area that owns a row's fix where it is not",
        "this table's.",
        "",
        f"{same} of {len(table)} rows are the same. Machine: {machine.get('cpu_model', '?')}.",
        "",
        "| case | protocol | Triton 2.51 | headrace | verdict | why / owner |",
        "|---|---|---|---|---|---|",
    ]
    for row in table:
        why = "; ".join(part for part in (row.get("note", ""), row["owner"]) if part)
        lines.append(
            f"| `{row['case']}`: {row['what']} | {row['protocol']} | {_cell(row['triton'])} "
            f"| {_cell(row['headrace'])} | {row['verdict']} | {why} |"
        )
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--systems", nargs="+", choices=SYSTEMS, default=list(SYSTEMS), help="(default both)"
    )
    parser.add_argument("--out", type=Path, default=RESULT, help=f"(default {RESULT})")
    parser.add_argument("--document", type=Path, default=DOCUMENT, help=f"(default {DOCUMENT})")
    args = parser.parse_args(argv)
    started = time.monotonic()
    answers: dict[str, dict[tuple[str, str], Any]] = {}
    with tempfile.TemporaryDirectory(prefix="error-table-") as tmp:
        workdir = Path(tmp)
        repository = error_cases.write_repository(workdir / "repo")
        for system in args.systems:
            answers[system] = collect(system, repository, workdir)
    table = rows(answers)
    from headrace.bench.machine import machine_info

    machine = machine_info()
    counts = {v: sum(1 for r in table if r["verdict"] == v) for v in {r["verdict"] for r in table}}
    report.write_document(
        args.out,
        "error_table",
        sys.argv[1:] if argv is None else argv,
        argparse.Namespace(systems=args.systems),
        started=started,
        error=None,
        summary=counts,
        records=table,
    )
    if set(args.systems) == set(SYSTEMS):
        args.document.parent.mkdir(parents=True, exist_ok=True)
        args.document.write_text(markdown(table, machine), encoding="utf-8")
    _print(table)
    return 0


def _print(table: list[dict[str, Any]]) -> None:
    from rich.console import Console
    from rich.table import Table

    out = Table(title="errors: Triton 2.51 vs headrace")
    for header in ("case", "proto", "triton", "headrace", "verdict"):
        out.add_column(header, overflow="fold")
    for row in table:
        out.add_row(
            row["case"],
            row["protocol"],
            _cell(row["triton"]),
            _cell(row["headrace"]),
            row["verdict"],
        )
    Console(width=200).print(out)


if __name__ == "__main__":
    raise SystemExit(main())
