"""The trainer: data as uint8 tensors, index batches, per-epoch metrics, atomic checkpoints, resume."""

from __future__ import annotations

import csv
import json
import math
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn
from tqdm.auto import tqdm

from digitlab.atomic import atomic_path, write_text
from digitlab.calibrate import calibration_note, fit_temperature, logit_reference
from digitlab.checkpoint import load_checkpoint, load_state, model_meta, save_checkpoint, save_state
from digitlab.data import (
    Augment,
    DigitDataset,
    Normalization,
    get_spec,
    load_dataset,
    normalize,
    parse_augment,
    ratio_split,
    resolve_data_dir,
    to_model_input,
    to_unit,
)
from digitlab.errors import ConfigError
from digitlab.infer import Evaluation, evaluate, predict_logits
from digitlab.models import create_model, init_weights
from digitlab.plots import plot_confusion, plot_curves
from digitlab.train.config import TrainConfig

STATE = "state.pt"  # resumable training state, rewritten after every epoch
METRIC_FIELDS = ["epoch", "train_loss", "train_accuracy", "val_loss", "val_accuracy", "lr", "seconds"]


@dataclass(frozen=True)
class RunData:
    train: DigitDataset
    val: DigitDataset | None
    test: DigitDataset
    classes: tuple[str, ...]
    indices: dict[str, np.ndarray]  # split name -> indices into its source split, saved with the run


def prepare_data(cfg: TrainConfig, progress: bool = False, download: bool = False) -> RunData:
    """Load the dataset and cut the deterministic train/val(/test) split that the config asks for."""
    spec = get_spec(cfg.dataset)
    pool = load_dataset(cfg.dataset, cfg.train_split, data_dir=cfg.data_dir, download=download, progress=progress)
    parts = ratio_split(pool.labels, cfg.split, seed=cfg.seed if cfg.split_seed is None else cfg.split_seed)
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


def make_optimizer(cfg: TrainConfig, params) -> torch.optim.Optimizer:
    """The optimiser with its fused kernel: one update for all parameters instead of one per tensor."""
    if cfg.optimizer == "sgd":
        return torch.optim.SGD(params, lr=cfg.lr, momentum=cfg.momentum, weight_decay=cfg.weight_decay, fused=True)
    cls = torch.optim.Adam if cfg.optimizer == "adam" else torch.optim.AdamW
    return cls(params, lr=cfg.lr, weight_decay=cfg.weight_decay, fused=True)


def make_scheduler(cfg: TrainConfig, opt: torch.optim.Optimizer, steps_per_epoch: int):
    """A schedule stepped once per batch, so every kind resumes from the same counter."""
    total = cfg.epochs * steps_per_epoch
    if cfg.schedule == "onecycle":
        return torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=cfg.lr, total_steps=total)
    if cfg.schedule == "cosine":
        return torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=total)
    if cfg.schedule == "step":
        return torch.optim.lr_scheduler.StepLR(opt, step_size=cfg.step_epochs * steps_per_epoch, gamma=cfg.gamma)
    return torch.optim.lr_scheduler.LambdaLR(opt, lambda step: 1.0)


class Diverged(Exception):
    pass


LOSS_CHECK_EVERY = 25  # steps between reading the loss on the host for divergence checks


def batches(images: torch.Tensor, labels: torch.Tensor, norm: Normalization, batch_size: int, steps: int,
            gen: torch.Generator, augment: Augment | None, memory_format: torch.memory_format,
            prepared: torch.Tensor | None = None) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
    """One epoch of shuffled index batches: (model input (B, 1, 28, 28), labels (B,)).

    `prepared` is the whole set already through to_model_input, used when nothing is random per batch."""
    perm = torch.randperm(len(images), generator=gen)
    for step in range(steps):
        idx = perm[step * batch_size:(step + 1) * batch_size]
        if prepared is not None:
            x = prepared[idx]
        else:
            x = to_unit(images[idx])
            if augment is not None:
                x = augment(x, generator=gen)
            x = normalize(x, norm)
        yield x.contiguous(memory_format=memory_format), labels[idx]


