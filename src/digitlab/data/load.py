"""Find, fetch and read a dataset split into a ``DigitDataset``."""

from __future__ import annotations

from collections.abc import Callable
from os import PathLike
from pathlib import Path

import numpy as np
import torch

from digitlab.data.dataset import DigitDataset
from digitlab.data.download import fetch, mirror_list
from digitlab.data.idx import read_idx
from digitlab.data.paths import resolve_data_dir
from digitlab.data.preprocess import CANVAS, digit_input, ink_is_dark
from digitlab.data.registry import DatasetSpec, RemoteFile, check_split, get_spec
from digitlab.data.tibetan import load_tibetan_folder
from digitlab.errors import DatasetError


def dataset_status(name: str, data_dir: str | PathLike | None = None) -> dict[str, dict]:
    """split -> {"present", "path" (folder found, or where the files belong), "size" (expected examples), "missing"}."""
    spec = get_spec(name)
    root = resolve_data_dir(data_dir)
    status = {}
    for split, size in spec.splits.items():
        if spec.source == "sklearn-digits":
            present, path, missing = True, "sklearn.datasets.load_digits", []
        elif spec.source == "tibetan":
            folder = root / spec.folder
            present = folder.is_dir() and any(p.suffix.lower() in (".jpg", ".jpeg") for p in folder.iterdir())
            path, missing = str(folder), ([] if present else [f"{spec.folder}/*.jpg"])
        else:
            folder, absent = _locate(spec, split, root)
            present, path, missing = not absent, str(folder), [f.name for f in absent]
        status[split] = {"present": present, "path": path, "size": size, "missing": missing}
    return status


def load_dataset(name: str, split: str, data_dir: str | PathLike | None = None,
                 download: bool = False, progress: bool = False) -> DigitDataset:
    """Read one split into memory; with download=True, fetch missing files from the spec's mirrors first."""
    spec = get_spec(name)
    check_split(spec, split)
    images, labels = _READERS[spec.source](spec, split, resolve_data_dir(data_dir), download, progress)
    if labels.size and (labels.min() < 0 or labels.max() >= len(spec.classes)):
        raise DatasetError(f"{spec.name}/{split}: labels outside 0..{len(spec.classes) - 1}")
    return DigitDataset(spec.name, split, torch.from_numpy(images), torch.from_numpy(labels.astype(np.int64)))


def _search_dirs(spec: DatasetSpec, root: Path) -> list[Path]:
    return [root / spec.folder, *map(Path, spec.extra_dirs)]


def _locate(spec: DatasetSpec, split: str, root: Path) -> tuple[Path, list[RemoteFile]]:
    """The first folder that holds every file of the split, or the data-root folder and what it lacks."""
    files = spec.files[split]
    dirs = _search_dirs(spec, root)
    for d in dirs:
        if all((d / f.name).is_file() for f in files):
            return d, []
    return dirs[0], [f for f in files if not (dirs[0] / f.name).is_file()]


def _ensure_files(spec: DatasetSpec, split: str, root: Path, download: bool, progress: bool) -> Path:
    folder, missing = _locate(spec, split, root)
    if not missing:
        return folder
    listed = ", ".join(f"{f.name} ({_checksum(f)})" for f in missing)
    also = ", ".join(str(d) for d in _search_dirs(spec, root)[1:])
    where = f"{folder}" + (f" (also looked in {also})" if also else "")
    if not spec.mirrors:
        names = ", ".join(f.name for f in missing)
        howto = f" ({_HOWTO[spec.name]})" if spec.name in _HOWTO else ""
        raise DatasetError(f"{spec.name}/{split}: missing {listed} in {where}; {spec.name} has no official mirror: "
                           f"get {names} yourself and put it there{howto}")
    if not download:
        raise DatasetError(f"{spec.name}/{split}: missing {listed} in {where}; put the files there, "
                           f"or pass download=True (--download) to fetch them from {spec.mirrors[0]}")
    for f in missing:
        fetch(f, folder, mirror_list(spec.mirrors), progress)
    return folder


