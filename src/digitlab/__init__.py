"""digitlab: handwritten digit recognition — datasets, model zoo, trainer and tools.

The main entry points are importable from here; they load lazily, so `import digitlab` stays cheap::

    import digitlab
    digitlab.read("meter.jpg").text                       # digit strings, with the bundled MNIST reader
    digitlab.predict(["seven.png"])                       # single digits: labels and probabilities
    cfg = digitlab.get_preset("lenet5-classic").config(data_dir="../shared/datasets")
    summary = digitlab.fit(cfg, "runs/lenet5")
    digitlab.predict(["seven.png"], "runs/lenet5")        # with your own run
    digitlab.evaluate_checkpoint("runs/lenet5")           # on its dataset's test split
    digitlab.cross_validate(cfg, "runs/cv", folds=10)     # also sweep, grid, search, compare, write_report
    digitlab.federate(cfg, digitlab.FedConfig(clients=2, rounds=3), "runs/fl")  # Flower, simulated here
    digitlab.export_onnx("runs/lenet5", "lenet5.onnx")    # ONNX, checked against PyTorch on test images
    digitlab.Recognizer("runs/lenet5").predict(images)    # ONNX Runtime (or backend="torch"), calibrated
    digitlab.quantize("runs/lenet5", "lenet5-int8.onnx")  # int8 through ONNX Runtime, checked on test images
    digitlab.prune("runs/lenet5", "runs/lenet5-pruned", digitlab.PruneConfig(amount=0.9))  # and fine-tuned
    digitlab.bench(["runs/lenet5", "runs/lenet5-pruned"])  # size, accuracy, images/s in each format

`digitlab.read` is both the package of the reading pipeline (digitlab.read.ReadConfig, ...) and its
`read` function: calling it reads an image.
"""

from importlib import import_module

__version__ = "0.1.0"

_API = {
    "read": "digitlab.read", "ReadConfig": "digitlab.read",
    "predict": "digitlab.infer", "evaluate_checkpoint": "digitlab.infer",
    "fit": "digitlab.train", "TrainConfig": "digitlab.train", "get_preset": "digitlab.train",
    "PRESETS": "digitlab.train", "list_runs": "digitlab.train", "build_ensemble": "digitlab.train",
    "train_steps": "digitlab.train",
    "cross_validate": "digitlab.experiments", "sweep": "digitlab.experiments", "grid": "digitlab.experiments",
    "search": "digitlab.experiments", "compare": "digitlab.experiments", "write_report": "digitlab.experiments",
    "federate": "digitlab.federated", "FedConfig": "digitlab.federated", "partition_indices": "digitlab.federated",
    "load_checkpoint": "digitlab.checkpoint", "export_onnx": "digitlab.export",
    "Recognizer": "digitlab.engine",
    "quantize": "digitlab.compress", "prune": "digitlab.compress", "PruneConfig": "digitlab.compress",
    "bench": "digitlab.bench",
    "load_dataset": "digitlab.data", "list_datasets": "digitlab.data", "dataset_status": "digitlab.data",
    "load_image": "digitlab.data", "to_model_input": "digitlab.data",
    "create_model": "digitlab.models", "list_models": "digitlab.models", "model_info": "digitlab.models",
}
__all__ = ["__version__", *_API]


def __getattr__(name: str):
    if name == "read":  # the subpackage, which is callable: digitlab.read(image) reads it
        return import_module("digitlab.read")
    if name in _API:
        return getattr(import_module(_API[name]), name)
    raise AttributeError(f"module 'digitlab' has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted({*globals(), *_API})
