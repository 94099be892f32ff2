"""Saving a benchmark's figures: JSON for machines, Markdown for people, both under benchmarks/results/."""

import json
from pathlib import Path

RESULTS = Path(__file__).parent / "results"


def save(name: str, report: dict, markdown: str) -> None:
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / f"{name}.json").write_text(json.dumps(report, indent=2))
    (RESULTS / f"{name}.md").write_text(markdown.rstrip("\n") + "\n")
    print(f"saved {RESULTS / name}.json and .md")
