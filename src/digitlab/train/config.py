"""The training configuration: one frozen dataclass, validated, printed at start and saved with the run."""

from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass, field
from typing import Any

from digitlab.configs import config_from_dict
from digitlab.errors import ConfigError

OPTIMIZERS = ("sgd", "adam", "adamw")
SCHEDULES = ("constant", "step", "cosine", "onecycle")
INITS = ("default", "xavier")
KEEPS = ("best", "last")


@dataclass(frozen=True)
class TrainConfig:
    # what to train on what
    model: str = "lenet5"  # a zoo architecture (`digitlab models`)
    model_args: dict = field(default_factory=dict)  # extra constructor kwargs, e.g. {"dropout": 0.3}
    dataset: str = "mnist"  # a dataset name (`digitlab datasets`)
    data_dir: str | None = None  # None: $DIGITLAB_DATA, then the per-user cache dir
    train_split: str = "train"  # the split that train (and val) images come from
    test_split: str = "test"  # "" carves the test set out of train_split (3 ratios in `split`)
    split: tuple[float, ...] = (4.0, 1.0)  # train:val, or train:val:test when test_split == ""
    split_seed: int | None = None  # seed of that split (None: `seed`); fixed, runs of several seeds share one
    folds: int = 0  # k-fold: train/val are fold `fold` of this many stratified folds of the train pool (0: `split`)
    fold: int = 0  # with folds: which fold is the validation set, 0 .. folds-1
    limit: int = 0  # use at most this many images of each of train/val/test (0: all); quick runs
    # optimisation
    epochs: int = 10  # passes over the training images
    batch_size: int = 64  # images per optimiser step
    optimizer: str = "adam"  # sgd (with momentum), adam or adamw
    lr: float = 1e-3  # learning rate (the peak of a one-cycle schedule)
    momentum: float = 0.9  # SGD only
    weight_decay: float = 0.0  # L2 penalty (decoupled for adamw)
    schedule: str = "constant"  # how lr changes step by step: constant, step, cosine or onecycle
    step_epochs: int = 5  # schedule "step": multiply lr by gamma every this many epochs
    gamma: float = 0.1  # schedule "step": the factor lr is multiplied by
    warmup: float = 0.3  # schedule "onecycle": share of the steps over which lr rises to its peak
    clip_grad: float = 0.0  # clip the gradients' global norm to this (0: off)
    init: str = "default"  # weight initialisation: each layer's default, or xavier
    label_smoothing: float = 0.0  # share of each target spread over the other classes
    augment: str = ""  # "" off, else e.g. "rotation=10,scale=0.9:1.1,translate=0.1,elastic=8"
    patience: int = 0  # early stopping: epochs without a better val accuracy (0: off)
    keep: str = "best"  # the checkpoint kept: the epoch of best val accuracy, or the last (one-cycle runs)
    diverge_factor: float = 100.0  # loss above this many times its start value counts as diverged
    stop_at: float = 0.0  # stop once the test accuracy reaches this (0: off); a time-to-accuracy protocol
    check_every: int = 0  # with stop_at: also check the test set every this many steps (0: epoch ends only)
    # execution
    seed: int = 0  # seeds the weights, the shuffling, augmentation and dropout
    eval_batch_size: int = 1024  # images per call when validating and testing
    threads: int = 1  # torch intra-op threads (0: torch's default, every core); on a 2-core machine two
    # threads train 1.4-1.6x faster than one when nothing else runs, but 2.5-3.7x slower beside one other
    # busy process: see benchmarks/results/threads.md
    channels_last: bool = False  # NHWC memory layout for model and batches
    compile: bool = False  # torch.compile the training forward (pays off on long runs only)

    def __post_init__(self) -> None:
        for name, allowed in (("optimizer", OPTIMIZERS), ("schedule", SCHEDULES), ("init", INITS), ("keep", KEEPS)):
            if getattr(self, name) not in allowed:
                raise ConfigError(f"{name} must be one of {', '.join(allowed)}, got {getattr(self, name)!r}")
        positive = ("epochs", "batch_size", "eval_batch_size", "step_epochs")
        for name in positive:
            if getattr(self, name) < 1:
                raise ConfigError(f"{name} must be >= 1, got {getattr(self, name)}")
        if self.lr <= 0:
            raise ConfigError(f"lr must be > 0, got {self.lr}")
        if not 0 < self.warmup < 1:
            raise ConfigError(f"warmup must be in (0, 1), got {self.warmup}")
        if self.clip_grad < 0:
            raise ConfigError(f"clip_grad must be >= 0, got {self.clip_grad}")
        if not 0 <= self.label_smoothing < 1:
            raise ConfigError(f"label_smoothing must be in [0, 1), got {self.label_smoothing}")
        if self.folds and not (2 <= self.folds and 0 <= self.fold < self.folds):
            raise ConfigError(f"k-fold needs folds >= 2 and 0 <= fold < folds, got folds={self.folds} fold={self.fold}")
        if self.fold and not self.folds:
            raise ConfigError(f"fold={self.fold} needs folds (the number of folds) too")
        want = 2 if self.test_split else 3
        if len(self.split) != want or any(r < 0 for r in self.split) or self.split[0] <= 0:
            shape = "train:val" if self.test_split else "train:val:test (test_split is empty)"
            raise ConfigError(f"split must be {want} non-negative ratios {shape}, got {self.split}")
        if not self.test_split and self.split[2] <= 0:
            raise ConfigError("split needs a test ratio > 0 when test_split is empty")
        from digitlab.data.augment import parse_augment  # (here: --help imports this module, not torch)

        parse_augment(self.augment)  # a bad augment string fails here, not after the data has loaded

    @classmethod
    def from_dict(cls, values: dict[str, Any]) -> TrainConfig:
        """Build from plain values (JSON, CLI strings); unknown keys and wrong types fail clearly."""
        return config_from_dict(cls, values, "config")

    def replace(self, **changes: Any) -> TrainConfig:
        return TrainConfig.from_dict({**self.to_dict(), **changes})

    def to_dict(self) -> dict[str, Any]:
        d = dataclasses.asdict(self)
        d["split"] = list(self.split)
        return d

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), indent=2)

    def describe(self) -> str:
        return "\n".join(f"  {k:<16} {v}" for k, v in self.to_dict().items())
