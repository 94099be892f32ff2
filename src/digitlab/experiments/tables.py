"""Result tables of experiments: one list of row dicts written as Markdown and CSV, and mean ± std."""

from __future__ import annotations

import csv
import io
import math
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from digitlab.atomic import write_text


def mean_std(values: Sequence[float]) -> tuple[float | None, float | None]:
    """Mean and sample standard deviation (0 for one value); (None, None) for none."""
    values = [float(v) for v in values if v is not None]
    if not values:
        return None, None
    mean = sum(values) / len(values)
    std = math.sqrt(sum((v - mean) ** 2 for v in values) / (len(values) - 1)) if len(values) > 1 else 0.0
    return mean, std


def cell(value: Any, digits: int = 4) -> str:
    if value is None:
        return ""
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, float):
        return f"{value:.{digits}f}" if abs(value) < 1e4 else f"{value:.4g}"
    return str(value)


def markdown(rows: Sequence[dict[str, Any]], columns: Sequence[str]) -> str:
    lines = ["| " + " | ".join(columns) + " |", "|" + "---|" * len(columns)]
    lines += ["| " + " | ".join(cell(row.get(c)) for c in columns) + " |" for row in rows]
    return "\n".join(lines) + "\n"


def write_tables(out: Path, stem: str, rows: Sequence[dict[str, Any]], columns: Sequence[str],
                 title: str = "", notes: Sequence[str] = ()) -> None:
    """out/stem.md (a title, the table, notes) and out/stem.csv (full precision)."""
    text = (f"# {title}\n\n" if title else "") + markdown(rows, columns)
    if notes:
        text += "\n" + "\n".join(notes) + "\n"
    write_text(out / f"{stem}.md", text)
    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=list(columns), extrasaction="ignore")
    writer.writeheader()
    writer.writerows(rows)
    write_text(out / f"{stem}.csv", buf.getvalue())
