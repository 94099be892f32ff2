"""One-factor sensitivity sweeps and cross-validated grids, each an Optuna study of grid points.

`sweep` varies one factor at a time around a base config (one study per factor, named
STUDY.factor); `grid` crosses its axes and scores each cell by the mean validation loss over k folds.
Every point is an ordinary training run (fit), in the experiment folder under runs/. Tables and
figures are written from the study itself, so any worker of a shared study can write them."""

from __future__ import annotations

import json
import math
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from multiprocessing import get_context
from pathlib import Path
from typing import Any

from digitlab.atomic import write_text
from digitlab.errors import ConfigError, close_match
from digitlab.experiments import study as studies
from digitlab.experiments.cv import fold_configs, history, run_row
from digitlab.experiments.pool import run_fit, run_fits, threads_per_job
from digitlab.experiments.sweep_protocols import arange
from digitlab.experiments.tables import mean_std, write_tables
from digitlab.train.config import TrainConfig

METRICS = ("train_loss", "train_accuracy", "val_loss", "val_accuracy")


def parse_axis(spec: str, cfg: TrainConfig) -> tuple[str, list[Any]]:
    """'lr=0.005,0.01,0.1' or 'batch_size=32:256:32' (start:stop:step, stop included) -> (field, values),
    each value of the field's type."""
    name, sep, values = spec.partition("=")
    name = name.strip().replace("-", "_")
    if not sep or not values.strip():
        raise ConfigError(f"expected FIELD=V1,V2,... or FIELD=START:STOP:STEP, got {spec!r}")
    if name not in cfg.to_dict():
        raise ConfigError(f"{name!r} is not a training setting{close_match(name, cfg.to_dict(), list_known=False)}")
    if values.count(":") == 2 and "," not in values:
        try:
            start, stop, step = (float(v) for v in values.split(":"))
        except ValueError:
            raise ConfigError(f"{name}: START:STOP:STEP must be numbers, got {values!r}") from None
        if step <= 0 or stop < start:
            raise ConfigError(f"{name}: need STEP > 0 and STOP >= START, got {values!r}")
        raw: list[Any] = arange(start, stop, step)
    else:
        raw = [v.strip() for v in values.split(",") if v.strip()]
    typed = []
    for value in raw:
        if isinstance(getattr(cfg, name), int) and isinstance(value, float) and value.is_integer():
            value = int(value)
        typed.append(getattr(cfg.replace(**{name: value}), name))  # coerced and validated like --name VALUE
    if len(set(map(repr, typed))) != len(typed):
        raise ConfigError(f"{name}: a value is given twice in {values!r}")
    return name, typed


@dataclass(frozen=True)
class Plan:
    """What every worker of one study needs: picklable, so that local workers are processes."""
    kind: str  # "sweep" (one factor) or "grid"
    config: dict[str, Any]  # the base TrainConfig
    space: dict[str, list[Any]]
    folds: int
    out: str
    url: str
    study: str
    heartbeat: float

    def attrs(self) -> dict[str, Any]:
        """What every worker of the study must agree on: not where each finds the data or its threads."""
        return {"kind": self.kind, "config": studies.shared_config(self.config), "folds": self.folds}


def point_dir(plan: Plan, params: dict[str, Any]) -> tuple[TrainConfig, Path]:
    base = TrainConfig.from_dict(plan.config)
    cfg = base.replace(**params)
    key = "base" if cfg == base else studies.point_key(params)
    return cfg, Path(plan.out) / "runs" / key


