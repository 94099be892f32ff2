"""Models compared under one protocol over several seeds: test accuracy mean ± std, size, cost and speed.

Each (model, seed) is an ordinary training run in out/<model>/seed-<s>/ (a k-fold protocol: one run per
fold, out/<model>/fold-<i>/, the folds standing in for the seeds), trained through pool.run_fits, so a
comparison started again on the same folder trains only the runs still missing. All runs share one
train/val/test cut (split_seed, 0 unless the config names one): the seeds vary the weights, shuffling,
dropout and augmentation, never the test set. A diverged run is counted in its own column and left out
of the mean and std.

The named protocols, their recipes and measured costs are in protocols.py."""

from __future__ import annotations

import csv
import io
import json
import statistics
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from digitlab.atomic import write_text
from digitlab.errors import ConfigError, DigitlabError, close_match
from digitlab.experiments.pool import run_fits
from digitlab.experiments.protocols import Protocol, Recipe, get_protocol
from digitlab.experiments.tables import markdown, mean_std
from digitlab.table import format_table
from digitlab.train.config import TrainConfig

INFER_BATCH = 256  # images per call when timing inference
INFER_IMAGES = 2048  # at most this many test images per timing (8 batches)
INFER_REPEATS = 5  # timings per model; the median is reported
IGNORED = ("data_dir", "threads")  # settings a run folder may hold otherwise without being another run
CSV_COLUMNS = ("model", "epochs", "runs", "diverged", "test_accuracy_mean", "test_accuracy_std", "params", "macs",
               "train_seconds", "ms_per_image", "published")


@dataclass(frozen=True)
class Entry:
    """One model of a comparison: its runs' configs and folders, and the figure it is compared with."""
    model: str
    runs: list[tuple[int, int | None, TrainConfig, Path]]  # (seed, fold or None, config, run folder)
    published: float | None
    source: str
    params: int
    macs: int


def compare(models: Sequence[str] | None = None, *, protocol: str | None = None, base: TrainConfig | None = None,
            seeds: Sequence[int] = (1, 2, 3), out: str | Path, jobs: int | None = None, progress: bool = True,
            log: Callable[[str], None] = print) -> dict[str, Any]:
    """Train every model for every seed (or fold), then write compare.json, compare.md, compare.csv and
    compare.png into `out`. Returns compare.json's content.

    models: zoo names (default: the protocol's); with a protocol, a model it names trains with its recipe.
    seeds: one run per seed; where the protocol or base has folds, one run per fold instead, seeded with
    the fold's number (seeds is then not used).
    base: without a protocol, the config every model trains with (default TrainConfig()); with one, its
    settings that differ from TrainConfig's defaults override every recipe (epochs=1, limit=2000: a
    quick try of the protocol). jobs: trainings at once, each in its own process with cores / jobs torch
    threads (default: the protocol's, whose stated time assumes it, else 1). Every name and setting is
    checked before anything trains."""
    out = Path(out)
    proto = get_protocol(protocol) if protocol else None
    if not models and proto is None:
        raise ConfigError("nothing to compare: give models or a protocol")
    seeds = list(seeds)
    jobs = jobs or (proto.jobs if proto else 1)
    if not seeds or len(set(seeds)) != len(seeds):
        raise ConfigError(f"seeds: give at least one seed, each once, got {seeds}")
    entries = plan(list(models or proto.models), proto, base, seeds, out)
    folds = entries[0].runs[0][2].folds
    check_folders(entries, out)
    tasks = [(cfg, run) for e in entries for _, _, cfg, run in e.runs]
    what = f"{len(entries)} models x " + (f"{folds} folds (they stand in for the seeds)" if folds
                                          else f"{len(seeds)} seeds")
    log(f"comparing {what}, {len(tasks)} runs, into {out}" + (f", {jobs} at a time" if jobs > 1 else ""))
    t0 = time.perf_counter()
    summaries = iter(run_fits(tasks, jobs=jobs, progress=progress, log=log, desc="runs"))
    rows = [model_row(e, [next(summaries) for _ in e.runs], out, log) for e in entries]
    cfg = entries[0].runs[0][2]
    result = {"kind": "compare", "protocol": proto.name if proto else None, "dataset": cfg.dataset,
              "test_split": cfg.test_split or f"carved from {cfg.train_split}", "metric": "test_accuracy",
              "seeds": sorted({seed for e in entries for seed, *_ in e.runs}), "folds": folds, "rows": rows,
              "wall_seconds": time.perf_counter() - t0}
    write_text(out / "compare.json", json.dumps(result, indent=2))
    write_tables(out, result)
    plot_compare(out, result)
    log(format_table(display_rows(result)))
    return result


