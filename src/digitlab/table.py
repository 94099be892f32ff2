"""Plain-text tables for the terminal: left-aligned columns, two spaces apart."""

from collections.abc import Sequence


def format_table(rows: Sequence[Sequence[str]]) -> str:
    """The first row is the header; every row has the same number of cells."""
    widths = [max(len(cell) for cell in col) for col in zip(*rows)]
    return "\n".join("  ".join(c.ljust(w) for c, w in zip(row, widths)).rstrip() for row in rows)
