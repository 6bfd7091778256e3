"""``headrace bench report DIR``: one self-contained HTML page for a folder of studies.

The page carries its figures as base64 PNG (no files beside it, no scripts, nothing fetched),
so it can be mailed or attached to an issue as one file. With ``plots`` the same PNGs are also
written next to the inputs, named after the study they draw.
"""

from __future__ import annotations

import base64
import datetime
import html
import shlex
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from headrace.bench.report_inputs import MonitorLog, Studies, StudyFile, read_studies
from headrace.bench.report_plots import load_figure, monitor_figure, scan_figure, tune_figure

__all__ = ["Figure", "figures", "render_html", "write_report"]


@dataclass(frozen=True)
class Figure:
    """One drawn plot: its file name (for ``--plots``), caption and PNG bytes."""

    name: str
    caption: str
    png: bytes


def figures(studies: Studies) -> list[Figure]:
    """Every plot the folder's studies allow, in the page's order."""
    out = []
    if studies.scans:
        names = ", ".join(s.path.name for s in studies.scans)
        out.append(
            Figure(
                "scan_throughput.png",
                f"Throughput vs batch size ({names})",
                scan_figure(studies.scans),
            )
        )
    if studies.loads:
        names = ", ".join(s.path.name for s in studies.loads)
        out.append(
            Figure(
                "load_latency.png", f"Latency vs throughput ({names})", load_figure(studies.loads)
            )
        )
    for log in studies.monitors:
        spans = _spans(log, studies.scans)
        out.append(
            Figure(
                f"{log.path.stem}_timeline.png",
                f"Utilisation timeline ({log.path.name})",
                monitor_figure(log, spans),
            )
        )
    for tune in studies.tunes:
        out.append(
            Figure(
                f"{tune.path.stem}_pareto.png",
                f"Cost surface ({tune.path.name})",
                tune_figure(tune),
            )
        )
    return out


def _spans(log: MonitorLog, scans: Sequence[StudyFile]) -> list[tuple[float, float, str]]:
    """One stretch per batch size of each scan that named this log as its monitor (its targets
    take turns within a batch size, so that is the unit the timeline can show)."""
    spans = []
    for scan in scans:
        monitor = scan.document.get("monitor") or {}
        if Path(str(monitor.get("csv", ""))).name != log.path.name:
            continue
        by_batch: dict[int, list[float]] = {}
        for point in scan.document.get("points", []):
            if point.get("start_time") and point.get("end_time"):
                times = by_batch.setdefault(int(point["batch_size"]), [])
                times += [float(point["start_time"]), float(point["end_time"])]
        spans += [(min(t), max(t), f"b={b}") for b, t in sorted(by_batch.items())]
    return spans


def write_report(folder: str | Path, out: str | Path | None = None, plots: bool = False) -> Path:
    """Read ``folder``, write the page (default ``folder/report.html``); returns its path."""
    studies = read_studies(folder)
    drawn = figures(studies)
    target = Path(out) if out else studies.folder / "report.html"
    target.parent.mkdir(parents=True, exist_ok=True)
    target.write_text(render_html(studies, drawn), encoding="utf-8")
    if plots:
        for figure in drawn:
            (studies.folder / figure.name).write_bytes(figure.png)
    return target


