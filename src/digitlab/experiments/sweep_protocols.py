"""Named sweeps and grids: the published protocols, ready to run (torch-free: the CLI lists them)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from digitlab.errors import ConfigError, close_match


def arange(start: float, stop: float, step: float) -> list[float]:
    """start, start+step, ... up to stop inclusive, rounded so that 0.005:0.195:0.005 gives 39 values."""
    n = int(round((stop - start) / step)) + 1
    return [round(start + i * step, 10) for i in range(n)]


@dataclass(frozen=True)
class SweepProtocol:
    name: str
    description: str
    preset: str  # the TrainConfig every point starts from
    overrides: dict[str, Any] = field(default_factory=dict)  # on top of the preset
    vary: dict[str, list[Any]] = field(default_factory=dict)  # one-factor sweeps: factor -> values
    grid: dict[str, list[Any]] = field(default_factory=dict)  # a grid: axis -> values
    folds: int = 0  # k-fold cross-validation of each point (0: the preset's train/val split)
    published: str = ""


SWEEPS: dict[str, SweepProtocol] = {p.name: p for p in [
    SweepProtocol(
        name="rescnn-sgd",
        description="one-factor sensitivity of the residual CNN with SGD: epochs, batch size, learning rate and "
                    "momentum, each varied with the others at the preset's values",
        preset="rescnn-sgd",
        vary={"epochs": [5, 10, 15], "batch_size": [16, 64, 128, 256], "lr": [0.005, 0.01, 0.1, 0.3],
              "momentum": [0.3, 0.5, 0.7]},
        published="lr 0.3 diverges; epochs and momentum matter little",
    ),
    SweepProtocol(
        name="rescnn-grid",
        description="the published grid: batch size 32..256 step 32 x lr 0.005..0.195 step 0.005, 10-fold "
                    "cross-validation of each cell (8 x 39 x 10 = 3,120 trainings): run it on many machines "
                    "with a shared --storage and --study",
        preset="rescnn-sgd",
        grid={"batch_size": list(range(32, 257, 32)), "lr": arange(0.005, 0.195, 0.005)},
        folds=10,
        published="mean train/val loss per batch size over lr 0.005..0.195; batch 32 diverging",
    ),
    SweepProtocol(
        name="rescnn-grid-small",
        description="a reduced rescnn-grid for one 2-core machine (budget: half an hour): batch 32, "
                    "96, 160, 256 x lr 0.005, 0.05, 0.1, 0.15, 0.195, 3-fold cross-validation, 2 epochs on "
                    "12,000 images of each fold's training part",
        preset="rescnn-sgd",
        overrides={"epochs": 2, "limit": 12000},
        grid={"batch_size": [32, 96, 160, 256], "lr": [0.005, 0.05, 0.1, 0.15, 0.195]},
        folds=3,
        published="the shape of rescnn-grid at a tenth of the cost per cell",
    ),
]}


def get_sweep(name: str) -> SweepProtocol:
    if name not in SWEEPS:
        raise ConfigError(f"unknown sweep protocol {name!r}{close_match(name, SWEEPS)}")
    return SWEEPS[name]
