"""The experiments of record: the named rescnn-sgd sensitivity sweep, the reduced rescnn grid and the
mnist-zoo comparison, each through digitlab's own API with two local workers, timed end to end:

    python benchmarks/experiments.py sweep   --data-dir ../shared/datasets   # <= 60 min here
    python benchmarks/experiments.py grid    --data-dir ../shared/datasets   # <= 30 min here
    python benchmarks/experiments.py compare --data-dir ../shared/datasets   # <= 2 h here

The experiment folders stay under --root (default runs/bench/), so an interrupted benchmark started
again resumes (its wall time then covers the last part only; the JSON says so). Saves
benchmarks/results/{sweep-rescnn-sgd,grid-rescnn-small,compare-mnist-zoo}.{json,md} and the figures under
benchmarks/results/figures/. `--dry-run` checks the harness in a minute (1 epoch on 512 images).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import time
from pathlib import Path

import report as report_io  # beside this script

FIGURES = report_io.RESULTS / "figures"


def env(args) -> dict:
    import torch

    return {"cpus": os.cpu_count(), "torch": torch.__version__, "python": platform.python_version(),
            "jobs": args.jobs, "dry_run": args.dry_run, "resumed": args.resumed}


def portable_config(config: dict) -> dict:
    """The config as the committed results give it: the data folder by name, not by this machine's path."""
    return {**config, "data_dir": report_io.portable(config["data_dir"]) if config.get("data_dir") else None}


def copy_figures(folder: Path, names: list[str], prefix: str) -> list[str]:
    FIGURES.mkdir(parents=True, exist_ok=True)
    saved = []
    for name in names:
        if (folder / name).is_file():
            shutil.copyfile(folder / name, FIGURES / f"{prefix}-{name}")
            saved.append(f"figures/{prefix}-{name}")
    return saved


def run_sweep(args) -> None:
    from digitlab.experiments.sweep import sweep
    from digitlab.experiments.sweep_protocols import get_sweep
    from digitlab.train import get_preset

    protocol = get_sweep("rescnn-sgd")
    cfg = get_preset(protocol.preset).config(data_dir=args.data_dir, **args.overrides)
    out = args.root / "sweep-rescnn-sgd"
    args.resumed = out.exists()
    t0 = time.perf_counter()
    result = sweep(cfg, protocol.vary, out, name=protocol.name, jobs=args.jobs, progress=False)
    wall = time.perf_counter() - t0
    rows = []
    for factor, points in result["factors"].items():
        for p in points:
            rows.append({"factor": factor, "value": p["value"], "diverged": p.get("diverged"), "state": p["state"],
                         "epochs_run": len(p.get("history") or []),
                         "final_val_loss": p.get("final", {}).get("val_loss"),
                         "final_val_accuracy": p.get("final", {}).get("val_accuracy"),
                         "best_val_accuracy": p.get("best", {}).get("val_accuracy"),
                         "test_accuracy": p.get("test_accuracy"),
                         "train_seconds": sum(r.get("seconds") or 0 for r in p.get("history") or [])})
    lr03 = next((r for r in rows if r["factor"] == "lr" and r["value"] == 0.3), None)
    report = {"protocol": protocol.name, "config": portable_config(result["config"]), "vary": protocol.vary,
              "env": env(args),
              "wall_seconds": wall, "budget_seconds": 3600, "within_budget": wall <= 3600,
              "lr_0.3_diverged": bool(lr03 and lr03["diverged"]), "rows": rows,
              "figures": copy_figures(out, [f"sweep-{f}.png" for f in protocol.vary], "rescnn-sgd")}
    lines = [f"# Sensitivity sweep `rescnn-sgd` ({report['env']['cpus']} CPUs, {args.jobs} workers)", "",
             f"Wall time **{wall / 60:.1f} min** (budget 60 min"
             + (", resumed: the last part only" if args.resumed else "") + "). One factor at a time around the "
             "preset (lr 0.01, momentum 0.5, batch 64, 10 epochs); published: lr 0.3 diverges, epochs and "
             "momentum matter little.", "",
             "| factor | value | diverged | epochs | final val loss | final val acc | best val acc | test acc | "
             "train s |", "|---|---:|---|---:|---:|---:|---:|---:|---:|"]
    for r in rows:
        f = lambda v, d=4: "" if v is None else f"{v:.{d}f}"  # noqa: E731
        lines.append(f"| {r['factor']} | {r['value']} | {'yes' if r['diverged'] else 'no'} | {r['epochs_run']} | "
                     f"{f(r['final_val_loss'])} | {f(r['final_val_accuracy'])} | {f(r['best_val_accuracy'])} | "
                     f"{f(r['test_accuracy'])} | {f(r['train_seconds'], 0)} |")
    lines += ["", "Figures: " + ", ".join(f"[{Path(p).name}]({p})" for p in report["figures"])]
    report_io.save("sweep-rescnn-sgd", report, "\n".join(lines))


