"""The one training loop. Every network digitlab trains goes through ``train_loop``: the zoo's classifiers
(``fit``), the reader's verifier and line reader, and any caller that needs a number of optimiser steps
on given images from given weights (``train_steps``: a cross-validation fold, a federated client).

The loop owns what every caller needs the same way: seeds and the shuffling generator, the optimiser
and its schedule, a progress bar, divergence detection, early stopping, and, given a run folder,
``metrics.csv``, atomic checkpoints of the kept epoch and ``state.pt`` after every epoch, so that
``resume=True`` continues after ``kill -9`` to the weights an uninterrupted run ends with. What is
trained on what comes from the caller: a model, a source of batches and a loss.
"""

from __future__ import annotations

import json
import math
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

import torch
import torch.nn.functional as F
from torch import nn
from tqdm.auto import tqdm

from digitlab.atomic import write_csv, write_text
from digitlab.calibrate import calibration_note, fit_temperature, logit_reference
from digitlab.checkpoint import load_state, save_checkpoint, save_state
from digitlab.data import Augment, Normalization, normalize, parse_augment, to_model_input, to_unit
from digitlab.errors import ConfigError
from digitlab.infer import predict_logits
from digitlab.train.config import TrainConfig

STATE = "state.pt"  # resumable training state, rewritten after every epoch
METRIC_FIELDS = ["epoch", "train_loss", "train_accuracy", "val_loss", "val_accuracy", "lr", "seconds"]
LOSS_CHECK_EVERY = 25  # steps between reading the loss on the host for divergence checks


class Diverged(Exception):
    pass


class Batches(Protocol):
    """Where a loop's batches come from: `steps` batches per epoch, shuffled by the loop's generator."""

    steps: int

    def epoch(self, gen: torch.Generator) -> Iterator[Any]: ...


class Loss(Protocol):
    """(model, batch) -> (mean loss over the batch, batch size, correct predictions or None). `chance` is
    the loss of a uniform guess: divergence is measured against the larger of it and the first loss."""

    chance: float

    def __call__(self, model: nn.Module, batch: Any) -> tuple[torch.Tensor, int, torch.Tensor | None]: ...


def steps_per_epoch(images: int, batch_size: int) -> int:
    """Batches in one pass over `images`: a trailing batch of one image is dropped (it would break BatchNorm)."""
    return max(1, images // batch_size + (images % batch_size > 1))


class ImageBatches:
    """Shuffled index batches over uint8 images (N, 28, 28) and int64 labels (N,): (model input
    (B, 1, 28, 28), labels (B,)), augmented per batch when `augment` is given. Without augmentation the
    whole set is normalised once. A trailing batch of one sample would break BatchNorm: it is dropped."""

    def __init__(self, images: torch.Tensor, labels: torch.Tensor, norm: Normalization, batch_size: int,
                 augment: Augment | None = None, memory_format: torch.memory_format = torch.contiguous_format):
        self.images, self.labels, self.norm, self.batch_size = images, labels, norm, batch_size
        self.augment, self.memory_format = augment, memory_format
        self.steps = steps_per_epoch(len(images), batch_size)
        self.prepared = to_model_input(images, norm) if augment is None else None

    def epoch(self, gen: torch.Generator) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        perm = torch.randperm(len(self.images), generator=gen)
        bs = self.batch_size
        for step in range(self.steps):
            idx = perm[step * bs:(step + 1) * bs]
            if self.prepared is not None:
                x = self.prepared[idx]
            else:
                x = to_unit(self.images[idx])
                if self.augment is not None:
                    x = self.augment(x, generator=gen)
                x = normalize(x, self.norm)
            yield x.contiguous(memory_format=self.memory_format), self.labels[idx]


@dataclass(frozen=True)
class ClassificationLoss:
    """Cross-entropy over (input, labels) batches of `num_classes` classes, counting the correct predictions."""

    num_classes: int
    label_smoothing: float = 0.0

    @property
    def chance(self) -> float:
        return math.log(self.num_classes)

    def __call__(self, model: nn.Module, batch: tuple[torch.Tensor, torch.Tensor]):
        x, y = batch
        logits = model(x)
        with torch.no_grad():
            correct = (logits.argmax(1) == y).sum()
        return F.cross_entropy(logits, y, label_smoothing=self.label_smoothing), len(y), correct


def make_optimizer(cfg: TrainConfig, params) -> torch.optim.Optimizer:
    """The optimiser with its fused kernel: one update for all parameters instead of one per tensor."""
    if cfg.optimizer == "sgd":
        return torch.optim.SGD(params, lr=cfg.lr, momentum=cfg.momentum, weight_decay=cfg.weight_decay, fused=True)
    cls = torch.optim.Adam if cfg.optimizer == "adam" else torch.optim.AdamW
    return cls(params, lr=cfg.lr, weight_decay=cfg.weight_decay, fused=True)


def make_scheduler(cfg: TrainConfig, opt: torch.optim.Optimizer, total: int, steps_per_epoch: int):
    """A schedule stepped once per batch (`total` steps in all), so every kind resumes from the same counter."""
    if cfg.schedule == "onecycle":
        return torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=cfg.lr, total_steps=total, pct_start=cfg.warmup)
    if cfg.schedule == "cosine":
        return torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=total)
    if cfg.schedule == "step":
        return torch.optim.lr_scheduler.StepLR(opt, step_size=cfg.step_epochs * steps_per_epoch, gamma=cfg.gamma)
    return torch.optim.lr_scheduler.LambdaLR(opt, lambda step: 1.0)