def plan(models: list[str], proto: Protocol | None, base: TrainConfig | None, seeds: list[int],
         out: Path) -> list[Entry]:
    """Every model's run configs and folders; an unknown model, a bad setting or bad model arguments
    raise a one-line ConfigError here, before any training."""
    from digitlab.data import get_spec
    from digitlab.models import list_models, model_info
    from digitlab.train.trainer import one_split_defaults

    if len(set(models)) != len(models):
        raise ConfigError(f"a model is named twice in {', '.join(models)}")
    known = list_models()
    for name in models:
        if name not in known:
            raise ConfigError(f"unknown model {name!r}{close_match(name, known)}")
    entries = []
    for name in models:
        recipe = (proto.recipe(name) if proto else None) or Recipe(name)
        cfg = one_split_defaults(recipe_config(recipe, proto, base))  # as fit will read it
        if cfg.split_seed is None:
            cfg = cfg.replace(split_seed=0)  # one cut for every run: the seeds never change the test set
        if cfg.folds:
            runs = [(i + 1, i, cfg.replace(fold=i, seed=i + 1), out / name / f"fold-{i + 1:02d}")
                    for i in range(cfg.folds)]
        else:
            runs = [(s, None, cfg.replace(seed=s), out / name / f"seed-{s}") for s in seeds]
        try:
            info = model_info(name, num_classes=len(get_spec(cfg.dataset).classes), **cfg.model_args)
        except DigitlabError as e:
            raise ConfigError(str(e)) from None
        entries.append(Entry(name, runs, recipe.published, recipe.source, info.params, info.macs))
    if len({e.runs[0][2].dataset for e in entries}) > 1:
        raise ConfigError("every model of a comparison must be tested on one dataset")
    return entries


def recipe_config(recipe: Recipe, proto: Protocol | None, base: TrainConfig | None) -> TrainConfig:
    """A model's config: base alone without a protocol; else the recipe's preset, the protocol's shared
    settings, the recipe's own, then base's settings that differ from the defaults."""
    from digitlab.train.presets import get_preset

    if proto is None:
        return (base or TrainConfig()).replace(model=recipe.model)
    default = TrainConfig().to_dict()
    changed = {k: v for k, v in (base.to_dict() if base else {}).items()
               if v != default[k] and k not in ("model", "seed")}
    values = {**(get_preset(recipe.preset).overrides if recipe.preset else {}), **proto.base,
              **({"folds": proto.folds} if proto.folds else {}), **recipe.overrides, **changed, "model": recipe.model}
    return TrainConfig.from_dict(values)


def check_folders(entries: list[Entry], out: Path) -> None:
    """A run folder that holds a run of another config fails here: it would be reused, not retrained."""
    for e in entries:
        for _, _, cfg, run in e.runs:
            if not (run / "config.json").is_file():
                continue
            saved = json.loads((run / "config.json").read_text())
            wanted = cfg.to_dict()
            differ = sorted(k for k in wanted if k not in IGNORED and saved.get(k) != wanted[k])
            if differ:
                k = differ[0]
                raise ConfigError(f"{run} holds a run of another config ({k} {saved.get(k)!r}, not {wanted[k]!r}"
                                  f"{f' and {len(differ) - 1} more' if len(differ) > 1 else ''}); choose another "
                                  f"out folder")