def evaluate_point(plan: Plan, trial, progress: bool, log: Callable[[str], None]) -> float:
    """Train the trial's point (k folds with plan.folds), store its metrics on the trial, return the
    value minimised: the (mean) final validation loss, infinite when it diverged."""
    params = studies.suggest(trial, plan.space)
    cfg, out = point_dir(plan, params)
    t0 = time.perf_counter()
    if plan.folds:
        configs = fold_configs(cfg, plan.folds)
        dirs = [out / f"fold-{i + 1:02d}" for i in range(plan.folds)]
        summaries = run_fits(list(zip(configs, dirs)), progress=False, log=log)
        rows = [{"fold": i, **run_row(s, d)} for i, (s, d) in enumerate(zip(summaries, dirs))]
        kept = [r for r in rows if not r["diverged"]]
        val, val_std = mean_std([r["val_loss"] for r in kept])
        result = {"dir": str(out.relative_to(plan.out)), "diverged": len(rows) - len(kept), "folds": rows,
                  "mean_val_loss": val, "std_val_loss": val_std,
                  "mean_train_loss": mean_std([r["train_loss"] for r in kept])[0],
                  "mean_val_accuracy": mean_std([r["val_accuracy"] for r in kept])[0],
                  "mean_test_accuracy": mean_std([r["test_accuracy"] for r in kept])[0]}
        value = val if val is not None and math.isfinite(val) and not result["diverged"] else math.inf
    else:
        summary = run_fit(cfg, out, progress=progress)
        rows = history(out)
        result = {"dir": str(out.relative_to(plan.out)), "diverged": bool(summary.get("diverged")),
                  "final": {m: rows[-1].get(m) for m in METRICS} if rows else {},
                  "best": best_metrics(rows), "test_accuracy": summary.get("test_accuracy"), "history": rows}
        val = result["final"].get("val_loss")
        value = val if val is not None and math.isfinite(val) and not result["diverged"] else math.inf
    trial.set_user_attr("result", json.loads(json.dumps(result, default=float)))
    text = ", ".join(f"{k}={v}" for k, v in params.items())
    state = "diverged" if result["diverged"] else f"val loss {value:.4f}"
    log(f"{plan.study} {text}: {state} ({time.perf_counter() - t0:.0f}s)")
    return value


def best_metrics(rows: Sequence[dict[str, Any]]) -> dict[str, float | None]:
    best: dict[str, float | None] = {}
    for m in METRICS:
        values = [r[m] for r in rows if r.get(m) is not None and math.isfinite(r[m])]
        best[m] = (min(values) if m.endswith("loss") else max(values)) if values else None
    return best


def _worker(plan: Plan, threads: int, progress: bool = False, log: Callable[[str], None] = print) -> int:
    """One worker of the study: open it (create or join), run waiting points until none is left."""
    import torch

    if threads:
        torch.set_num_threads(threads)
    storage = studies.open_storage(plan.url, plan.heartbeat)
    study = studies.grid_study(plan.study, storage, plan.space, plan.attrs(), log=lambda s: None)
    return studies.work(study, storage, lambda t: evaluate_point(plan, t, progress, log), log=log)


def run_plan(plan: Plan, jobs: int, progress: bool, log: Callable[[str], None]) -> list[dict[str, Any]]:
    """Run the study with `jobs` local workers (this process and jobs - 1 more), then return one entry
    per grid point: its params, state and stored result."""
    storage = studies.open_storage(plan.url, plan.heartbeat)
    study = studies.grid_study(plan.study, storage, plan.space, plan.attrs(), log=log)
    threads = threads_per_job(jobs) if jobs > 1 else 0
    helpers = []
    if jobs > 1:
        ctx = get_context("spawn")
        helpers = [ctx.Process(target=_worker, args=(plan, threads), daemon=False) for _ in range(jobs - 1)]
        for p in helpers:
            p.start()
    try:
        _worker(plan, threads, progress=progress and jobs == 1, log=log)
    finally:
        for p in helpers:
            p.join()
    if bad := [p.exitcode for p in helpers if p.exitcode]:
        log(f"warning: {len(bad)} local worker(s) ended with an error; their trials were queued again")
    return collect(study, plan.space)


def collect(study, space: dict[str, list[Any]]) -> list[dict[str, Any]]:
    """One entry per grid point, in grid order: the completed trial's result, else the last state seen."""
    import optuna

    by_point: dict[str, dict[str, Any]] = {}
    for t in study.get_trials(deepcopy=False):
        params = t.params or t.system_attrs.get("fixed_params", {})
        key = json.dumps(params, sort_keys=True)
        if key not in by_point or t.state == optuna.trial.TrialState.COMPLETE:
            by_point[key] = {"params": params, "state": t.state.name, "trial": t.number,
                             **t.user_attrs.get("result", {})}
    return [by_point.get(json.dumps(p, sort_keys=True), {"params": p, "state": "MISSING"})
            for p in studies.grid_points(space)]