def render_html(studies: Studies, drawn: Sequence[Figure]) -> str:
    """The whole page: summary, figures, one section per study, machines, skipped files."""
    created = datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds")
    parts = [
        "<!DOCTYPE html><html><head><meta charset='utf-8'>",
        f"<title>headrace bench report: {_e(studies.folder.resolve().name)}</title>",
        f"<style>{_CSS}</style></head><body>",
        f"<h1>headrace bench report: {_e(studies.folder.resolve().name)}</h1>",
        f"<p>Made {created} from {len(studies.documents)} study files and "
        f"{len(studies.monitors)} monitor logs in <code>{_e(str(studies.folder))}</code>.</p>",
        "<h2>Figures</h2>",
    ]
    if not drawn:
        parts.append("<p>No study in this folder has anything to plot.</p>")
    for figure in drawn:
        data = base64.b64encode(figure.png).decode("ascii")
        parts.append(
            f"<figure><img alt='{_e(figure.caption)}' src='data:image/png;base64,{data}'>"
            f"<figcaption>{_e(figure.caption)}</figcaption></figure>"
        )
    for study in studies.documents:
        parts.append(_study_section(study))
    if studies.monitors:
        parts.append("<h2>Monitor logs</h2>")
        parts.append(
            _table(
                ["file", "samples", "seconds", "columns"],
                [_monitor_row(m) for m in studies.monitors],
            )
        )
    parts.append("<h2>Machines</h2>")
    parts.append(_machines(studies.documents))
    if studies.skipped:
        parts.append("<h2>Skipped files</h2>")
        parts.append(_table(["file", "why"], [[p.name, why] for p, why in studies.skipped]))
    parts.append("</body></html>")
    return "\n".join(parts)


def _study_section(study: StudyFile) -> str:
    document = study.document
    head = [f"<h2>{_e(study.kind)}: {_e(study.path.name)}</h2>"]
    if study.command:
        head.append(f"<pre>{_e(shlex.join(study.command))}</pre>")
    for key in ("created", "date", "method"):
        if document.get(key):
            head.append(f"<p><b>{key}</b>: {_e(str(document[key]))}</p>")
    if study.kind == "scan":
        head.append(_scan_table(document))
    elif study.kind == "load":
        head.append(_load_table(document))
    else:
        head.append(_tune_table(document))
    return "\n".join(head)


def _scan_table(document: dict[str, Any]) -> str:
    rows = []
    for p in sorted(
        document.get("points", []), key=lambda p: (p["model"], p["mode"], p["batch_size"])
    ):
        latency = p.get("latency_ms") or {}
        rows.append(
            [
                p["model"],
                p["mode"],
                p["batch_size"],
                p.get("trials", ""),
                _f(p["throughput_mean"]),
                _f(p.get("throughput_sem")),
                _f(latency.get("p50"), 3),
                _f(latency.get("p99"), 3),
            ]
        )
    header = ["model", "mode", "batch", "trials", "items/s", "± s.e.m.", "p50 ms", "p99 ms"]
    return _table(header, rows)


def _load_table(document: dict[str, Any]) -> str:
    rows = []
    for r in document.get("rows", []):
        level = f"c={r['concurrency']}" if r.get("concurrency") else f"{r.get('request_rate')}/s"
        head = [r.get("model", ""), r["generator"], r["protocol"], r["batch_size"], level]
        if r.get("throughput") is None:
            rows.append([*head, r.get("error", "no result"), "", "", "", ""])
            continue
        latencies = (_f(r.get(k, 0.0) / 1e3, 3) for k in ("p50_us", "p90_us", "p99_us"))
        rows.append([*head, _f(r["throughput"]), *latencies, "yes" if r.get("stable") else "no"])
    header = ["model", "generator", "protocol", "batch", "load", "infer/s", "p50 ms", "p90 ms"]
    return _table([*header, "p99 ms", "stable"], rows)


def _tune_table(document: dict[str, Any]) -> str:
    pareto = set(document.get("pareto", []))
    rows = []
    for index, p in enumerate(document.get("points", [])):
        config = p.get("config") or {}
        mark = " ".join(
            word
            for word, hit in (
                ("chosen", index == document.get("best")),
                ("model's config", index == document.get("baseline")),
                ("pareto", index in pareto),
            )
            if hit
        )
        rows.append(
            [
                index,
                config.get("instances"),
                config.get("max_batch_size"),
                config.get("max_queue_delay_us"),
                config.get("intra_op_threads", 0),
                p.get("concurrency"),
                _f(p.get("throughput")),
                _f(p.get("p99_ms"), 2),
                _f(p.get("cost"), 2),
                p.get("error", "") or mark,
            ]
        )
    header = [
        "#",
        "instances",
        "max batch",
        "queue delay µs",
        "threads",
        "concurrency",
        "infer/s",
        "p99 ms",
        str(document.get("cost_function", "cost")),
        "note",
    ]
    bound = document.get("p99_ms_bound")
    summary = f"<p>p99 bound: {bound} ms; cost: {_e(str(document.get('cost_function')))}.</p>"
    return summary + _table(header, rows) + _side_by_side_table(document)


