"""Finding and tabulating finished and running runs (folders holding config.json)."""

from __future__ import annotations

import csv
import json
from pathlib import Path
from typing import Any

from digitlab.table import format_table


def list_runs(root: str | Path = "runs") -> list[dict[str, Any]]:
    """One row per run folder under `root`, newest first; unfinished runs show their last epoch."""
    rows = []
    for config_path in sorted(Path(root).glob("**/config.json")):
        folder = config_path.parent
        try:
            config = json.loads(config_path.read_text())
            summary = json.loads((folder / "summary.json").read_text()) if (folder / "summary.json").exists() else None
        except (json.JSONDecodeError, OSError):
            continue
        row = {"run": str(folder), "model": config.get("model"), "dataset": config.get("dataset"),
               "status": "finished" if summary else "unfinished", "mtime": config_path.stat().st_mtime}
        if summary:
            row.update({k: summary.get(k) for k in ("epochs", "best_val_accuracy", "test_accuracy", "train_seconds")})
            if summary.get("diverged"):
                row["status"] = "diverged"
        else:
            metrics = folder / "metrics.csv"
            epochs = list(csv.DictReader(metrics.read_text().splitlines())) if metrics.exists() else []
            row["epochs"] = len(epochs)
            vals = [float(r["val_accuracy"]) for r in epochs if r.get("val_accuracy")]
            row["best_val_accuracy"] = max(vals) if vals else None
        rows.append(row)
    return sorted(rows, key=lambda r: r["mtime"], reverse=True)


def format_runs(rows: list[dict[str, Any]]) -> str:
    def pct(v):
        return "-" if v is None else f"{100 * v:.2f}%"

    header = ["run", "model", "dataset", "status", "epochs", "best val", "test", "seconds"]
    table = [[r["run"], r["model"], r["dataset"], r["status"], str(r.get("epochs") or 0),
              pct(r.get("best_val_accuracy")), pct(r.get("test_accuracy")),
              "-" if r.get("train_seconds") is None else f"{r['train_seconds']:.0f}"] for r in rows]
    return format_table([header, *table])