def train_epoch(model: nn.Module, opt: torch.optim.Optimizer, sched, data: Iterator, cfg: TrainConfig,
                epoch: int, ref_loss: list, bar, should_stop: Callable[[int], bool] | None = None):
    """One pass over `data`; returns (mean loss, accuracy, stopped early). Raises Diverged.

    Loss and accuracy are summed on the tensor side and read once per LOSS_CHECK_EVERY steps, so the
    hot loop does no per-step host work beyond the optimiser step."""
    model.train()
    loss_sum, correct, seen = torch.zeros(()), torch.zeros((), dtype=torch.long), 0
    step = 0
    for step, (x, y) in enumerate(data, 1):
        logits = model(x)
        loss = F.cross_entropy(logits, y, label_smoothing=cfg.label_smoothing)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        sched.step()
        with torch.no_grad():
            loss_sum += loss.detach() * len(y)
            correct += (logits.argmax(1) == y).sum()
        seen += len(y)
        bar.update()
        if step == 1 or step % LOSS_CHECK_EVERY == 0:
            value = loss.item()
            if not ref_loss:
                ref_loss.append(max(value, math.log(logits.shape[1])))
            if not math.isfinite(value) or value > cfg.diverge_factor * ref_loss[0]:
                raise Diverged(f"training diverged at epoch {epoch} (batch {step}): loss {value:.4g} "
                               f"with lr {cfg.lr:g}; try a lower --lr")
            bar.set_postfix(epoch=epoch, loss=f"{value:.3f}", refresh=False)
        if should_stop is not None and cfg.check_every and step % cfg.check_every == 0 and should_stop(step):
            break
    else:
        step = -1
    mean_loss = loss_sum.item() / max(seen, 1)
    if not math.isfinite(mean_loss):
        raise Diverged(f"training diverged at epoch {epoch}: loss {mean_loss:.4g} with lr {cfg.lr:g}; "
                       f"try a lower --lr")
    return mean_loss, correct.item() / max(seen, 1), step != -1


