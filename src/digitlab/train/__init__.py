"""Training: config, presets, the trainer, ensembles and run listings (checkpoints: digitlab.checkpoint,
inference and evaluation: digitlab.infer)."""

from digitlab.train.config import TrainConfig
from digitlab.train.ensemble import build_ensemble
from digitlab.train.presets import PRESETS, Preset, get_preset
from digitlab.train.runs import format_runs, list_runs
from digitlab.train.trainer import fit, prepare_data

__all__ = ["PRESETS", "Preset", "TrainConfig", "build_ensemble", "fit", "format_runs", "get_preset", "list_runs",
           "prepare_data"]