@dataclass
class LoopResult:
    history: list[dict[str, Any]]  # one row per epoch, METRIC_FIELDS
    best: dict[str, Any]  # {"score": the kept epoch's val accuracy (or -train loss), "epoch": it (0: none)}
    diverged: str | None  # why training diverged, else None
    reached: dict[str, Any] = field(default_factory=dict)  # what `check` returned when it stopped the run
    steps: int = 0  # optimiser steps taken in this call


def train_loop(model: nn.Module, data: Batches, loss: Loss, cfg: TrainConfig, *, out: str | Path | None = None,
               resume: bool = False, meta: dict[str, Any] | None = None,
               validate: Callable[[nn.Module], tuple[float, float]] | None = None,
               check: Callable[[float, float], dict[str, Any] | None] | None = None,
               max_steps: int = 0, forward: nn.Module | None = None, progress: bool = True,
               log: Callable[[str], None] = print, desc: str = "",
               on_epoch: Callable[[dict[str, Any]], None] | None = None) -> LoopResult:
    """Train `model` in place on `data` with `loss` for cfg.epochs epochs (or max_steps optimiser steps).

    Optimiser, schedule, patience, keep and divergence come from cfg (a TrainConfig); the shuffling
    generator is seeded with cfg.seed (the caller seeds torch's global RNG before building the model).
    validate(model) -> (val loss, val accuracy) runs after each epoch. check(epochs done, seconds
    trained) -> a dict to stop the run (a target reached) or None: it runs every cfg.check_every steps
    and at each epoch end. With a run folder `out`, every epoch rewrites metrics.csv and state.pt and
    the kept epoch's checkpoint (`meta` plus its epoch); resume=True continues from out/state.pt.
    `forward` is the module that runs the batches (a torch.compile of model), model by default.
    on_epoch(row) sees each epoch's metrics row once it is saved; an exception it raises (a study
    pruning a hopeless trial) ends the run there and reaches the caller."""
    forward = forward if forward is not None else model
    out = Path(out) if out is not None else None
    opt = make_optimizer(cfg, model.parameters())
    total = max_steps or cfg.epochs * data.steps
    epochs = math.ceil(total / data.steps)
    sched = make_scheduler(cfg, opt, total, data.steps)
    gen = torch.Generator().manual_seed(cfg.seed)
    history: list[dict[str, Any]] = []
    best: dict[str, Any] = {"score": -math.inf, "epoch": 0}
    stale, ref_loss = 0, []
    if resume and out is not None and (out / STATE).is_file():
        state = load_state(out / STATE)
        model.load_state_dict(state["model"])
        opt.load_state_dict(state["optimizer"])
        sched.load_state_dict(state["scheduler"])
        gen.set_state(state["generator"])
        torch.set_rng_state(state["torch_rng"])
        history, best, stale, ref_loss = state["history"], state["best"], state["stale"], state["ref_loss"]
        best.setdefault("score", best.pop("val_accuracy", -math.inf))  # a state written before `keep` existed
        log(f"resuming after epoch {len(history)} of {epochs}")
    if out is not None:
        write_csv(out / "metrics.csv", METRIC_FIELDS, history)
    result = LoopResult(history=history, best=best, diverged=None)
    bar = tqdm(total=total, initial=min(total, len(history) * data.steps), disable=not progress, unit="batch",
               desc=desc, dynamic_ncols=True, leave=False)
    try:
        for epoch in range(len(history) + 1, epochs + 1):
            if best["epoch"] and cfg.patience and stale >= cfg.patience:
                log(f"early stopping: no better val accuracy for {cfg.patience} epochs")
                break
            t0 = time.perf_counter()
            trained = sum(r["seconds"] for r in history)
            limit = min(data.steps, total - (epoch - 1) * data.steps)

            def check_at(step: int) -> bool:
                if not result.reached and (reached := check(epoch - 1 + step / data.steps,
                                                            trained + time.perf_counter() - t0)):
                    result.reached = reached
                return bool(result.reached)

            train_loss, train_acc, steps, checked = _epoch(forward, opt, sched, data.epoch(gen), limit, cfg, loss,
                                                           epoch, ref_loss, bar, check_at if check else None)
            result.steps += steps
            if check and not checked:
                check_at(steps)  # the end of an epoch is always a check point
            val = validate(model) if validate is not None else None
            row = {"epoch": epoch, "train_loss": train_loss, "train_accuracy": train_acc,
                   "val_loss": val[0] if val else None, "val_accuracy": val[1] if val else None,
                   "lr": opt.param_groups[0]["lr"], "seconds": time.perf_counter() - t0}
            history.append(row)
            score = val[1] if val else -train_loss
            improved = score > best["score"]
            stale = 0 if improved else stale + 1
            if improved or result.reached or cfg.keep == "last":  # the model that reached a target is kept
                best.update(score=max(score, best["score"]), epoch=epoch)
                if out is not None:
                    save_checkpoint(out, model, {**(meta or {}), "epoch": epoch})
            if out is not None:
                write_csv(out / "metrics.csv", METRIC_FIELDS, history)
                save_state(out / STATE, {
                    "model": model.state_dict(), "optimizer": opt.state_dict(), "scheduler": sched.state_dict(),
                    "generator": gen.get_state(), "torch_rng": torch.get_rng_state(), "history": history,
                    "best": best, "stale": stale, "ref_loss": ref_loss})
            acc = "" if train_acc is None else f" acc {train_acc:.4f}"
            val_text = f"val loss {val[0]:.4f} acc {val[1]:.4f}" if val else "no val split"
            msg = f"epoch {epoch:>3}/{epochs}  train loss {train_loss:.4f}{acc}  {val_text}  {row['seconds']:.1f}s"
            bar.write(msg) if progress else log(msg)
            if on_epoch is not None:
                on_epoch(row)
            if result.reached:
                break
    except Diverged as e:
        result.diverged = str(e)
        log(f"error: {e}")
    finally:
        bar.close()
    return result


