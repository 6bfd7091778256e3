"""``headrace bench report DIR``: the command line of :mod:`headrace.bench.report`."""

from __future__ import annotations

import argparse
from typing import Any

__all__ = ["add_report_command", "run_report_command"]


def add_report_command(commands: Any) -> None:
    """Register ``bench report`` on the ``bench`` subparsers."""
    parser = commands.add_parser(
        "report",
        help="one self-contained HTML page (plots, tables, machines, commands) for a folder "
        "of bench scan / load / tune results and monitor CSVs",
    )
    parser.add_argument("folder", metavar="DIR", help="folder holding the study files")
    parser.add_argument(
        "--out", default="", help="the HTML page to write (default DIR/report.html)"
    )
    parser.add_argument(
        "--plots",
        action="store_true",
        help="also write each figure as PNG into DIR (default: only inside the page)",
    )
    parser.set_defaults(func=run_report_command)


def run_report_command(args: argparse.Namespace) -> int:
    from headrace.bench.report import write_report

    page = write_report(args.folder, args.out or None, plots=args.plots)
    print(f"report: {page}")
    return 0
