"""Plain-text tables that are also Markdown tables (the bench's report)."""

from __future__ import annotations

from collections.abc import Sequence


def grid(header: Sequence[str], body: Sequence[Sequence[str]]) -> str:
    """A table padded so it reads as plain text and renders as Markdown."""
    rows = [list(header)] + [list(cells) for cells in body]
    widths = [max(len(line[i]) for line in rows) for i in range(len(header))]

    def line(cells: list[str]) -> str:
        return "| " + " | ".join(cell.ljust(width) for cell, width in zip(cells, widths, strict=True)) + " |"

    rule = "|" + "|".join("-" * (width + 2) for width in widths) + "|"
    return "\n".join([line(rows[0]), rule, *(line(cells) for cells in rows[1:])])
