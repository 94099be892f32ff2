"""Datasets as uint8 tensors in memory, the shared preprocessing, splits and batch augmentation.

Importing this package reads and downloads nothing, and imports nothing heavy: each name loads its
module (and torch) when first used.
"""

from importlib import import_module

_API = {
    "Augment": "augment", "parse_augment": "augment", "DigitDataset": "dataset", "IdxError": "idx",
    "read_idx": "idx", "dataset_status": "load", "load_dataset": "load", "resolve_cache_dir": "paths",
    "resolve_data_dir": "paths", "Normalization": "preprocess", "load_image": "preprocess",
    "mnist_style": "preprocess", "normalize": "preprocess", "to_model_input": "preprocess", "to_unit": "preprocess",
    "DatasetSpec": "registry", "RemoteFile": "registry", "get_spec": "registry", "list_datasets": "registry",
    "kfold_split": "splits", "ratio_split": "splits",
}
_ALIASES = {"augment_from_string": "parse_augment"}
__all__ = sorted([*_API, *_ALIASES])


def __getattr__(name: str):
    target = _ALIASES.get(name, name)
    if target in _API:
        return getattr(import_module(f"digitlab.data.{_API[target]}"), target)
    raise AttributeError(f"module 'digitlab.data' has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted({*globals(), *__all__})
