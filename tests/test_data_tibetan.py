"""TibetanMNIST: decoding a folder of JPEGs, reporting bad files, and the decode cache."""

import os
import shutil
import time
import warnings
from collections import Counter
from pathlib import Path

import numpy as np
import pytest
import torch
from data_helpers import digit_cache, shifted_diff  # noqa: F401 - fixture
from PIL import Image

from digitlab.data import load_dataset, mnist_style
from digitlab.data import tibetan as tibetan_module
from digitlab.errors import DatasetError

PROVENANCE_COUNTS = [1996, 2134, 1872, 1816, 1967, 1350, 1618, 1302, 1642, 2071]
SUBDIR = Path("tibetan_mnist") / "TibetanMnist"


@pytest.fixture
def tibetan_root(shared_data_dir, tmp_path, digit_cache) -> Path:  # noqa: F811
    """A data root holding 3 real JPEGs per class, 6.jpg, one corrupt JPEG and one badly named file."""
    source = shared_data_dir / SUBDIR
    folder = tmp_path / "root" / SUBDIR
    folder.mkdir(parents=True)
    names = sorted(os.listdir(source))
    for label in range(10):
        for name in [n for n in names if n.startswith(f"{label}_")][:3]:
            shutil.copy(source / name, folder / name)
    shutil.copy(source / "6.jpg", folder / "6.jpg")
    (folder / "3_99_1.jpg").write_bytes((source / "3_10_101.jpg").read_bytes()[:400])  # cut short
    (folder / "scan_notes.jpg").write_bytes((source / "1_10_12.jpg").read_bytes())
    return tmp_path / "root"


def load_quietly(root: Path):
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        ds = load_dataset("tibetan-mnist", "all", root)
    return ds, [str(w.message) for w in caught]


def test_decode_labels_and_bad_files(tibetan_root):
    ds, messages = load_quietly(tibetan_root)
    assert len(ds) == 31 and ds.images.shape == (31, 28, 28) and ds.images.dtype == torch.uint8
    assert Counter(ds.labels.tolist()) == {**{d: 3 for d in range(10)}, 6: 4}
    assert len(messages) == 2
    assert any("3_99_1.jpg" in m and "unreadable" in m for m in messages)
    assert any("scan_notes.jpg" in m and "name" in m for m in messages)
    assert all("\n" not in m for m in messages)
    folder = tibetan_root / SUBDIR
    kept = sorted(n for n in os.listdir(folder) if n not in ("3_99_1.jpg", "scan_notes.jpg"))
    assert ds.labels.tolist() == [int(n[0]) for n in kept]  # file-name order, label from the name
    full = [mnist_style(np.asarray(Image.open(folder / n).convert("L"))) for n in kept]
    diffs = [shifted_diff(a, b) for a, b in zip(ds.images.numpy(), full)]
    assert np.median(diffs) < 3 and max(diffs) < 20  # draft-mode decode ~ full-size decode, same recipe


def test_cache_hit_does_not_decode(tibetan_root, monkeypatch, digit_cache):  # noqa: F811
    first, _ = load_quietly(tibetan_root)
    assert len(list((digit_cache / "tibetan-mnist").glob("*.npz"))) == 1
    assert not list(digit_cache.rglob("*.tmp"))  # written atomically, no leftovers

    def no_decoding(path):
        raise AssertionError(f"decoded {path} although the cache is valid")

    monkeypatch.setattr(tibetan_module, "_decode_one", no_decoding)
    start = time.perf_counter()
    second, messages = load_quietly(tibetan_root)
    assert time.perf_counter() - start < 1.0
    assert torch.equal(first.images, second.images) and torch.equal(first.labels, second.labels)
    assert len(messages) == 2  # bad files are still reported from the cache


def test_changed_folder_invalidates_cache(tibetan_root, shared_data_dir, digit_cache):  # noqa: F811
    folder = tibetan_root / SUBDIR
    base, _ = load_quietly(tibetan_root)
    shutil.copy(shared_data_dir / SUBDIR / "9_14_44.jpg", folder / "9_14_44.jpg")
    added, _ = load_quietly(tibetan_root)
    assert len(added) == len(base) + 1 and torch.bincount(added.labels)[9] == 4
    (folder / "9_14_44.jpg").unlink()
    (folder / "0_10_100.jpg").unlink()
    removed, _ = load_quietly(tibetan_root)
    assert len(removed) == len(base) - 1 and torch.bincount(removed.labels)[0] == 2
    victim = sorted(p for p in folder.iterdir() if p.name.startswith("5_"))[0]
    kept = sorted(p.name for p in folder.iterdir() if p.name not in ("3_99_1.jpg", "scan_notes.jpg"))
    index = kept.index(victim.name)
    before = removed.images[index].clone()
    victim.write_bytes((shared_data_dir / SUBDIR / "5_13_13.jpg").read_bytes())  # same name, new content
    modified, _ = load_quietly(tibetan_root)
    assert not torch.equal(modified.images[index], before)
    assert len(list((digit_cache / "tibetan-mnist").glob("*.npz"))) == 4


def test_corrupt_cache_is_rebuilt(tibetan_root, digit_cache):  # noqa: F811
    base, _ = load_quietly(tibetan_root)
    (cache_file,) = (digit_cache / "tibetan-mnist").glob("*.npz")
    cache_file.write_bytes(b"garbage")
    again, messages = load_quietly(tibetan_root)
    assert torch.equal(again.images, base.images)
    assert any("unreadable cache" in m for m in messages)


def test_missing_folder(tmp_path, digit_cache):  # noqa: F811
    with pytest.raises(DatasetError) as e:
        load_dataset("tibetan-mnist", "all", tmp_path)
    assert str(tmp_path / SUBDIR) in str(e.value) and "\n" not in str(e.value)


@pytest.mark.slow
def test_full_shared_folder(shared_data_dir, digit_cache):  # noqa: F811
    start = time.perf_counter()
    ds = load_dataset("tibetan-mnist", "all", shared_data_dir)
    first = time.perf_counter() - start
    start = time.perf_counter()
    again = load_dataset("tibetan-mnist", "all", shared_data_dir)
    cached = time.perf_counter() - start
    print(f"tibetan-mnist: first load {first:.2f} s, cached {cached:.3f} s")
    assert len(ds) == 17768 and torch.bincount(ds.labels).tolist() == PROVENANCE_COUNTS
    assert torch.equal(ds.images, again.images)
    assert cached < 1.0
    x = ds.images.float() / 255
    assert abs(x.mean().item() - 0.1510) < 1e-3 and abs(x.std().item() - 0.3273) < 1e-3  # the registry's values
