"""The trainer of the zoo's classifiers: a dataset split into train/val/test, trained through the one loop
(digitlab.train.loop), then tested, calibrated and plotted; everything lands in a run folder."""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from digitlab.atomic import save_arrays, write_text
from digitlab.checkpoint import load_checkpoint, model_meta, save_checkpoint
from digitlab.data import (
    DigitDataset,
    get_spec,
    kfold_split,
    load_dataset,
    parse_augment,
    ratio_split,
    resolve_data_dir,
)
from digitlab.errors import ConfigError
from digitlab.infer import Evaluation, evaluate
from digitlab.models import create_model, init_weights
from digitlab.plots import plot_confusion, plot_curves
from digitlab.train.config import TrainConfig
from digitlab.train.loop import (
    STATE,
    ClassificationLoss,
    ImageBatches,
    LoopResult,
    calibrate,
    open_run,
    train_loop,
    write_config,
)


@dataclass(frozen=True)
class RunData:
    train: DigitDataset
    val: DigitDataset | None
    test: DigitDataset
    classes: tuple[str, ...]
    indices: dict[str, np.ndarray]  # split name -> indices into its source split, saved with the run


def one_split_defaults(cfg: TrainConfig) -> TrainConfig:
    """A dataset of one split (TibetanMNIST, sklearn digits) asked for the default train/test splits: carve
    train, val and test from its one split, 70:15:15 (k-fold: 85 of it in folds, 15 test)."""
    splits = get_spec(cfg.dataset).splits
    if len(splits) == 1 and (cfg.train_split, cfg.test_split) == ("train", "test") and "train" not in splits:
        return cfg.replace(train_split=next(iter(splits)), test_split="", split=(70, 15, 15))
    return cfg


def prepare_data(cfg: TrainConfig, progress: bool = False, download: bool = False) -> RunData:
    """Load the dataset and cut the deterministic train/val(/test) split that the config asks for."""
    spec = get_spec(cfg.dataset)
    if cfg.train_split not in spec.splits and len(spec.splits) == 1:
        only = next(iter(spec.splits))
        raise ConfigError(f"{spec.name} has one split, {only!r}, and no {cfg.train_split!r}/{cfg.test_split!r}: carve "
                          f"all three from it, e.g. --train-split {only} --test-split '' --split 70:15:15")
    pool = load_dataset(cfg.dataset, cfg.train_split, data_dir=cfg.data_dir, download=download, progress=progress)
    split_seed = cfg.seed if cfg.split_seed is None else cfg.split_seed
    if cfg.folds:  # k-fold: the pool (less a carved test share) in `folds` stratified folds, one of them val
        rest = torch.arange(len(pool))
        if not cfg.test_split:
            rest, _, test_idx = ratio_split(pool.labels, (cfg.split[0] + cfg.split[1], 0, cfg.split[2]),
                                            seed=split_seed)
        train_pos, val_pos = kfold_split(pool.labels[rest], cfg.folds, seed=split_seed)[cfg.fold]
        parts = [rest[train_pos], rest[val_pos]] + ([] if cfg.test_split else [test_idx])
    else:
        parts = ratio_split(pool.labels, cfg.split, seed=split_seed)
    if cfg.test_split:
        train_idx, val_idx = parts
        test = load_dataset(cfg.dataset, cfg.test_split, data_dir=cfg.data_dir, download=download,
                            progress=progress)
        test_idx = torch.arange(len(test))
    else:
        train_idx, val_idx, test_idx = parts
        test = pool
    if cfg.limit:
        train_idx, val_idx, test_idx = train_idx[:cfg.limit], val_idx[:cfg.limit], test_idx[:cfg.limit]
    indices = {"train": train_idx, "val": val_idx, "test": test_idx}
    return RunData(
        train=pool.subset(train_idx),
        val=pool.subset(val_idx) if len(val_idx) else None,
        test=test.subset(test_idx),
        classes=spec.classes,
        indices={k: v.numpy() for k, v in indices.items()},
    )


def default_run_dir(name: str) -> Path:
    return Path("runs") / f"{datetime.now():%Y%m%d-%H%M%S}-{name}"