def sweep(cfg: TrainConfig, vary: dict[str, Sequence[Any]], out: str | Path, *, name: str | None = None,
          folds: int = 0, jobs: int = 1, storage: str | None = None, study: str | None = None,
          heartbeat: float = studies.HEARTBEAT, progress: bool = True,
          log: Callable[[str], None] = print) -> dict[str, Any]:
    """Vary each factor in turn with every other setting at cfg's value; write sweep.json, sweep.md,
    sweep.csv and one figure per factor (sweep-FACTOR.png) into `out`. Returns sweep.json's content."""
    if not vary:
        raise ConfigError("a sweep needs at least one factor to vary (--vary FIELD=V1,V2,...)")
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    url = studies.storage_url(storage, out)
    base = (study or name or "sweep")
    t0 = time.perf_counter()
    factors: dict[str, list[dict[str, Any]]] = {}
    for factor, values in vary.items():
        plan = Plan("sweep", cfg.to_dict(), {factor: list(values)}, folds, str(out), url, f"{base}.{factor}",
                    heartbeat)
        log(f"factor {factor}: {', '.join(map(str, values))}")
        factors[factor] = [{"value": p["params"].get(factor), **{k: v for k, v in p.items() if k != "params"}}
                           for p in run_plan(plan, jobs, progress, log)]
    result = {"kind": "sweep", "name": name, "study": base, "storage": studies.redact(url), "config": cfg.to_dict(),
              "folds": folds, "factors": factors, "wall_seconds": time.perf_counter() - t0}
    write_text(out / "sweep.json", json.dumps(result, indent=2))
    write_sweep_tables(out, result)
    for factor in factors:
        plot_factor(out, result, factor)
    log(f"sweep done in {result['wall_seconds']:.0f}s: {out / 'sweep.md'}")
    return result


def write_sweep_tables(out: Path, result: dict[str, Any]) -> None:
    rows = []
    for factor, points in result["factors"].items():
        for p in points:
            row = {"factor": factor, "value": p["value"], "state": p["state"], "diverged": p.get("diverged")}
            row.update({f"final_{m}": p.get("final", {}).get(m) for m in METRICS})
            row.update({f"best_{m}": p.get("best", {}).get(m) for m in METRICS})
            row["test_accuracy"] = p.get("test_accuracy")
            rows.append(row)
    columns = ["factor", "value", "diverged", *(f"final_{m}" for m in METRICS), *(f"best_{m}" for m in METRICS),
               "test_accuracy", "state"]
    cfg = result["config"]
    base = ", ".join(f"{f}={cfg[f]}" for f in result["factors"])
    write_tables(out, "sweep", rows, columns, title=f"Sensitivity sweep: {cfg['model']} on {cfg['dataset']}",
                 notes=[f"One factor varied at a time; the others at the base values ({base}). Final: the last "
                        "epoch; best: the best epoch of each metric. A diverged run stops where it diverged."])


def plot_factor(out: Path, result: dict[str, Any], factor: str) -> Path:
    """Each value's train (solid) and val (dashed) loss and accuracy per epoch, overlaid."""
    from matplotlib.figure import Figure

    fig = Figure(figsize=(11, 4.2), layout="constrained")
    axes = fig.subplots(1, 2)
    colors = [f"C{i}" for i in range(10)]
    for i, p in enumerate(result["factors"][factor]):
        rows = p.get("history") or []
        epochs = [r["epoch"] for r in rows]
        label = f"{factor}={p['value']}" + (" (diverged)" if p.get("diverged") else "")
        style = dict(color=colors[i % 10], marker="os^Dv<>p"[i % 8], ms=3, lw=2.5 - 0.4 * min(i, 4))  # overlaps show
        for ax, metric in zip(axes, ("loss", "accuracy")):
            ax.plot(epochs, [r[f"train_{metric}"] for r in rows], "-", label=f"{label} train", **style)
            ax.plot(epochs, [r[f"val_{metric}"] for r in rows], "--", label=f"{label} val", **style)
    for ax, metric in zip(axes, ("loss", "accuracy")):
        ax.set_xlabel("epoch")
        ax.set_ylabel(metric)
        ax.grid(alpha=0.3)
    axes[0].set_yscale("log")
    axes[1].legend(fontsize=7, ncol=2)
    cfg = result["config"]
    fig.suptitle(f"{cfg['model']} on {cfg['dataset']}: {factor} (solid train, dashed val)")
    path = out / f"sweep-{factor}.png"
    fig.savefig(path, dpi=110)
    return path


