"""What the reader's trained helpers (the verifier, the line reader, the field reader) share around their
training: the run folder, opened new or resumed; the weights an ``init`` starts from; and the training
data, drawn once from training digits (``synth.training_digits``) and kept in the folder, so that a
resumed run trains on the same data.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from os import PathLike
from pathlib import Path
from typing import Any

import numpy as np
import torch

from digitlab.atomic import load_arrays, save_arrays
from digitlab.checkpoint import Checkpoint
from digitlab.errors import ConfigError
from digitlab.models.linereader import LINE_HEIGHT
from digitlab.read import synth


def open_helper_run(cfg: Any, out_dir: str | Path, resume: bool, cls: type,
                    load_init: Callable[[str], Checkpoint] | None = None) -> tuple[Any, Path, Checkpoint | None]:
    """(config, run folder, checkpoint to start from) of a helper's new or resumed run (train.loop.open_run),
    with torch's threads set from cfg.threads. With load_init and cfg.init, the helper starts from that
    checkpoint, whose network size (width, hidden, and a field reader's image height) the config takes."""
    from digitlab.train.loop import open_run

    cfg, out = open_run(cfg, out_dir, resume, cls)
    if cfg.threads:
        torch.set_num_threads(cfg.threads)
    start = None
    if load_init is not None and cfg.init:
        start = load_init(cfg.init)
        args = {"height": LINE_HEIGHT, **start.meta["model_args"]}  # readers from before --height: LINE_HEIGHT
        cfg = dataclasses.replace(cfg, **{k: args[k] for k in ("width", "hidden", "height") if hasattr(cfg, k)})
    return cfg, out, start


def drawn_data(cfg: Any, out: Path, data_dir: str | PathLike | None, resume: bool, name: str,
               draw: Callable[[np.ndarray, np.ndarray, str], dict[str, np.ndarray]], what: str,
               log: Callable[[str], None], start: Checkpoint | None = None) -> tuple[dict[str, np.ndarray], str]:
    """(arrays, dataset): the data a helper trains on. A resumed run reloads out/name when its drawing had
    finished; otherwise draw(digits, labels, dataset) makes the arrays from cfg.run's training digits (else MNIST
    train) and they are saved there, with the run's config. A start checkpoint (init) must read the same
    dataset's digits."""
    from digitlab.train.loop import write_config

    cached = load_arrays(out / name) if resume else None
    if cached is not None:
        dataset = str(cached["dataset"])
    else:
        dataset, digits, labels = synth.training_digits(cfg.run, data_dir)
    if start is not None and start.meta.get("dataset") != dataset:
        raise ConfigError(f"init: {cfg.init} reads {start.meta.get('dataset')}, but this run draws from "
                          f"{dataset} digits")
    if cached is not None:
        return cached, dataset
    if not resume:
        write_config(out, cfg)
    log(f"drawing {cfg.images} training {what} from {len(labels)} {dataset} training digits ...")
    arrays = draw(digits, labels, dataset)
    save_arrays(out / name, **arrays, dataset=np.array(dataset))
    return arrays, dataset