def _gain_note(pair: dict[str, Any]) -> str:
    gain, won = pair.get("throughput_gain"), pair.get("rounds_won")
    if not gain:
        return ""
    rounds = len(pair["chosen"].get("rounds", []))
    return f"gain {gain:.2f}x" + (
        f", faster in {won} of {rounds} rounds" if won is not None else ""
    )


def _side_by_side_table(document: dict[str, Any]) -> str:
    """The pick against the model's own config, measured in turns (one row per round)."""
    pairs = document.get("side_by_side") or []
    if not pairs:
        return ""
    rows = []
    for pair in pairs:
        if "error" in pair:
            rows.append([pair.get("concurrency"), "", "", "", "", "", pair["error"][:200]])
            continue
        for which, label in (("chosen", "chosen"), ("baseline", "model's config")):
            side = pair[which]
            config = side.get("config") or {}
            rounds = " / ".join(_f(r.get("throughput")) for r in side.get("rounds", []))
            rows.append(
                [
                    pair.get("concurrency"),
                    label,
                    ", ".join(f"{k} {v}" for k, v in config.items()),
                    _f(side.get("throughput")),
                    _f(side.get("p99_ms"), 2),
                    rounds,
                    _gain_note(pair) if which == "chosen" else "",
                ]
            )
    header = ["concurrency", "", "config", "median infer/s", "median p99 ms", "rounds", "note"]
    intro = (
        "<p>Side by side: both configs served at once and loaded in turns, "
        "the order alternating.</p>"
    )
    return intro + _table(header, rows)


def _monitor_row(log: MonitorLog) -> list[Any]:
    times = log.timestamps
    seconds = times[-1] - times[0] if len(times) > 1 else 0.0
    return [log.path.name, len(times), _f(seconds, 1), ", ".join(log.columns)]


def _machines(documents: Sequence[StudyFile]) -> str:
    seen: dict[str, list[str]] = {}
    keys = (
        "hostname",
        "cpu_model",
        "cpu_count",
        "memory_bytes",
        "gpus",
        "platform",
        "python",
        "torch",
        "torch_cuda",
        "torch_hip",
    )
    for study in documents:
        machine = study.document.get("machine") or {}
        summary = "; ".join(f"{k}: {machine[k]}" for k in keys if machine.get(k) not in (None, []))
        seen.setdefault(summary or "not recorded", []).append(study.path.name)
    return _table(["machine and device", "studies"], [[m, ", ".join(f)] for m, f in seen.items()])


def _table(header: Sequence[str], rows: Sequence[Sequence[Any]]) -> str:
    head = "".join(f"<th>{_e(str(h))}</th>" for h in header)
    body = "".join(
        "<tr>" + "".join(f"<td>{_e(str(c))}</td>" for c in row) + "</tr>" for row in rows
    )
    return f"<table><tr>{head}</tr>{body}</table>"


def _f(value: Any, digits: int = 1) -> str:
    return "" if value is None else f"{float(value):,.{digits}f}"


def _e(text: str) -> str:
    return html.escape(text, quote=True)


_CSS = (
    "body{font-family:sans-serif;margin:1.5em;max-width:1100px}"
    "table{border-collapse:collapse;font-size:0.85em;margin:0.5em 0}"
    "td,th{border:1px solid #bbb;padding:2px 6px;text-align:right}"
    "th{background:#eee}pre{background:#f4f4f4;padding:0.4em;white-space:pre-wrap}"
    "figure{display:inline-block;margin:0.5em}img{max-width:100%;border:1px solid #ddd}"
)