def fit(cfg: TrainConfig | None = None, out_dir: str | Path | None = None, *, resume: bool = False,
        download: bool = False, progress: bool = True, log: Callable[[str], None] = print,
        name: str | None = None, on_epoch: Callable[[dict[str, Any]], None] | None = None) -> dict[str, Any]:
    """Train, validate each epoch, test the best model; everything lands in `out_dir`.

    With resume=True the run in `out_dir` continues from its last completed epoch (its saved config is
    used); with the same seed the result equals an uninterrupted run's. download=True fetches missing
    dataset files first. With cfg.stop_at > 0 the run stops as soon as the test accuracy, checked every
    cfg.check_every steps (or each epoch), reaches it. on_epoch(metrics row) follows each epoch (a study
    reports it, and may stop the run by raising). Returns summary.json's content."""
    if cfg is not None and not resume:
        # the data folder as this run finds it, absolute: eval and ensembles find the data there again
        cfg = one_split_defaults(cfg).replace(data_dir=str(resolve_data_dir(cfg.data_dir).resolve()))
    default = default_run_dir(name or f"{cfg.model}-{cfg.dataset}") if cfg is not None else None
    cfg, out = open_run(cfg, out_dir, resume, TrainConfig, default)
    if cfg.threads:
        torch.set_num_threads(cfg.threads)
    log(f"run folder: {out}\nconfig:\n{cfg.describe()}")

    torch.manual_seed(cfg.seed)
    spec = get_spec(cfg.dataset)
    norm, num_classes = spec.normalization, len(spec.classes)
    augment = parse_augment(cfg.augment) if cfg.augment else None
    model_args = {"in_channels": 1, "num_classes": num_classes, **cfg.model_args}
    model = create_model(cfg.model, **model_args)  # before loading data: a bad name fails at once
    if cfg.init != "default":
        init_weights(model, cfg.init)
    memory_format = torch.channels_last if cfg.channels_last else torch.contiguous_format
    model = model.to(memory_format=memory_format)
    data = prepare_data(cfg, progress=progress, download=download)
    out.mkdir(parents=True, exist_ok=True)  # only now: a bad config or missing data leaves no empty run
    if not (resume and (out / STATE).is_file()):
        write_config(out, cfg)
        save_arrays(out / "splits.npz", **data.indices)
    meta = model_meta(cfg.model, model_args, cfg.dataset, data.classes, norm, config=cfg.to_dict())

    def target_reached(epochs: float, seconds: float) -> dict[str, Any] | None:
        accuracy = evaluate(model, data.test, norm, num_classes, cfg.eval_batch_size).accuracy
        if accuracy < cfg.stop_at:
            return None
        return {"test_accuracy": accuracy, "unix_time": time.time(), "epochs": epochs, "train_seconds": seconds}

    def validate(m: nn.Module) -> tuple[float, float]:
        val = evaluate(m, data.val, norm, num_classes, cfg.eval_batch_size)
        return val.loss, val.accuracy

    result = train_loop(
        model, ImageBatches(data.train.images, data.train.labels, norm, cfg.batch_size, augment, memory_format),
        ClassificationLoss(num_classes, cfg.label_smoothing), cfg, out=out, resume=resume, meta=meta,
        validate=validate if data.val else None, check=target_reached if cfg.stop_at else None,
        forward=torch.compile(model) if cfg.compile else None,  # shares parameters with `model`
        progress=progress, log=log, desc=cfg.model, on_epoch=on_epoch)
    if result.reached:
        log(f"stop: test accuracy {result.reached['test_accuracy']:.4f} >= {cfg.stop_at} after "
            f"{result.reached['train_seconds']:.1f}s of training")
    return _finish(cfg, out, model, data, meta, result, log)


def _finish(cfg: TrainConfig, out: Path, model: nn.Module, data: RunData, meta: dict[str, Any], result: LoopResult,
            log: Callable[[str], None]) -> dict[str, Any]:
    """Test the kept checkpoint, calibrate it, draw the plots and write summary.json."""
    norm = get_spec(cfg.dataset).normalization
    history, best, diverged, reached = result.history, result.best, result.diverged, result.reached
    test: Evaluation | None = None
    temperature, reference, val_errors = 1.0, None, None
    if best["epoch"]:
        model = load_checkpoint(out).model
        if data.val is not None:
            cal = calibrate(model, data.val.images, data.val.labels, norm, log, cfg.eval_batch_size)
            temperature, reference, val_errors = cal.temperature, cal.logit_reference, cal.errors
        test = evaluate(model, data.test, norm, len(data.classes), cfg.eval_batch_size)
    vals = [r["val_accuracy"] for r in history if r["val_accuracy"] is not None]
    summary = {
        "model": cfg.model, "dataset": cfg.dataset, "epochs": len(history),
        "best_epoch": best["epoch"] or None,
        "best_val_accuracy": max(vals) if vals else None,
        "test_accuracy": test.accuracy if test else None,
        "test_loss": test.loss if test else None,
        "per_class_accuracy": dict(zip(data.classes, test.per_class)) if test else None,
        "most_confused": [{"true": data.classes[t], "predicted": data.classes[p], "count": n}
                          for t, p, n in test.most_confused()] if test else [],
        "temperature": temperature,
        "temperature_val_errors": val_errors,  # misread validation images the temperature was fitted on
        "test_ece": test.calibration_error(1.0) if test else None,
        "test_ece_calibrated": test.calibration_error(temperature) if test else None,
        "train_seconds": sum(r["seconds"] for r in history),
        "diverged": diverged is not None,
        "diverged_reason": diverged,
        "stopped_at_target": reached or None,
        "sizes": {"train": len(data.train), "val": len(data.val) if data.val else 0, "test": len(data.test)},
        "config": cfg.to_dict(),
    }
    if history:
        plot_curves(history, out / "curves.png", title=f"{cfg.model} on {cfg.dataset}")
    if test:
        plot_confusion(test.confusion, data.classes, out / "confusion.png",
                       title=f"{cfg.model} on {cfg.dataset} test: accuracy {test.accuracy:.4f}")
        np.savetxt(out / "confusion.csv", test.confusion.numpy(), fmt="%d", delimiter=",")
        save_checkpoint(out, model, {**meta, "epoch": best["epoch"], "temperature": temperature,
                                     "temperature_val_errors": val_errors, "logit_reference": reference, "metrics": {
            k: summary[k] for k in ("best_val_accuracy", "test_accuracy", "test_loss", "test_ece_calibrated")}})
        pairs = ", ".join(f"{d['true']}->{d['predicted']} ({d['count']})" for d in summary["most_confused"])
        log(f"test accuracy {test.accuracy:.4f} (best epoch {best['epoch']}); most confused: {pairs}")
    write_text(out / "summary.json", json.dumps(summary, indent=2))
    return summary

