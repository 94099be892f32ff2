"""Datasets as uint8 tensors in memory, the shared preprocessing, splits and batch augmentation.

Importing this package reads and downloads nothing.
"""

from digitlab.data.augment import Augment, parse_augment
from digitlab.data.dataset import DigitDataset
from digitlab.data.idx import IdxError, read_idx
from digitlab.data.load import dataset_status, load_dataset
from digitlab.data.paths import resolve_cache_dir, resolve_data_dir
from digitlab.data.preprocess import Normalization, load_image, mnist_style, normalize, to_model_input, to_unit
from digitlab.data.registry import DatasetSpec, RemoteFile, get_spec, list_datasets
from digitlab.data.splits import kfold_split, ratio_split

augment_from_string = parse_augment

__all__ = [
    "Augment", "DatasetSpec", "DigitDataset", "IdxError", "Normalization", "RemoteFile",
    "augment_from_string", "dataset_status", "get_spec", "kfold_split", "list_datasets", "load_dataset",
    "load_image", "mnist_style", "normalize", "parse_augment", "ratio_split", "read_idx",
    "resolve_cache_dir", "resolve_data_dir", "to_model_input", "to_unit",
]