def grid(cfg: TrainConfig, axes: dict[str, Sequence[Any]], out: str | Path, *, name: str | None = None,
         folds: int = 10, jobs: int = 1, storage: str | None = None, study: str | None = None,
         heartbeat: float = studies.HEARTBEAT, progress: bool = True,
         log: Callable[[str], None] = print) -> dict[str, Any]:
    """Every cell of the axes' product, each scored by its mean validation loss over `folds` folds
    (folds=0: the config's own train/val split); write grid.json, grid.md, grid.csv and grid.png."""
    if not axes:
        raise ConfigError("a grid needs at least one axis (--grid FIELD=V1,V2,... or FIELD=START:STOP:STEP)")
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    url = studies.storage_url(storage, out)
    plan = Plan("grid", cfg.to_dict(), {k: list(v) for k, v in axes.items()}, folds, str(out), url,
                study or name or "grid", heartbeat)
    n = math.prod(len(v) for v in axes.values())
    log(f"grid of {n} cells x {max(folds, 1)} trainings" + (f", {jobs} local workers" if jobs > 1 else ""))
    t0 = time.perf_counter()
    cells = run_plan(plan, jobs, progress, log)
    if not folds:  # one run per cell: its final losses are the cell's
        for c in cells:
            c.update(mean_val_loss=c.get("final", {}).get("val_loss"), std_val_loss=None,
                     mean_train_loss=c.get("final", {}).get("train_loss"),
                     mean_val_accuracy=c.get("final", {}).get("val_accuracy"), diverged=int(bool(c.get("diverged"))))
            c.pop("history", None)
    chosen, why = choose(cells, folds)
    result = {"kind": "grid", "name": name, "study": plan.study, "storage": studies.redact(url),
              "config": cfg.to_dict(), "folds": folds, "axes": plan.space, "cells": cells, "chosen": chosen,
              "why": why, "wall_seconds": time.perf_counter() - t0}
    write_text(out / "grid.json", json.dumps(result, indent=2))
    write_grid_tables(out, result)
    plot_grid(out, result)
    log(why)
    return result


def choose(cells: list[dict[str, Any]], folds: int) -> tuple[dict[str, Any] | None, str]:
    """The cell of lowest mean validation loss among those where no fold diverged, and why."""
    ok = [c for c in cells if c["state"] == "COMPLETE" and not c.get("diverged")
          and c.get("mean_val_loss") is not None and math.isfinite(c["mean_val_loss"])]
    if not ok:
        return None, "no cell finished without diverging"
    ok.sort(key=lambda c: c["mean_val_loss"])
    best = ok[0]
    over = f"over {folds} folds" if folds else "on the validation split"
    text = lambda c: ", ".join(f"{k}={v}" for k, v in c["params"].items())  # noqa: E731
    why = f"chosen {text(best)}: the lowest mean validation loss {over}, {best['mean_val_loss']:.4f}"
    if best.get("std_val_loss") is not None:
        why += f" ± {best['std_val_loss']:.4f}"
    if len(ok) > 1:
        second = ok[1]
        why += f"; next {text(second)} at {second['mean_val_loss']:.4f}"
        if best.get("std_val_loss") and second["mean_val_loss"] - best["mean_val_loss"] < best["std_val_loss"]:
            why += " (within one standard deviation: the two are not told apart by this grid)"
    skipped = sum(1 for c in cells if c.get("diverged"))
    if skipped:
        why += f"; {skipped} cell(s) with a diverged fold were not eligible"
    return {"params": best["params"], "mean_val_loss": best["mean_val_loss"],
            "std_val_loss": best.get("std_val_loss")}, why


