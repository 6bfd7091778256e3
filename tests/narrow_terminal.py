"""Tables as an 80-column terminal shows them: every word whole, no line too long."""

from __future__ import annotations

import io
from typing import Any

WIDTH = 80


def render(table: Any, width: int = WIDTH) -> str:
    """The table's text as rich prints it on a terminal ``width`` columns wide."""
    from rich.console import Console

    console = Console(width=width, file=io.StringIO(), record=True, color_system=None)
    console.print(table)
    return console.export_text()


def assert_fits(table: Any, width: int = WIDTH) -> str:
    """Every header, cell, title and caption word of ``table`` that could fit is printed whole
    (not folded or cut with an ellipsis), and no line is wider than ``width``; returns the
    text. (A word as wide as the terminal, a long path, cannot but fold.)"""
    text = render(table, width)
    assert max(len(line) for line in text.splitlines()) <= width, text
    pieces = [str(table.title or ""), str(table.caption or "")]
    for column in table.columns:
        pieces.append(str(column.header))
        pieces.extend(str(cell) for cell in column._cells)
    words = {word for piece in pieces for word in piece.split() if len(word) < width - 4}
    cut = sorted(word for word in words if word not in text)
    assert not cut, f"words cut at {width} columns: {cut}\n{text}"
    return text