def _epoch(model: nn.Module, opt: torch.optim.Optimizer, sched, batches: Iterator, limit: int, cfg: TrainConfig,
           loss_fn: Loss, epoch: int, ref_loss: list, bar, check: Callable[[int], bool] | None):
    """Up to `limit` steps over `batches` -> (mean loss, accuracy or None, steps taken, whether `check` ran
    at the last step). Raises Diverged.

    Loss and accuracy are summed on the tensor side and read once per LOSS_CHECK_EVERY steps, so the
    hot loop does no per-step host work beyond the optimiser step."""
    model.train()
    loss_sum, correct, seen, counted = torch.zeros(()), torch.zeros((), dtype=torch.long), 0, True
    step, checked = 0, False
    for step, batch in enumerate(batches, 1):
        loss, n, right = loss_fn(model, batch)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        if cfg.clip_grad:
            nn.utils.clip_grad_norm_(model.parameters(), cfg.clip_grad)
        opt.step()
        sched.step()
        with torch.no_grad():
            loss_sum += loss.detach() * n
            if right is None:
                counted = False
            else:
                correct += right
        seen += n
        bar.update()
        if step == 1 or step % LOSS_CHECK_EVERY == 0:
            value = loss.item()
            if not ref_loss:
                ref_loss.append(max(value, loss_fn.chance))
            if not math.isfinite(value) or value > cfg.diverge_factor * ref_loss[0]:
                raise Diverged(f"training diverged at epoch {epoch} (batch {step}): loss {value:.4g} "
                               f"with lr {cfg.lr:g}; try a lower --lr")
            bar.set_postfix(epoch=epoch, loss=f"{value:.3f}", refresh=False)
        checked = check is not None and cfg.check_every > 0 and step % cfg.check_every == 0
        if checked and check(step):
            break
        if step >= limit:
            break
    mean_loss = loss_sum.item() / max(seen, 1)
    if not math.isfinite(mean_loss) or (ref_loss and mean_loss > cfg.diverge_factor * ref_loss[0]):
        raise Diverged(f"training diverged at epoch {epoch}: loss {mean_loss:.4g} with lr {cfg.lr:g}; "
                       f"try a lower --lr")
    return mean_loss, correct.item() / max(seen, 1) if counted else None, step, checked


