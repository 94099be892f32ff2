"""Ensembles of finished runs: their logits averaged, calibrated on the validation split they share.

Runs of different seeds misread different digits, so the mean of their logits misreads fewer (three
mnist-best runs: see the README). The members must hold out the same validation images (train them
with the same --split and --split-seed), or the temperature would be fitted on digits some member
learnt. The result is a checkpoint folder like a run's: model.json + model.safetensors (every
member's weights), with the temperature and logit reference that `read` uses, and splits.npz.
"""

from __future__ import annotations

import json
import shutil
from collections.abc import Callable, Sequence
from os import PathLike
from pathlib import Path
from typing import Any

import numpy as np
import torch

from digitlab.atomic import write_text
from digitlab.checkpoint import load_checkpoint, model_meta, resolve, save_checkpoint
from digitlab.errors import ConfigError
from digitlab.infer import evaluate, score_logits
from digitlab.models.ensemble import NAME, Ensemble
from digitlab.train.config import TrainConfig
from digitlab.train.loop import calibrate
from digitlab.train.trainer import prepare_data

SPLITS = "splits.npz"


def build_ensemble(runs: Sequence[str | PathLike], out: str | PathLike, data_dir: str | PathLike | None = None,
                   log: Callable[[str], None] = print) -> dict[str, Any]:
    """Average the logits of the runs' models; fit the temperature and logit reference on their shared
    validation split, test every member and the ensemble, save the ensemble to `out` and return
    its summary (also written to out/summary.json)."""
    if len(runs) < 2:
        raise ConfigError("an ensemble needs at least two runs")
    folders = [resolve(r)[0].parent for r in runs]
    ckpts = [load_checkpoint(r) for r in runs]
    first = ckpts[0].meta
    for run, ckpt in zip(runs[1:], ckpts[1:]):
        for key in ("dataset", "classes", "normalization", "input_size"):
            if ckpt.meta.get(key) != first.get(key):
                raise ConfigError(f"{run}: its {key} ({ckpt.meta.get(key)}) differs from {runs[0]}'s "
                                  f"({first.get(key)}); an ensemble's members read the same images")
    held = [_held_out(folder) for folder in folders]
    for run, h in zip(runs[1:], held[1:]):
        if not all(np.array_equal(h[k], held[0][k]) for k in ("val", "test")):
            raise ConfigError(f"{run} holds out other images than {runs[0]}: train the members with the same "
                              f"--split and --split-seed")
    if len(held[0]["val"]) == 0:
        raise ConfigError(f"{runs[0]}: no validation split to calibrate the ensemble on (train with --split 11:1)")
    if "config" not in first:
        raise ConfigError(f"{runs[0]}: the checkpoint does not record its training config")
    cfg = TrainConfig.from_dict(first["config"])
    if data_dir is not None:
        cfg = cfg.replace(data_dir=str(data_dir))
    data = prepare_data(cfg)
    if not np.array_equal(data.indices["val"], held[0]["val"]):
        raise ConfigError(f"{runs[0]}: its splits.npz does not match the split its config cuts")

    members = [{"model": c.meta["model"], "model_args": c.meta["model_args"]} for c in ckpts]
    model = Ensemble(members, in_channels=first["input_size"][0], num_classes=len(first["classes"]))
    for member, ckpt in zip(model.members, ckpts):
        member.load_state_dict(ckpt.model.state_dict())
    model.eval()
    norm, n = ckpts[0].normalization, len(first["classes"])
    log(f"{len(ckpts)} members; calibrating on {len(data.val):,} validation images, testing on {len(data.test):,}")
    cal = calibrate(model, data.val.images, data.val.labels, norm, log)
    temperature, reference, val_errors = cal.temperature, cal.logit_reference, cal.errors
    member_tests = [evaluate(c.model, data.test, norm, n) for c in ckpts]
    # the ensemble's logits are its members' mean: no second pass over the test set
    test = score_logits(torch.stack([e.logits for e in member_tests]).mean(0), data.test.labels, n)
    metrics = {"val_accuracy": 1 - val_errors / len(data.val), "test_accuracy": test.accuracy,
               "test_loss": test.loss, "test_ece_calibrated": test.calibration_error(temperature),
               "member_test_accuracy": [e.accuracy for e in member_tests]}
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    meta = model_meta(NAME, {"members": members}, first["dataset"], first["classes"], norm,
                      members=[str(f) for f in folders], temperature=temperature, temperature_val_errors=val_errors,
                      logit_reference=reference, metrics=metrics)
    save_checkpoint(out, model, meta)
    shutil.copyfile(folders[0] / SPLITS, out / SPLITS)
    summary = {"model": NAME, "dataset": first["dataset"], "members": [str(f) for f in folders], **metrics,
               "temperature": temperature, "temperature_val_errors": val_errors}
    write_text(out / "summary.json", json.dumps(summary, indent=2))
    return summary


def _held_out(folder: Path) -> dict[str, np.ndarray]:
    try:
        with np.load(folder / SPLITS) as f:
            return {k: f[k] for k in ("val", "test")}
    except (OSError, KeyError, ValueError):
        raise ConfigError(f"{folder}: not a finished run folder ({SPLITS} with its val and test indices "
                          f"is missing or unreadable)") from None