def fit(cfg: TrainConfig | None = None, out_dir: str | Path | None = None, *, resume: bool = False,
        download: bool = False, progress: bool = True, log: Callable[[str], None] = print,
        name: str | None = None) -> dict[str, Any]:
    """Train, validate each epoch, test the best model; everything lands in `out_dir`.

    With resume=True the run in `out_dir` continues from its last completed epoch (its saved config is
    used); with the same seed the result equals an uninterrupted run's. download=True fetches missing
    dataset files first. With cfg.stop_at > 0 the run stops as soon as the test accuracy, checked every
    cfg.check_every steps (or each epoch), reaches it. Returns summary.json's content."""
    cfg, out = _open_run(cfg, out_dir, resume, name)
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
    opt = make_optimizer(cfg, model.parameters())
    bs = cfg.batch_size
    # a trailing batch of one sample would break BatchNorm; drop it
    steps = max(1, len(data.train) // bs + (len(data.train) % bs > 1))
    sched = make_scheduler(cfg, opt, steps)
    gen = torch.Generator().manual_seed(cfg.seed)  # shuffling and augmentation
    forward = torch.compile(model) if cfg.compile else model  # shares parameters with `model`

    meta = model_meta(cfg.model, model_args, cfg.dataset, data.classes, norm, config=cfg.to_dict())
    history: list[dict] = []
    best = {"score": -math.inf, "epoch": 0}  # the best val accuracy (or -train loss) so far; the kept epoch
    start_epoch, stale, ref_loss = 0, 0, []
    if resume and (out / STATE).is_file():
        state = load_state(out / STATE)
        model.load_state_dict(state["model"])
        opt.load_state_dict(state["optimizer"])
        sched.load_state_dict(state["scheduler"])
        gen.set_state(state["generator"])
        torch.set_rng_state(state["torch_rng"])
        history, best, stale, ref_loss = state["history"], state["best"], state["stale"], state["ref_loss"]
        best.setdefault("score", best.pop("val_accuracy", -math.inf))  # a state written before `keep` existed
        start_epoch = len(history)
        log(f"resuming after epoch {start_epoch} of {cfg.epochs}")
    else:
        write_text(out / "config.json", cfg.to_json())
        np.savez_compressed(out / "splits.npz", **data.indices)
    _write_metrics(out / "metrics.csv", history)

    reached: dict[str, Any] = {}

    def target_reached(step: int = steps) -> bool:
        accuracy = evaluate(model, data.test, norm, num_classes, cfg.eval_batch_size).accuracy
        if accuracy >= cfg.stop_at:
            reached.update(test_accuracy=accuracy, unix_time=time.time(), epochs=epoch - 1 + step / steps,
                           train_seconds=sum(r["seconds"] for r in history) + time.perf_counter() - t0)
        return bool(reached)

    diverged = None
    bar = tqdm(total=cfg.epochs * steps, initial=start_epoch * steps, disable=not progress, unit="batch",
               desc=cfg.model, dynamic_ncols=True, leave=False)
    # with no per-batch randomness the normalised set is computed once, not per batch
    prepared = to_model_input(data.train.images, norm) if augment is None else None
    try:
        for epoch in range(start_epoch + 1, cfg.epochs + 1):
            if best["epoch"] and cfg.patience and stale >= cfg.patience:
                log(f"early stopping: no better val accuracy for {cfg.patience} epochs")
                break
            t0 = time.perf_counter()
            epoch_data = batches(data.train.images, data.train.labels, norm, bs, steps, gen, augment,
                                 memory_format, prepared)
            train_loss, train_acc, stopped = train_epoch(
                forward, opt, sched, epoch_data, cfg, epoch, ref_loss, bar, target_reached if cfg.stop_at else None)
            if cfg.stop_at and not stopped and not reached:
                target_reached()  # the end of an epoch is always a check point
            val = evaluate(model, data.val, norm, num_classes, cfg.eval_batch_size) if data.val else None
            row = {"epoch": epoch, "train_loss": train_loss, "train_accuracy": train_acc,
                   "val_loss": val.loss if val else None, "val_accuracy": val.accuracy if val else None,
                   "lr": opt.param_groups[0]["lr"], "seconds": time.perf_counter() - t0}
            history.append(row)
            _write_metrics(out / "metrics.csv", history)
            score = val.accuracy if val else -row["train_loss"]
            improved = score > best["score"]
            stale = 0 if improved else stale + 1
            # the model that reached the target is the one kept
            if improved or reached or cfg.keep == "last":
                best = {"score": max(score, best["score"]), "epoch": epoch}
                save_checkpoint(out, model, {**meta, "epoch": epoch})
            save_state(out / STATE, {
                "model": model.state_dict(), "optimizer": opt.state_dict(), "scheduler": sched.state_dict(),
                "generator": gen.get_state(), "torch_rng": torch.get_rng_state(), "history": history,
                "best": best, "stale": stale, "ref_loss": ref_loss})
            val_text = f"val loss {val.loss:.4f} acc {val.accuracy:.4f}" if val else "no val split"
            msg = (f"epoch {epoch:>3}/{cfg.epochs}  train loss {row['train_loss']:.4f} "
                   f"acc {row['train_accuracy']:.4f}  {val_text}  {row['seconds']:.1f}s")
            bar.write(msg) if progress else log(msg)
            if reached:
                log(f"stop: test accuracy {reached['test_accuracy']:.4f} >= {cfg.stop_at} after "
                    f"{reached['train_seconds']:.1f}s of training")
                break
    except Diverged as e:
        diverged = str(e)
        log(f"error: {diverged}")
    finally:
        bar.close()
    return _finish(cfg, out, model, data, meta, history, best, diverged, log, reached)


def _open_run(cfg: TrainConfig | None, out_dir, resume: bool, name: str | None) -> tuple[TrainConfig, Path]:
    """The config and folder of a new run, or of the run to resume (whose saved config wins)."""
    if not resume:
        cfg = cfg or TrainConfig()
        # the data folder as this run finds it, absolute: eval and ensembles find the data there again
        cfg = cfg.replace(data_dir=str(resolve_data_dir(cfg.data_dir).resolve()))
        out = Path(out_dir) if out_dir else default_run_dir(name or f"{cfg.model}-{cfg.dataset}")
        if (out / "config.json").exists():
            raise ConfigError(f"{out}: already holds a run; pass --resume to continue it or choose another --out")
        return cfg, out
    if out_dir is None:
        raise ConfigError("resume needs the run folder (--out DIR)")
    out = Path(out_dir)
    if not (out / "config.json").is_file():
        raise ConfigError(f"{out}: no run to resume (config.json missing)")
    saved = TrainConfig.from_dict(json.loads((out / "config.json").read_text()))
    if cfg is not None and cfg != saved:
        raise ConfigError(f"{out}: the given config differs from the run's saved config.json")
    return saved, out


def _finish(cfg, out, model, data, meta, history, best, diverged, log, reached) -> dict[str, Any]:
    """Test the best checkpoint, draw the plots and write summary.json."""
    norm = get_spec(cfg.dataset).normalization
    test: Evaluation | None = None
    temperature, reference, val_errors = 1.0, None, None
    if best["epoch"]:
        model = load_checkpoint(out).model
        if data.val is not None:
            val_logits = predict_logits(model, data.val.images, norm, cfg.eval_batch_size)
            temperature = fit_temperature(val_logits, data.val.labels)
            reference = logit_reference(val_logits)
            val_errors = int((val_logits.argmax(1) != data.val.labels).sum())
            if note := calibration_note(val_errors):
                log(f"note: {note}")
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


def _write_metrics(path: Path, history: list[dict]) -> None:
    """Rewrite metrics.csv from the history (atomic, so a kill mid-write never truncates it)."""
    with atomic_path(path) as tmp, open(tmp, "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=METRIC_FIELDS)
        writer.writeheader()
        writer.writerows(history)