def model_row(entry: Entry, summaries: list[dict[str, Any]], out: Path, log: Callable[[str], None]) -> dict[str, Any]:
    """A model's line of the comparison: its runs, and mean ± std over those that did not diverge."""
    per_run = [{"seed": seed, "fold": fold, "dir": run.relative_to(out).as_posix(),
                "diverged": bool(s.get("diverged")), "epochs": s.get("epochs"),
                "test_accuracy": s.get("test_accuracy"), "train_seconds": s.get("train_seconds")}
               for (seed, fold, _, run), s in zip(entry.runs, summaries)]
    kept = [r for r in per_run if not r["diverged"] and r["test_accuracy"] is not None]
    mean, std = mean_std([r["test_accuracy"] for r in kept])
    ms = inference_ms(out / kept[0]["dir"], out / entry.model / "inference.json", log) if kept else None
    cfg = entry.runs[0][2]
    return {
        "model": entry.model, "epochs": cfg.epochs, "runs": len(per_run),
        "diverged": sum(r["diverged"] for r in per_run),
        "test_accuracy_mean": mean, "test_accuracy_std": std,
        "params": entry.params, "macs": entry.macs,
        "train_seconds": mean_std([r["train_seconds"] for r in (kept or per_run)])[0],
        "ms_per_image": ms, "published": entry.published, "published_source": entry.source or None,
        "beats_published": None if mean is None or entry.published is None else mean > entry.published,
        "config": cfg.replace(seed=0, fold=0).to_dict(),  # the model's recipe; the runs differ in seed (and fold)
        "per_run": per_run,
    }


def inference_ms(run: Path, cache: Path, log: Callable[[str], None]) -> float:
    """Milliseconds per image of the run's checkpoint on its own test set, through digitlab.infer:
    batches of INFER_BATCH, one thread, the median of INFER_REPEATS passes over at most INFER_IMAGES
    images after one warm-up batch. Kept in `cache` for the checkpoint's weights."""
    import torch

    from digitlab.checkpoint import load_checkpoint
    from digitlab.infer import predict_logits
    from digitlab.train.trainer import prepare_data

    ckpt = load_checkpoint(run)
    key = {"run": run.name, "weights_sha256": ckpt.meta.get("weights_sha256"), "batch_size": INFER_BATCH,
           "threads": 1, "repeats": INFER_REPEATS}
    if cache.is_file() and (done := json.loads(cache.read_text())).get("key") == key:
        return done["ms_per_image"]
    cfg = TrainConfig.from_dict(json.loads((run / "config.json").read_text()))
    images = prepare_data(cfg).test.images[:INFER_IMAGES]
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        predict_logits(ckpt.model, images[:INFER_BATCH], ckpt.normalization, INFER_BATCH)  # warm-up
        seconds = []
        for _ in range(INFER_REPEATS):
            t0 = time.perf_counter()
            predict_logits(ckpt.model, images, ckpt.normalization, INFER_BATCH)
            seconds.append(time.perf_counter() - t0)
    finally:
        torch.set_num_threads(threads)
    ms = 1000 * statistics.median(seconds) / len(images)
    write_text(cache, json.dumps({"key": key, "images": len(images), "ms_per_image": ms}, indent=2))
    log(f"{ckpt.meta['model']}: {ms:.3f} ms per image ({len(images)} test images, batch {INFER_BATCH}, 1 thread)")
    return ms


def percent(value: float | None, digits: int = 2) -> str:
    return "" if value is None else f"{100 * value:.{digits}f}%"


def display_rows(result: dict[str, Any]) -> list[list[str]]:
    """The comparison as text cells, header first (Markdown and the terminal)."""
    spread = "folds" if result["folds"] else "seeds"
    rows = [["model", "epochs", "runs", "diverged", f"test accuracy (mean ± std over {spread})", "params", "MACs",
             "train s", "ms/image", "published"]]
    for r in result["rows"]:
        acc = (f"{percent(r['test_accuracy_mean'])} ± {percent(r['test_accuracy_std'])}"
               if r["test_accuracy_mean"] is not None else "all diverged")
        published = percent(r["published"], 1)
        if r["beats_published"] is not None:
            published += " (beaten)" if r["beats_published"] else " (not reached)"
        rows.append([r["model"], str(r["epochs"]), str(r["runs"]), str(r["diverged"]), acc, f"{r['params']:,}",
                     f"{r['macs'] / 1e6:.2f}M", f"{r['train_seconds']:.0f}" if r["train_seconds"] is not None else "",
                     f"{r['ms_per_image']:.3f}" if r["ms_per_image"] is not None else "", published])
    return rows


