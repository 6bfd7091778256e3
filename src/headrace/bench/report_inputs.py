"""The files ``headrace bench report`` reads: study JSON documents and monitor CSV logs.

It reads the files, not the modules that wrote them, so any study that keeps the documented
shape is reported. A JSON document says what it is in ``"study"``:

- ``"scan"`` (``bench scan``): ``points`` with ``model``, ``mode``, ``batch_size``,
  ``throughput_mean``, ``throughput_sem``, ``latency_ms``, ``start_time``, ``end_time``;
  ``monitor.csv`` names the log that ran beside it.
- ``"bench load"`` (``bench load``): ``rows`` with ``generator``, ``protocol``, ``batch_size``,
  ``concurrency`` or ``request_rate``, ``throughput`` (inferences/s), ``p50_us`` … ``p99_us``.
- ``"bench tune"`` (``bench tune``): ``points`` with the config and its ``throughput``,
  ``p99_ms``, ``cost``; ``pareto`` and ``best`` index into them.

``benchmarks/bench_load_vs_perf_analyzer.py``'s file (``"benchmark"`` of that name) is read
as a load study: its ``records`` are ``bench load`` rows with the ``model`` beside them.

A CSV whose header starts with ``Timestamp`` is a monitor log (``bench monitor``). Files that
are neither are listed as skipped, with the reason, never silently dropped.
"""

from __future__ import annotations

import csv
import json
import math
import shlex
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from headrace.errors import InvalidInput

__all__ = ["MonitorLog", "Studies", "StudyFile", "read_studies"]

LOAD_BENCHMARKS = ("bench_load_vs_perf_analyzer",)
STUDY_KINDS = {"scan": "scan", "bench load": "load", "load": "load", "bench tune": "tune"}


@dataclass(frozen=True)
class StudyFile:
    """One study document and where it came from."""

    path: Path
    kind: str  # scan, load or tune
    document: dict[str, Any]

    @property
    def command(self) -> list[str]:
        command = self.document.get("command") or []
        if isinstance(command, str):  # benchmarks/ scripts record one string
            return shlex.split(command)
        return [str(word) for word in command]


@dataclass(frozen=True)
class MonitorLog:
    """One resource log: each column's values, ``Timestamp`` in Unix seconds."""

    path: Path
    columns: dict[str, list[float]]

    @property
    def timestamps(self) -> list[float]:
        return self.columns.get("Timestamp", [])


@dataclass
class Studies:
    """Everything found in one results folder, each list in file-name order."""

    folder: Path
    scans: list[StudyFile] = field(default_factory=list)
    loads: list[StudyFile] = field(default_factory=list)
    tunes: list[StudyFile] = field(default_factory=list)
    monitors: list[MonitorLog] = field(default_factory=list)
    skipped: list[tuple[Path, str]] = field(default_factory=list)

    @property
    def documents(self) -> list[StudyFile]:
        return [*self.scans, *self.loads, *self.tunes]


def read_studies(folder: str | Path) -> Studies:
    """Every study JSON and monitor CSV directly inside ``folder``."""
    root = Path(folder)
    if not root.is_dir():
        raise InvalidInput(f"bench report: {str(root)!r} is not a folder")
    studies = Studies(folder=root)
    for path in sorted(root.iterdir()):
        if path.suffix == ".json":
            _add_json(studies, path)
        elif path.suffix == ".csv":
            _add_csv(studies, path)
    return studies


def _add_json(studies: Studies, path: Path) -> None:
    try:
        document = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        studies.skipped.append((path, f"unreadable JSON: {exc}"))
        return
    if isinstance(document, dict) and document.get("benchmark") in LOAD_BENCHMARKS:
        document = {**document, "study": "bench load", "rows": document.get("records", [])}
    kind = STUDY_KINDS.get(str(document.get("study"))) if isinstance(document, dict) else None
    if kind is None:
        what = document.get("study") if isinstance(document, dict) else type(document).__name__
        studies.skipped.append((path, f"not a bench study (study: {what!r})"))
        return
    getattr(studies, f"{kind}s").append(StudyFile(path, kind, document))


def _add_csv(studies: Studies, path: Path) -> None:
    try:
        with path.open(newline="", encoding="utf-8") as handle:
            rows = list(csv.reader(handle))
    except (OSError, UnicodeDecodeError) as exc:
        studies.skipped.append((path, f"unreadable CSV: {exc}"))
        return
    if not rows or not rows[0] or rows[0][0].strip() != "Timestamp":
        studies.skipped.append((path, "not a monitor log (its header does not start Timestamp)"))
        return
    header = [name.strip() for name in rows[0]]
    columns: dict[str, list[float]] = {name: [] for name in header}
    for row in rows[1:]:
        if len(row) != len(header):
            continue  # a row cut short when the log was stopped
        for name, cell in zip(header, row):
            columns[name].append(_number(cell))
    studies.monitors.append(MonitorLog(path, columns))


def _number(cell: str) -> float:
    """The cell's value; an empty cell (no GPU source) reads as NaN, a gap in the plot."""
    try:
        return float(cell)
    except ValueError:
        return math.nan