def _checksum(f: RemoteFile) -> str:
    if f.sha256:
        return f"sha256 {f.sha256}"
    return f"sha256 unknown, md5 {f.md5}" if f.md5 else "no known checksum"


_HOWTO = {
    "usps": "the common HDF5 layout: groups train/test, each with data (N x 256 floats in [0, 1], 16x16) "
            "and target (N,), e.g. kaggle.com/datasets/bistaumanga/usps-dataset",
}


def _read_idx_split(spec: DatasetSpec, split: str, root: Path, download: bool, progress: bool):
    folder = _ensure_files(spec, split, root, download, progress)
    image_file, label_file = (folder / f.name for f in spec.files[split])
    images, labels = read_idx(image_file, ndim=3), read_idx(label_file, ndim=1)
    if images.dtype != np.uint8 or images.shape[1:] != (CANVAS, CANVAS):
        raise DatasetError(f"{image_file}: expected uint8 {CANVAS}x{CANVAS} images, "
                           f"got {images.dtype} {images.shape[1:]}")
    expected = spec.splits[split]
    for path, n in ((image_file, len(images)), (label_file, len(labels))):
        if n != expected:
            raise DatasetError(f"{path}: holds {n} items, {spec.name}/{split} has {expected}")
    return images, labels


def _read_tibetan(spec: DatasetSpec, split: str, root: Path, download: bool, progress: bool):
    folder = root / spec.folder
    if not folder.is_dir():
        raise DatasetError(f"{spec.name}/{split}: folder {folder} not found; put the 17768 TibetanMnist JPEGs there "
                           f"(github.com/bat67/TibetanMNIST, Datasets/TibetanMnist); it has no download mirror")
    return load_tibetan_folder(folder, progress)


def _read_usps(spec: DatasetSpec, split: str, root: Path, download: bool, progress: bool):
    import h5py  # only USPS needs it

    path = _ensure_files(spec, split, root, download, progress) / spec.files[split][0].name
    try:
        with h5py.File(path, "r") as f:
            data = np.asarray(f[split]["data"], dtype=np.float64)
            target = np.asarray(f[split]["target"])
    except OSError as e:
        raise DatasetError(f"{path}: not a readable HDF5 file ({e})".replace("\n", " ")) from None
    except KeyError:
        raise DatasetError(f"{path}: no {split}/data and {split}/target datasets "
                           "(expected the common usps.h5 layout)") from None
    if data.ndim != 2 or data.shape[1] != 256 or len(target) != len(data):
        raise DatasetError(f"{path}: {split}/data is {data.shape} with {len(target)} targets, expected (N, 256) and N")
    if data.min(initial=0) < 0:  # some copies keep the original [-1, 1] scale
        data = (data + 1) / 2
    gray = np.clip(data * 255, 0, 255).round().astype(np.uint8).reshape(-1, 16, 16)
    return _mnist_style_all(gray, path), target.astype(np.int64).ravel()


def _read_sklearn_digits(spec: DatasetSpec, split: str, root: Path, download: bool, progress: bool):
    from sklearn.datasets import load_digits  # bundled with scikit-learn: no files, no network

    digits = load_digits()
    gray = (digits.images * (255 / 16)).round().astype(np.uint8)  # (1797, 8, 8), values 0..16
    return _mnist_style_all(gray, "sklearn digits"), digits.target.astype(np.int64)


def _mnist_style_all(gray: np.ndarray, source) -> np.ndarray:
    """(N, h, w) uint8 -> (N, 28, 28) through digit_input, the pixel values kept (flat); the polarity is
    decided once for the whole set, by the majority of ink_is_dark's answers on its images."""
    dark = 2 * sum(ink_is_dark(g) for g in gray) > len(gray)
    out = np.empty((len(gray), CANVAS, CANVAS), np.uint8)
    for i, g in enumerate(gray):
        try:
            out[i] = digit_input(g, dark_ink=dark, flat=True)
        except DatasetError as e:
            raise DatasetError(f"{source}: image {i}: {e}") from None
    return out


_READERS: dict[str, Callable] = {
    "idx": _read_idx_split,
    "tibetan": _read_tibetan,
    "usps": _read_usps,
    "sklearn-digits": _read_sklearn_digits,
}
