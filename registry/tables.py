"""Plain-text tables for the command-line tools."""

from __future__ import annotations

from collections.abc import Sequence


def render(header: Sequence[str], rows: Sequence[Sequence[object]]) -> str:
    """Left-aligned columns under a header and a rule; None shows as '-'."""
    widths = _widths([header, *rows])
    return columns([header, ["-" * w for w in widths], *rows])


def cell(fmt: str, value: object) -> str:
    """`value` formatted by `fmt`; None (not measured) as '-', as `render` shows it."""
    return "-" if value is None else fmt.format(value)


def columns(rows: Sequence[Sequence[object]], indent: str = "") -> str:
    """Left-aligned columns, no header; None shows as '-'."""
    cells = [_cells(row) for row in rows]
    widths = _widths(cells)
    return "\n".join(
        (indent + "  ".join(c.ljust(w) for c, w in zip(line, widths, strict=False))).rstrip()
        for line in cells
    )


def _cells(row: Sequence[object]) -> list[str]:
    return ["-" if c is None else str(c) for c in row]


def _widths(rows: Sequence[Sequence[object]]) -> list[int]:
    cells = [_cells(row) for row in rows]
    return [max(len(row[i]) for row in cells if i < len(row)) for i in range(max(map(len, cells)))]
