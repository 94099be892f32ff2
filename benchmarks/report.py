"""Saving a benchmark's figures: JSON for machines, Markdown for people, both under benchmarks/results/.

The results are committed, so they name checkpoints in a way that holds on another machine: a path
inside the repository relative to its root, anything else by its folder's name (`portable`); the
checkpoint's weights_sha256, which its model.json records, is what identifies it.
"""

import json
import os
from pathlib import Path

RESULTS = Path(__file__).parent / "results"
REPO = RESULTS.parents[1]


def portable(path: str | os.PathLike) -> str:
    """A path as the committed results give it: relative to the repository root when inside it, else
    the last part of its name ("/tmp/s4/tibetan" -> "tibetan"); relative paths stay as they are."""
    p = Path(path)
    if not p.is_absolute():
        return str(path)
    try:
        return p.resolve().relative_to(REPO.resolve()).as_posix()
    except ValueError:
        return p.name


def save(name: str, report: dict, markdown: str) -> None:
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / f"{name}.json").write_text(json.dumps(report, indent=2))
    (RESULTS / f"{name}.md").write_text(markdown.rstrip("\n") + "\n")
    print(f"saved {RESULTS / name}.json and .md")
