"""Training: config, presets, the one training loop, the trainer, ensembles and run listings
(checkpoints: digitlab.checkpoint, inference and evaluation: digitlab.infer).

Each name loads its module (and torch) when first used, so that the command line can read the
config's fields without importing torch.
"""

from importlib import import_module

_API = {
    "TrainConfig": "config", "build_ensemble": "ensemble", "PRESETS": "presets", "Preset": "presets",
    "get_preset": "presets", "format_runs": "runs", "list_runs": "runs", "fit": "trainer", "prepare_data": "trainer",
    "train_loop": "loop", "train_steps": "loop",
}
__all__ = sorted(_API)


def __getattr__(name: str):
    if name in _API:
        return getattr(import_module(f"digitlab.train.{_API[name]}"), name)
    raise AttributeError(f"module 'digitlab.train' has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted({*globals(), *__all__})
