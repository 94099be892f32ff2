"""Stratified k-fold cross-validation: each fold an ordinary training run, then mean ± std over folds.

A fold that diverges is reported as diverged in its own column and left out of the mean and std,
which say over how many folds they were taken; it is never dropped silently."""

from __future__ import annotations

import csv
import json
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from digitlab.atomic import write_text
from digitlab.errors import ConfigError
from digitlab.experiments.pool import run_fits
from digitlab.experiments.tables import mean_std, write_tables
from digitlab.train.config import TrainConfig

METRICS = ("train_loss", "train_accuracy", "val_loss", "val_accuracy", "best_val_accuracy", "test_accuracy")


def fold_configs(cfg: TrainConfig, folds: int) -> list[TrainConfig]:
    """The k configs of a k-fold cross-validation of cfg: same split seed, fold 0 .. k-1 as validation."""
    from digitlab.train.trainer import one_split_defaults

    if folds < 2:
        raise ConfigError(f"cross-validation needs --folds >= 2, got {folds}")
    cfg = one_split_defaults(cfg)
    split_seed = cfg.seed if cfg.split_seed is None else cfg.split_seed  # folds of one cut whatever the seed
    return [cfg.replace(folds=folds, fold=i, split_seed=split_seed) for i in range(folds)]


def history(run: Path) -> list[dict[str, Any]]:
    """metrics.csv of a run folder as rows of floats (empty cells: None)."""
    path = Path(run) / "metrics.csv"
    if not path.is_file():
        return []
    with path.open() as f:
        return [{k: (float(v) if v not in ("", None) else None) for k, v in row.items()} for row in csv.DictReader(f)]


def run_row(summary: dict[str, Any], run: Path) -> dict[str, Any]:
    """A finished run's final-epoch and best metrics, and whether it diverged."""
    rows = history(run)
    last = rows[-1] if rows else {}
    return {
        "diverged": bool(summary.get("diverged")), "epochs": len(rows),
        "train_loss": last.get("train_loss"), "train_accuracy": last.get("train_accuracy"),
        "val_loss": last.get("val_loss"), "val_accuracy": last.get("val_accuracy"),
        "best_val_accuracy": summary.get("best_val_accuracy"), "test_accuracy": summary.get("test_accuracy"),
        "train_seconds": summary.get("train_seconds"),
    }


def summarize(rows: list[dict[str, Any]]) -> dict[str, Any]:
    """Mean and std of each metric over the rows that did not diverge."""
    kept = [r for r in rows if not r["diverged"]]
    stats = {m: mean_std([r[m] for r in kept]) for m in (*METRICS, "train_seconds")}
    return {"mean": {m: s[0] for m, s in stats.items()}, "std": {m: s[1] for m, s in stats.items()},
            "diverged": len(rows) - len(kept)}


def cross_validate(cfg: TrainConfig, out: str | Path, folds: int = 10, jobs: int = 1, progress: bool = True,
                   log: Callable[[str], None] = print) -> dict[str, Any]:
    """k-fold cross-validation of cfg into `out` (fold-01 .. fold-k run folders, cv.json, cv.md, cv.csv,
    cv.png). Started again on the same folder it runs only the folds still missing."""
    out = Path(out)
    configs = fold_configs(cfg, folds)
    if (out / "cv.json").is_file():
        done = json.loads((out / "cv.json").read_text())
        if done.get("config") != configs[0].replace(fold=0, folds=0).to_dict() or done.get("folds") != folds:
            raise ConfigError(f"{out} holds a cross-validation of another config; choose another --out")
    out.mkdir(parents=True, exist_ok=True)
    dirs = [out / f"fold-{i + 1:02d}" for i in range(folds)]
    log(f"{folds}-fold cross-validation of {cfg.model} on {cfg.dataset} into {out}"
        + (f", {jobs} folds at a time" if jobs > 1 else ""))
    t0 = time.perf_counter()
    summaries = run_fits(list(zip(configs, dirs)), jobs=jobs, progress=progress, log=log, desc="folds")
    rows = [{"fold": i, "dir": d.name, **run_row(s, d)} for i, (s, d) in enumerate(zip(summaries, dirs))]
    result = {"kind": "cv", "config": configs[0].replace(fold=0, folds=0).to_dict(), "folds": folds, "rows": rows,
              **summarize(rows), "wall_seconds": time.perf_counter() - t0}
    write_text(out / "cv.json", json.dumps(result, indent=2))
    write_cv_tables(out, result)
    plot_folds(out, result)
    log(describe(result))
    return result


def describe(result: dict[str, Any]) -> str:
    mean, std, k = result["mean"], result["std"], result["folds"]
    kept = k - result["diverged"]
    if not kept:
        return f"all {k} folds diverged"
    text = (f"{k}-fold: val accuracy {mean['val_accuracy']:.4f} ± {std['val_accuracy']:.4f}, val loss "
            f"{mean['val_loss']:.4f} ± {std['val_loss']:.4f}")
    if mean.get("test_accuracy") is not None:
        text += f", test accuracy {mean['test_accuracy']:.4f} ± {std['test_accuracy']:.4f}"
    return text + (f" over {kept} folds; {result['diverged']} diverged" if result["diverged"] else "")


def write_cv_tables(out: Path, result: dict[str, Any]) -> None:
    columns = ["fold", "diverged", "epochs", *METRICS, "train_seconds"]
    rows = [{**r, "fold": r["fold"] + 1} for r in result["rows"]]
    for name in ("mean", "std"):
        rows.append({"fold": name, "diverged": result["diverged"] if name == "mean" else None, **result[name]})
    cfg = result["config"]
    write_tables(out, "cv", rows, columns, title=f"{result['folds']}-fold cross-validation: {cfg['model']} on "
                 f"{cfg['dataset']}", notes=[f"Mean and std over the folds that did not diverge "
                                             f"({result['folds'] - result['diverged']} of {result['folds']})."])


def plot_folds(out: Path, result: dict[str, Any]) -> Path:
    """Validation loss and accuracy per epoch, one line per fold (dashed: diverged)."""
    from matplotlib.figure import Figure

    fig = Figure(figsize=(10, 4), layout="constrained")
    axes = fig.subplots(1, 2)
    for row in result["rows"]:
        rows = history(out / row["dir"])
        epochs = [r["epoch"] for r in rows]
        for ax, metric in zip(axes, ("val_loss", "val_accuracy")):
            ax.plot(epochs, [r[metric] for r in rows], "--" if row["diverged"] else "-", marker="o", ms=2,
                    label=f"fold {row['fold'] + 1}")
    for ax, metric in zip(axes, ("val loss", "val accuracy")):
        ax.set_xlabel("epoch")
        ax.set_ylabel(metric)
        ax.grid(alpha=0.3)
    axes[1].legend(fontsize=7, ncol=2)
    fig.suptitle(f"{result['folds']}-fold cross-validation: {result['config']['model']} on "
                 f"{result['config']['dataset']}")
    path = out / "cv.png"
    fig.savefig(path, dpi=110)
    return path
