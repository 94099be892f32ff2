"""digitlab: handwritten digit recognition — datasets, model zoo, trainer and tools.

The main entry points are importable from here; they load lazily, so `import digitlab` stays cheap::

    import digitlab
    cfg = digitlab.get_preset("lenet5-classic").config(data_dir="../shared/datasets")
    summary = digitlab.fit(cfg, "runs/lenet5")
    digitlab.predict(["seven.png"], "runs/lenet5")
"""

from importlib import import_module

__version__ = "0.1.0"

_API = {
    "load_dataset": "digitlab.data", "list_datasets": "digitlab.data", "dataset_status": "digitlab.data",
    "load_image": "digitlab.data", "to_model_input": "digitlab.data",
    "create_model": "digitlab.models", "list_models": "digitlab.models", "model_info": "digitlab.models",
    "TrainConfig": "digitlab.train", "fit": "digitlab.train", "get_preset": "digitlab.train",
    "PRESETS": "digitlab.train", "load_checkpoint": "digitlab.checkpoint", "list_runs": "digitlab.train",
    "build_ensemble": "digitlab.train",
    "predict": "digitlab.infer", "evaluate_checkpoint": "digitlab.infer",
}
__all__ = ["__version__", *_API]


def __getattr__(name: str):
    if name in _API:
        return getattr(import_module(_API[name]), name)
    raise AttributeError(f"module 'digitlab' has no attribute {name!r}")