def open_run(cfg: Any, out_dir: str | Path | None, resume: bool, cls: type, default: Path | None = None,
             ) -> tuple[Any, Path]:
    """The config and folder of a new run (cfg, else cls()), or of the run to resume, whose saved
    config.json wins (a cfg given with resume must equal it); cls is a frozen config dataclass with
    to_dict() and from_dict()."""
    if not resume:
        cfg = cfg if cfg is not None else cls()
        out = Path(out_dir) if out_dir else default
        if out is None:
            raise ConfigError("a run folder is needed (--out DIR)")
        if (out / "config.json").exists():
            raise ConfigError(f"{out}: already holds a run; pass --resume to continue it or choose another --out")
        return cfg, out
    if out_dir is None:
        raise ConfigError("resume needs the run folder (--out DIR)")
    out = Path(out_dir)
    if not (out / "config.json").is_file():
        raise ConfigError(f"{out}: no run to resume (config.json missing)")
    saved = cls.from_dict(json.loads((out / "config.json").read_text()))
    if cfg is not None and cfg != saved:
        raise ConfigError(f"{out}: the given config differs from the run's saved config.json")
    return saved, out


def write_config(out: Path, cfg: Any) -> None:
    out.mkdir(parents=True, exist_ok=True)
    write_text(out / "config.json", json.dumps(cfg.to_dict(), indent=2))


@dataclass(frozen=True)
class Calibration:
    temperature: float  # softmax(logits / temperature) is calibrated on the held-out images
    logit_reference: float  # a real digit's typical top logit (calibrate.logit_reference)
    errors: int  # misread held-out images the temperature was fitted on
    logits: torch.Tensor = field(repr=False)  # (N, C) of the held-out images, uncalibrated


def calibrate(model: nn.Module, images: torch.Tensor, labels: torch.Tensor, norm: Normalization,
              log: Callable[[str], None] = print, batch_size: int = 1024) -> Calibration:
    """Temperature scaling on held-out images (uint8 (N, 28, 28), labels (N,)), for every checkpoint that
    gives calibrated confidences (a classifier, an ensemble, a verifier); a note when it was fitted on too
    few misread images to say much."""
    logits = predict_logits(model, images, norm, batch_size)
    errors = int((logits.argmax(1) != labels).sum())
    if note := calibration_note(errors):
        log(f"note: {note}")
    return Calibration(fit_temperature(logits, labels), logit_reference(logits), errors, logits)


def train_steps(model: nn.Module, images: torch.Tensor, labels: torch.Tensor, cfg: TrainConfig, steps: int, *,
                norm: Normalization, num_classes: int, indices: torch.Tensor | None = None,
                weights: dict[str, torch.Tensor] | None = None, loss: Loss | None = None,
                check: Callable[[float, float], dict[str, Any] | None] | None = None,
                progress: bool = False, desc: str = "") -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
    """`steps` optimiser steps of the one loop on images[indices] (uint8 (N, 28, 28), int64 labels), from
    `weights` (else the model's own), with no run folder: a federated client's local round, a fold.
    Optimiser, schedule (over these steps), batch size, augmentation, label smoothing and seed come from
    cfg. Returns the new weights (a copy) and {"steps", "epochs", "train_loss", "train_accuracy", "diverged"}
    (loss and accuracy: means over the last, perhaps partial, pass over the images). `loss` replaces the
    cross-entropy (a federated client's proximal term); `check` is train_loop's, every cfg.check_every steps;
    progress: a progress bar of the steps, labelled `desc`."""
    if steps < 1:
        raise ConfigError(f"steps must be >= 1, got {steps}")
    if weights is not None:
        model.load_state_dict(weights)
    if indices is not None:
        images, labels = images[indices], labels[indices]
    if len(images) == 0:
        raise ConfigError("no images to train on")
    torch.manual_seed(cfg.seed)
    data = ImageBatches(images, labels, norm, cfg.batch_size, parse_augment(cfg.augment) if cfg.augment else None)
    result = train_loop(model, data, loss or ClassificationLoss(num_classes, cfg.label_smoothing), cfg,
                        max_steps=steps, check=check, progress=progress, desc=desc, log=lambda s: None)
    last = result.history[-1] if result.history else {}
    metrics = {"steps": result.steps, "epochs": len(result.history), "diverged": result.diverged,
               "train_loss": last.get("train_loss"), "train_accuracy": last.get("train_accuracy")}
    return {k: v.detach().clone() for k, v in model.state_dict().items()}, metrics