def run_grid(args) -> None:
    from digitlab.experiments.sweep import grid
    from digitlab.experiments.sweep_protocols import get_sweep
    from digitlab.train import get_preset

    small, full = get_sweep("rescnn-grid-small"), get_sweep("rescnn-grid")
    cfg = get_preset(small.preset).config(data_dir=args.data_dir, **{**small.overrides, **args.overrides})
    out = args.root / "grid-rescnn-small"
    args.resumed = out.exists()
    t0 = time.perf_counter()
    result = grid(cfg, small.grid, out, name=small.name, folds=small.folds, jobs=args.jobs, progress=False)
    wall = time.perf_counter() - t0
    cells = [{**c["params"], "mean_train_loss": c.get("mean_train_loss"), "mean_val_loss": c.get("mean_val_loss"),
              "std_val_loss": c.get("std_val_loss"), "mean_val_accuracy": c.get("mean_val_accuracy"),
              "diverged_folds": c.get("diverged"), "state": c["state"]} for c in result["cells"]]
    # the full grid's cost, from the base run of the sweep benchmark (rescnn-sgd, all data, 10 epochs)
    estimate = None
    sweep_json = report_io.RESULTS / "sweep-rescnn-sgd.json"
    if sweep_json.is_file():
        sweep_rows = json.loads(sweep_json.read_text())["rows"]
        per_batch = {r["value"]: r["train_seconds"] for r in sweep_rows if r["factor"] == "batch_size"}
        if per_batch:
            mean_training = sum(per_batch.values()) / len(per_batch)  # over batch 16..256: one thread each
            trainings = len(full.grid["batch_size"]) * len(full.grid["lr"]) * full.folds
            estimate = {"trainings": trainings, "seconds_per_training": mean_training,
                        "basis": "mean train seconds of the sweep's batch-size points (10 epochs, 55k images, one "
                                 "thread each, two at a time on this 2-core machine)",
                        "machine_hours": trainings * mean_training / args.jobs / 3600}
    report = {"protocol": small.name, "description": small.description,
              "config": portable_config(result["config"]),
              "axes": small.grid, "folds": small.folds, "env": env(args), "wall_seconds": wall,
              "budget_seconds": 1800, "within_budget": wall <= 1800, "chosen": result["chosen"],
              "why": result["why"], "cells": cells, "full_grid_estimate": estimate,
              "figures": copy_figures(out, ["grid.png"], "rescnn-small")}
    lines = [f"# Reduced grid `rescnn-grid-small` ({report['env']['cpus']} CPUs, {args.jobs} workers)", "",
             small.description + ".", "",
             f"Wall time **{wall / 60:.1f} min** (budget 30 min). {result['why']}.", "",
             "| batch | lr | mean train loss | mean val loss | std | mean val acc | diverged folds |",
             "|---:|---:|---:|---:|---:|---:|---:|"]
    f = lambda v, d=4: "" if v is None else f"{v:.{d}f}"  # noqa: E731
    lines += [f"| {c['batch_size']} | {c['lr']} | {f(c['mean_train_loss'])} | {f(c['mean_val_loss'])} | "
              f"{f(c['std_val_loss'])} | {f(c['mean_val_accuracy'])} | {c['diverged_folds']} |" for c in cells]
    if estimate:
        lines += ["", f"The full `rescnn-grid` ({estimate['trainings']:,} trainings) at "
                      f"{estimate['seconds_per_training']:.0f} s per training ({estimate['basis']}): about "
                      f"**{estimate['machine_hours']:.0f} machine-hours** of such a machine; N machines sharing "
                      f"one study divide it by N."]
    lines += ["", f"Heat map: [grid.png]({report['figures'][0]})" if report["figures"] else ""]
    report_io.save("grid-rescnn-small", report, "\n".join(lines))


def run_compare(args) -> None:
    from digitlab.experiments.compare import compare

    out = args.root / f"compare-{args.protocol}"
    args.resumed = out.exists()
    base = None
    if args.overrides:
        from digitlab.train import TrainConfig

        base = TrainConfig(data_dir=args.data_dir, **args.overrides)
    t0 = time.perf_counter()
    result = compare(None, protocol=args.protocol, base=base, seeds=list(range(1, args.seeds + 1)), out=out,
                     jobs=args.jobs, progress=False)
    wall = time.perf_counter() - t0
    for row in result["rows"]:
        row["config"] = portable_config(row["config"])
    budget = 7200 if args.protocol == "mnist-zoo" else None  # the budget: mnist-zoo, 3 seeds, <= 2 h
    report = {**result, "env": env(args), "wall_seconds": wall, "budget_seconds": budget,
              "within_budget": None if budget is None else wall <= budget,
              "figures": copy_figures(out, ["compare.png"], f"compare-{args.protocol}")}
    md = (out / "compare.md").read_text() if (out / "compare.md").is_file() else ""
    runs = f"{result['folds']} folds" if result.get("folds") else f"{args.seeds} seeds"
    notes = [f"budget {budget / 60:.0f} min"] if budget else []
    notes += ["resumed: the last part only"] if args.resumed else []
    md += (f"\n\nWall time **{wall / 60:.1f} min** for {runs} with {args.jobs} workers"
           + (f" ({'; '.join(notes)})" if notes else "") + ".\n")
    report_io.save(f"compare-{args.protocol}", report, md)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("what", choices=("sweep", "grid", "compare"))
    parser.add_argument("--data-dir", default=os.environ.get("DIGITLAB_DATA"))
    parser.add_argument("--root", type=Path, default=Path("runs/bench"), help="experiment folders (kept: resume)")
    parser.add_argument("--jobs", type=int, default=2, help="local workers, one thread each on 2 cores")
    parser.add_argument("--protocol", default="mnist-zoo", help="compare: the named protocol")
    parser.add_argument("--seeds", type=int, default=3, help="compare: seeds 1..N")
    parser.add_argument("--dry-run", action="store_true", help="1 epoch on 512 images: a harness check")
    args = parser.parse_args()
    args.overrides = {"epochs": 1, "limit": 512} if args.dry_run else {}
    if args.data_dir:  # what compare's protocols and every run read
        os.environ["DIGITLAB_DATA"] = args.data_dir
    if args.dry_run:
        args.root = args.root / "dry-run"
        report_io.RESULTS = Path(os.environ.get("TMPDIR", "/tmp")) / "digitlab-bench-dry-run"
        global FIGURES
        FIGURES = report_io.RESULTS / "figures"
    {"sweep": run_sweep, "grid": run_grid, "compare": run_compare}[args.what](args)


if __name__ == "__main__":
    main()