def title(result: dict[str, Any]) -> str:
    what = result["protocol"] or "models"
    spread = (f"{result['folds']} folds" if result["folds"]
              else f"seeds {', '.join(map(str, result['seeds']))}")
    return f"Comparison {what}: {result['dataset']}, tested on {result['test_split']}, {spread}"


def write_tables(out: Path, result: dict[str, Any]) -> None:
    """compare.md (the table with its notes) and compare.csv (one numeric line per model)."""
    cells = display_rows(result)
    table = markdown([dict(zip(cells[0], row)) for row in cells[1:]], cells[0])
    notes = [f"Mean ± sample std of the test accuracy over the runs that did not diverge; a diverged run is "
             f"counted in `diverged`. ms/image: the first run's checkpoint on up to {INFER_IMAGES} test images, "
             f"batch {INFER_BATCH}, one thread, median of {INFER_REPEATS} passes. MACs: Conv2d and Linear "
             f"multiply-accumulates per image. Run folders: <model>/{'fold' if result['folds'] else 'seed'}-*/."]
    notes += [f"- {r['model']}: published {percent(r['published'], 2)}, {r['published_source']}"
              for r in result["rows"] if r["published"] is not None]
    write_text(out / "compare.md", f"# {title(result)}\n\n{table}\n" + "\n".join(notes) + "\n")
    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=CSV_COLUMNS, extrasaction="ignore")
    writer.writeheader()
    writer.writerows(result["rows"])
    write_text(out / "compare.csv", buf.getvalue())


def plot_compare(out: Path, result: dict[str, Any]) -> Path:
    """Test accuracy per model, a bar with its std as error bar; the published figure a red tick."""
    from matplotlib.figure import Figure

    rows = result["rows"]
    fig = Figure(figsize=(max(5.0, 1.1 * len(rows) + 2), 4.5), layout="constrained")
    ax = fig.subplots()
    xs = range(len(rows))
    means = [r["test_accuracy_mean"] or 0.0 for r in rows]
    stds = [r["test_accuracy_std"] or 0.0 for r in rows]
    ax.bar(xs, means, yerr=stds, capsize=4, color="C0", alpha=0.85, label="test accuracy (mean ± std)")
    values = [m for m, r in zip(means, rows) if r["test_accuracy_mean"] is not None]
    values += [r["published"] for r in rows if r["published"] is not None]
    low = min(values) if values else 0.0
    bottom = max(0.0, low - 0.25 * (1.0 - low) - 0.01)
    ax.set_ylim(bottom, 1.0 + min(0.05, 0.1 * (1.0 - low) + 0.002))
    marked = False
    for x, r in zip(xs, rows):
        if r["published"] is not None:
            ax.hlines(r["published"], x - 0.42, x + 0.42, colors="red", linewidth=2.5,
                      label=None if marked else "published")
            marked = True
        text = "all diverged" if r["test_accuracy_mean"] is None else f"{100 * r['test_accuracy_mean']:.2f}"
        if r["diverged"] and r["test_accuracy_mean"] is not None:
            text += f"\n({r['diverged']} diverged)"
        ax.annotate(text, (x, max(bottom, means[x] + stds[x])), textcoords="offset points", xytext=(0, 3),
                    ha="center", fontsize=7)
    ax.set_xticks(list(xs), [r["model"] for r in rows], rotation=30, ha="right")
    ax.set_ylabel(f"accuracy on {result['test_split']}")
    ax.grid(axis="y", alpha=0.3)
    ax.legend(fontsize=8, loc="lower center", bbox_to_anchor=(0.5, 1.0), ncol=2, frameon=False)
    fig.suptitle(title(result), fontsize=9)
    path = out / "compare.png"
    fig.savefig(path, dpi=110)
    return path