def write_grid_tables(out: Path, result: dict[str, Any]) -> None:
    rows = [{**c["params"], **{k: c.get(k) for k in ("mean_train_loss", "mean_val_loss", "std_val_loss",
                                                     "mean_val_accuracy", "diverged", "state")}}
            for c in result["cells"]]
    columns = [*result["axes"], "mean_train_loss", "mean_val_loss", "std_val_loss", "mean_val_accuracy",
               "diverged", "state"]
    cfg = result["config"]
    write_tables(out, "grid", rows, columns, title=f"Grid: {cfg['model']} on {cfg['dataset']}",
                 notes=[result["why"], "diverged: the number of folds that diverged (their losses are left out)."])


def plot_grid(out: Path, result: dict[str, Any]) -> Path:
    """A heat map of mean validation loss over the first two axes (a line for one axis); diverged
    cells are marked x, the chosen cell is framed."""
    import numpy as np
    from matplotlib.colors import LogNorm
    from matplotlib.figure import Figure

    names = list(result["axes"])
    fig = Figure(figsize=(max(6, 0.32 * len(result["axes"][names[-1]]) + 3), 4.5), layout="constrained")
    ax = fig.subplots()
    cells = {json.dumps([c["params"][n] for n in names]): c for c in result["cells"]}
    value = lambda c: c.get("mean_val_loss") if c and not c.get("diverged") else None  # noqa: E731
    if len(names) == 1:
        xs = result["axes"][names[0]]
        ys = [value(cells.get(json.dumps([x]))) for x in xs]
        ax.plot(range(len(xs)), [np.nan if y is None else y for y in ys], "-o")
        ax.set_xticks(range(len(xs)), [str(x) for x in xs], rotation=90)
        ax.set_xlabel(names[0])
        ax.set_ylabel("mean val loss")
    else:
        rows_axis, cols_axis = result["axes"][names[0]], result["axes"][names[1]]
        grid = np.full((len(rows_axis), len(cols_axis)), np.nan)
        labels: list[tuple[int, int, float]] = []
        for i, r in enumerate(rows_axis):
            for j, c in enumerate(cols_axis):
                cell = cells.get(json.dumps([r, c] + [result["axes"][n][0] for n in names[2:]]))
                v = value(cell)
                if v is not None and math.isfinite(v):
                    grid[i, j] = v
                    if len(rows_axis) * len(cols_axis) <= 60:  # small grids: the value in the cell
                        labels.append((j, i, v))
                elif cell and cell.get("diverged"):
                    ax.text(j, i, "x", ha="center", va="center", color="red", fontsize=9)
        finite = grid[np.isfinite(grid)]
        norm = LogNorm(vmin=finite.min(), vmax=finite.max()) if finite.size and finite.min() > 0 else None
        im = ax.imshow(grid, cmap="viridis_r", aspect="auto", norm=norm)
        for j, i, v in labels:  # light text on the dark (high-loss) cells
            ax.text(j, i, f"{v:.3f}", ha="center", va="center", fontsize=7,
                    color="white" if im.norm(v) > 0.55 else "0.15")
        fig.colorbar(im, ax=ax, label=f"mean val loss over {result['folds']} folds" if result["folds"]
                     else "val loss")
        ax.set_xticks(range(len(cols_axis)), [f"{c:g}" if isinstance(c, float) else str(c) for c in cols_axis],
                      rotation=90, fontsize=7)
        ax.set_yticks(range(len(rows_axis)), [str(r) for r in rows_axis])
        ax.set_xlabel(names[1])
        ax.set_ylabel(names[0])
        if result["chosen"]:
            p = result["chosen"]["params"]
            i, j = rows_axis.index(p[names[0]]), cols_axis.index(p[names[1]])
            from matplotlib.patches import Rectangle

            ax.add_patch(Rectangle((j - 0.5, i - 0.5), 1, 1, fill=False, edgecolor="red", linewidth=2))
    cfg = result["config"]
    fig.suptitle(f"{cfg['model']} on {cfg['dataset']}: grid (x: a fold diverged; framed: chosen)")
    path = out / "grid.png"
    fig.savefig(path, dpi=110)
    return path
