"""Training: config, presets, the trainer, evaluation, checkpoints, ensembles and run listings."""

from digitlab.train.checkpoint import Checkpoint, load_checkpoint, save_checkpoint
from digitlab.train.config import TrainConfig
from digitlab.train.ensemble import build_ensemble
from digitlab.train.evaluate import Evaluation, evaluate, predict_logits
from digitlab.train.presets import PRESETS, Preset, get_preset
from digitlab.train.runs import format_runs, list_runs
from digitlab.train.trainer import fit, prepare_data

__all__ = ["Checkpoint", "Evaluation", "PRESETS", "Preset", "TrainConfig", "build_ensemble", "evaluate", "fit",
           "format_runs", "get_preset", "list_runs", "load_checkpoint", "predict_logits", "prepare_data",
           "save_checkpoint"]
