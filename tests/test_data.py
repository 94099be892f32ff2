"""digitlab.data: IDX reader, registry and loading, preprocessing, splits, augmentation."""

import gzip
from pathlib import Path

import h5py
import numpy as np
import pytest
import torch
from data_helpers import idx_bytes, shifted_diff, write_idx
from PIL import Image, ImageDraw

from digitlab.data import (
    Augment,
    IdxError,
    Normalization,
    dataset_status,
    get_spec,
    kfold_split,
    list_datasets,
    load_dataset,
    load_image,
    mnist_style,
    parse_augment,
    ratio_split,
    read_idx,
    resolve_cache_dir,
    resolve_data_dir,
    to_model_input,
    to_unit,
)
from digitlab.data.augment import affine_grid
from digitlab.errors import ConfigError, DatasetError

MNIST_TEST_COUNTS = [980, 1135, 1032, 1010, 982, 892, 958, 1028, 974, 1009]
FASHION_DIR = Path("/usr/share/datasets/fashion-mnist")


def one_line(e: pytest.ExceptionInfo) -> str:
    msg = str(e.value)
    assert "\n" not in msg, msg
    return msg


def ink_bbox(img: np.ndarray) -> tuple[int, int]:
    rows, cols = np.flatnonzero(img.any(1)), np.flatnonzero(img.any(0))
    return rows[-1] - rows[0] + 1, cols[-1] - cols[0] + 1


def centre_of_mass(img: np.ndarray) -> tuple[float, float]:
    m = img.astype(np.float64)
    return (m.sum(1) @ np.arange(m.shape[0])) / m.sum(), (m.sum(0) @ np.arange(m.shape[1])) / m.sum()


# ---------------------------------------------------------------------------------------------- IDX


def test_read_idx_real_mnist_test(shared_data_dir):
    images = read_idx(shared_data_dir / "mnist" / "t10k-images-idx3-ubyte.gz", ndim=3)
    labels = read_idx(shared_data_dir / "mnist" / "t10k-labels-idx1-ubyte.gz", ndim=1)
    assert images.shape == (10000, 28, 28) and images.dtype == np.uint8
    assert np.bincount(labels).tolist() == MNIST_TEST_COUNTS
    assert images.flags.writeable  # torch.from_numpy without a copy or a warning


def test_read_idx_raw_and_wide_dtypes(tmp_path):
    a = np.arange(24, dtype=np.int32).reshape(2, 3, 4) - 5
    got = read_idx(write_idx(tmp_path / "a.idx", a.astype(">i4"), compress=False))
    assert got.dtype == np.int32 and got.dtype.isnative and np.array_equal(got, a)
    f = np.linspace(-1, 1, 7, dtype=np.float32)
    assert np.array_equal(read_idx(write_idx(tmp_path / "f.gz", f.astype(">f4"))), f)


def _truncated(p: Path) -> None:
    p.write_bytes(gzip.compress(idx_bytes(np.zeros((3, 28, 28), np.uint8))[:-10]))


def _extra(p: Path) -> None:
    p.write_bytes(gzip.compress(idx_bytes(np.zeros((3, 28, 28), np.uint8)) + b"\0\0"))


def _magic(p: Path) -> None:
    p.write_bytes(gzip.compress(b"\x08\x03" + idx_bytes(np.zeros((3, 28, 28), np.uint8))[2:]))


def _corrupt_gzip(p: Path) -> None:
    data = bytearray(gzip.compress(np.random.default_rng(0).integers(0, 255, 5000, np.uint8).tobytes()))
    data[20:60] = bytes(40)
    p.write_bytes(bytes(data))


def _cut_gzip(p: Path) -> None:
    p.write_bytes(gzip.compress(idx_bytes(np.ones((30, 28, 28), np.uint8)))[:-30])


def _labels(p: Path) -> None:
    write_idx(p, np.arange(10, dtype=np.uint8))


@pytest.mark.parametrize("make, what", [
    (_truncated, "truncated"), (_extra, "extra trailing bytes"), (_magic, "magic"),
    (_corrupt_gzip, "gzip"), (_cut_gzip, "truncated gzip"), (_labels, "1 dimension"),
])
def test_read_idx_rejects_bad_files(tmp_path, make, what):
    path = tmp_path / f"bad-{make.__name__}-images-idx3-ubyte.gz"
    make(path)
    with pytest.raises(IdxError) as e:
        read_idx(path, ndim=3)
    msg = one_line(e)
    assert str(path) in msg and what in msg
    assert isinstance(e.value, DatasetError)


# ----------------------------------------------------------------------------------------- registry


def test_list_datasets_names():
    assert [s.name for s in list_datasets()] == [
        "mnist", "fashion-mnist", "kannada-mnist", "tibetan-mnist", "usps", "digits"]
    for spec in list_datasets():
        assert len(spec.classes) == 10 and spec.splits and 0 < spec.normalization.std < 1


def test_get_spec_suggests_close_name():
    assert get_spec("Kannada_MNIST").name == "kannada-mnist"
    with pytest.raises(DatasetError) as e:
        get_spec("fashon-mnist")
    assert "did you mean 'fashion-mnist'" in one_line(e)


def test_resolve_dirs(monkeypatch, tmp_path):
    monkeypatch.setenv("DIGITLAB_DATA", str(tmp_path / "env"))
    monkeypatch.setenv("DIGITLAB_CACHE", str(tmp_path / "cache"))
    assert resolve_data_dir(tmp_path / "arg") == tmp_path / "arg"
    assert resolve_data_dir() == tmp_path / "env"
    assert resolve_cache_dir() == tmp_path / "cache"
    monkeypatch.delenv("DIGITLAB_DATA")
    assert resolve_data_dir().parts[-2:] == ("digitlab", "datasets")


def test_dataset_status_on_shared_dir(shared_data_dir):
    mnist = dataset_status("mnist", shared_data_dir)
    assert mnist["train"] == {"present": True, "path": str(shared_data_dir / "mnist"), "size": 60000, "missing": []}
    kannada = dataset_status("kannada-mnist", shared_data_dir)
    assert kannada["test"]["present"] and kannada["dig"]["present"]
    assert not kannada["train"]["present"]
    assert kannada["train"]["missing"] == ["X_kannada_MNIST_train-idx3-ubyte.gz"]
    assert dataset_status("tibetan-mnist", shared_data_dir)["all"]["present"]
    assert dataset_status("digits", shared_data_dir)["all"]["present"]
    assert not dataset_status("usps", shared_data_dir)["train"]["present"]


def test_load_mnist_train_matches_its_normalisation(shared_data_dir):
    ds = load_dataset("mnist", "train", shared_data_dir)
    assert len(ds) == 60000 and ds.images.shape == (60000, 28, 28)
    assert ds.images.dtype == torch.uint8 and ds.labels.dtype == torch.int64
    assert torch.bincount(ds.labels)[1].item() == 6742
    x = to_unit(ds.images)
    norm = get_spec("mnist").normalization
    assert abs(x.mean().item() - norm.mean) < 1e-3 and abs(x.std().item() - norm.std) < 1e-3
    sub = ds.subset(torch.arange(5))
    assert len(sub) == 5 and torch.equal(sub.images, ds.images[:5]) and sub.name == "mnist"


def test_load_kannada_test_and_dig_without_train_images(shared_data_dir):
    test = load_dataset("kannada-mnist", "test", shared_data_dir)
    dig = load_dataset("kannada-mnist", "dig", shared_data_dir)
    assert len(test) == 10000 and torch.bincount(test.labels).tolist() == [1000] * 10
    assert len(dig) == 10240 and torch.bincount(dig.labels).tolist() == [1024] * 10
    with pytest.raises(DatasetError) as e:
        load_dataset("kannada-mnist", "train", shared_data_dir)
    msg = one_line(e)
    assert "X_kannada_MNIST_train-idx3-ubyte.gz" in msg and "db2cd247b479801b3a882ab980b340c3" in msg
    assert "y_kannada_MNIST_train" not in msg  # the labels are there


@pytest.mark.skipif(not FASHION_DIR.is_dir(), reason=f"{FASHION_DIR} not installed (Debian dataset-fashion-mnist)")
def test_fashion_mnist_found_in_system_folder(tmp_path):
    assert dataset_status("fashion-mnist", tmp_path)["test"]["path"] == str(FASHION_DIR)
    ds = load_dataset("fashion-mnist", "test", tmp_path)
    assert len(ds) == 10000 and torch.bincount(ds.labels).tolist() == [1000] * 10
    assert get_spec("fashion-mnist").classes[9] == "Ankle boot"


def test_sklearn_digits_are_mnist_style():
    ds = load_dataset("digits", "all")
    assert ds.images.shape == (1797, 28, 28) and ds.images.dtype == torch.uint8
    assert torch.bincount(ds.labels).min() >= 170
    for img in ds.images[:50].numpy():
        h, w = ink_bbox(img)
        assert max(h, w) == 20 and h <= 20 and w <= 20
        cy, cx = centre_of_mass(img)
        assert abs(cy - 14) <= 0.5 and abs(cx - 14) <= 0.5
    assert ds.images.max() == 255


def _write_usps(path: Path, dark_on_light: bool = False) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(0)
    targets = {}
    with h5py.File(path, "w") as f:
        for split, n in (("train", 12), ("test", 5)):
            data = np.zeros((n, 16, 16))
            for i in range(n):
                r = rng.integers(2, 6)
                data[i, 2 : 14, 8 - r : 8 + r] = 1.0  # a bar, ink = 1 on 0
                data[i, 2:4, 3:13] = 0.8
            if dark_on_light:
                data = 1 - data
            targets[split] = rng.integers(0, 10, n)
            f.create_group(split)
            f[split]["data"] = data.reshape(n, 256)
            f[split]["target"] = targets[split]
    return targets


@pytest.mark.parametrize("dark_on_light", [False, True])
def test_usps_from_h5(tmp_path, dark_on_light):
    (tmp_path / "usps").mkdir()
    targets = _write_usps(tmp_path / "usps" / "usps.h5", dark_on_light)
    ds = load_dataset("usps", "train", tmp_path)
    assert ds.images.shape == (12, 28, 28) and torch.equal(ds.labels, torch.from_numpy(targets["train"]))
    img = ds.images[0].numpy()
    assert img[0, 0] == 0 and img.max() == 255  # white on black whatever the file's polarity
    assert ink_bbox(img)[0] == 20
    assert len(load_dataset("usps", "test", tmp_path)) == 5


def test_usps_missing_or_bad_file(tmp_path):
    with pytest.raises(DatasetError) as e:
        load_dataset("usps", "train", tmp_path, download=True)
    msg = one_line(e)
    assert "usps.h5" in msg and str(tmp_path / "usps") in msg and "no official mirror" in msg
    (tmp_path / "usps").mkdir()
    (tmp_path / "usps" / "usps.h5").write_text("not hdf5")
    with pytest.raises(DatasetError) as e:
        load_dataset("usps", "train", tmp_path)
    assert "usps.h5" in one_line(e)


def test_unknown_split_and_missing_files(tmp_path):
    with pytest.raises(DatasetError) as e:
        load_dataset("mnist", "tset", tmp_path)
    assert "did you mean 'test'" in one_line(e)
    with pytest.raises(DatasetError) as e:
        load_dataset("mnist", "test", tmp_path)
    msg = one_line(e)
    spec = get_spec("mnist")
    for f in spec.files["test"]:
        assert f"{f.name} (sha256 {f.sha256})" in msg
    assert str(tmp_path / "mnist") in msg and "download" in msg
    assert not (tmp_path / "mnist").exists()  # looking never creates folders


def test_wrong_idx_file_in_dataset_folder(tmp_path):
    folder = tmp_path / "mnist"
    folder.mkdir()
    write_idx(folder / "t10k-images-idx3-ubyte.gz", np.zeros((10, 28, 28), np.uint8))
    write_idx(folder / "t10k-labels-idx1-ubyte.gz", np.zeros(10, np.uint8))
    with pytest.raises(DatasetError) as e:
        load_dataset("mnist", "test", tmp_path)
    assert "t10k-images-idx3-ubyte.gz" in one_line(e) and "10000" in str(e.value)


# --------------------------------------------------------------------------------------- preprocess


def test_mnist_style_off_centre_blob():
    canvas = Image.new("L", (300, 200), 0)
    ImageDraw.Draw(canvas).ellipse((200, 10, 290, 150), fill=255)  # tall blob in the top-right corner
    out = mnist_style(np.asarray(canvas))
    assert out.shape == (28, 28) and out.dtype == np.uint8
    h, w = ink_bbox(out)
    assert h == 20 and w <= 20
    cy, cx = centre_of_mass(out)
    assert abs(cy - 14) <= 0.5 and abs(cx - 14) <= 0.5
    with pytest.raises(DatasetError):
        mnist_style(np.zeros((50, 50), np.uint8))


def test_mnist_style_keeps_real_mnist_digits(mnist_small):
    images = mnist_small[0][:200].numpy()
    again = np.stack([mnist_style(img) for img in images])
    corr = [np.corrcoef(a.ravel(), b.ravel())[0, 1] for a, b in zip(images, again)]
    assert np.median(corr) > 0.95


def _seven(size=(90, 120), ink=20, paper=235) -> Image.Image:
    img = Image.new("L", size, paper)
    d = ImageDraw.Draw(img)
    d.line((15, 20, 75, 20), fill=ink, width=9)
    d.line((75, 20, 35, 105), fill=ink, width=9)
    return img


def test_load_image_either_polarity(tmp_path):
    dark = _seven()
    dark.save(tmp_path / "dark.png")
    Image.fromarray(255 - np.asarray(dark)).save(tmp_path / "light.png")
    a, b = load_image(tmp_path / "dark.png"), load_image(tmp_path / "light.png")
    assert a.shape == (28, 28) and a.dtype == np.uint8
    assert np.abs(a.astype(int) - b.astype(int)).max() <= 1
    assert a[0, 0] == 0 and a.max() == 255
    assert np.array_equal(load_image(dark), a) and np.array_equal(load_image(np.asarray(dark)), a)


def test_load_image_colour_alpha_and_jpeg(tmp_path):
    reference = load_image(_seven())
    rgba = Image.new("RGBA", (90, 120), (0, 0, 0, 0))
    rgba.paste(Image.new("RGBA", (90, 120), (30, 30, 200, 255)), mask=_seven(ink=255, paper=0))
    rgba.save(tmp_path / "transparent.png")  # blue strokes on a transparent background
    _seven().convert("RGB").save(tmp_path / "seven.jpg", quality=80)
    for name in ("transparent.png", "seven.jpg"):
        assert shifted_diff(load_image(tmp_path / name), reference) < 6, name


def test_load_image_honours_exif_orientation(tmp_path):
    bar = Image.new("L", (120, 40), 255)
    ImageDraw.Draw(bar).rectangle((10, 15, 110, 25), fill=0)  # a horizontal bar as stored
    exif = Image.Exif()
    exif[0x0112] = 6  # "rotate 90 CW to display": shown as a vertical bar
    bar.save(tmp_path / "rotated.jpg", exif=exif)
    h, w = ink_bbox(load_image(tmp_path / "rotated.jpg") > 64)
    assert h >= 19 and w < 6  # vertical (the bar's anti-aliased ends may fall under 64 after near_box)


def test_load_image_rejects_non_images(tmp_path):
    _seven().save(tmp_path / "cut.png")
    data = (tmp_path / "cut.png").read_bytes()
    (tmp_path / "cut.png").write_bytes(data[: len(data) // 2])
    (tmp_path / "notes.png").write_text("hello, not a picture\n")
    Image.new("L", (40, 40), 200).save(tmp_path / "blank.png")
    for name in ("cut.png", "notes.png", "blank.png", "absent.png"):
        with pytest.raises(DatasetError) as e:
            load_image(tmp_path / name)
        assert str(tmp_path / name) in one_line(e)


def test_to_model_input():
    norm = Normalization(0.1307, 0.3081)
    images = torch.tensor([0, 255], dtype=torch.uint8).repeat_interleave(28 * 28).view(2, 28, 28)
    x = to_model_input(images, norm)
    assert x.shape == (2, 1, 28, 28) and x.dtype == torch.float32
    assert torch.allclose(x[0], torch.full((1, 28, 28), -0.1307 / 0.3081))
    assert torch.allclose(x[1], torch.full((1, 28, 28), (1 - 0.1307) / 0.3081))
    assert torch.equal(to_model_input(images[:, None], norm), x)
    assert torch.equal(to_unit(images[0]), torch.zeros(1, 1, 28, 28))
    with pytest.raises(ValueError):
        to_unit(images.float())


# ------------------------------------------------------------------------------------------- splits


@pytest.fixture
def imbalanced_labels() -> torch.Tensor:
    rng = np.random.default_rng(1)
    return torch.from_numpy(rng.choice(10, size=997, p=np.linspace(1, 3, 10) / 20))


@pytest.mark.parametrize("ratios", [(4, 1), (70, 20, 10)])
def test_ratio_split(imbalanced_labels, ratios):
    parts = ratio_split(imbalanced_labels, ratios, seed=0)
    assert len(parts) == len(ratios)
    joined = torch.cat(parts)
    assert torch.equal(joined.sort().values, torch.arange(len(imbalanced_labels)))  # disjoint and complete
    sorted_labels = imbalanced_labels.sort().values
    head = ratio_split(sorted_labels, ratios, seed=0)[0][:100]
    assert len(torch.unique(sorted_labels[head])) == 10  # a prefix of a part mixes the classes
    shares = np.array(ratios) / sum(ratios)
    counts = torch.bincount(imbalanced_labels, minlength=10).numpy()
    for part, share in zip(parts, shares):
        got = torch.bincount(imbalanced_labels[part], minlength=10).numpy()
        assert np.all(np.abs(got - counts * share) < 1), (got, counts * share)
    again = ratio_split(imbalanced_labels, ratios, seed=0)
    other = ratio_split(imbalanced_labels, ratios, seed=1)
    assert all(torch.equal(a, b) for a, b in zip(parts, again))
    assert not torch.equal(parts[-1], other[-1])


def test_ratio_split_unstratified_and_bad_ratios(imbalanced_labels):
    train, val = ratio_split(imbalanced_labels, (0.8, 0.2), seed=3, stratify=False)
    assert len(train) == 798 and len(val) == 199
    assert torch.equal(torch.cat([train, val]).sort().values, torch.arange(997))
    train, val = ratio_split(imbalanced_labels, (1, 0), seed=3)
    assert len(train) == 997 and len(val) == 0 and val.dtype == torch.int64
    for bad in [(1,), (0, 0), (3, -1)]:
        with pytest.raises(ConfigError):
            ratio_split(imbalanced_labels, bad, seed=0)


def test_kfold_split(imbalanced_labels):
    folds = kfold_split(imbalanced_labels, k=5, seed=0)
    assert len(folds) == 5
    seen = torch.cat([val for _, val in folds])
    assert torch.equal(seen.sort().values, torch.arange(997))  # each index validated exactly once
    counts = torch.bincount(imbalanced_labels, minlength=10).numpy()
    for train, val in folds:
        assert len(np.intersect1d(train.numpy(), val.numpy())) == 0 and len(train) + len(val) == 997
        got = torch.bincount(imbalanced_labels[val], minlength=10).numpy()
        assert np.all(np.abs(got - counts / 5) <= 1)
    assert torch.equal(kfold_split(imbalanced_labels, 5, seed=0)[2][1], folds[2][1])
    assert not torch.equal(kfold_split(imbalanced_labels, 5, seed=1)[2][1], folds[2][1])
    with pytest.raises(ConfigError):
        kfold_split(imbalanced_labels, 1, seed=0)


# ------------------------------------------------------------------------------------------ augment


@pytest.fixture
def batch(mnist_small) -> torch.Tensor:
    return to_unit(mnist_small[0][:64])


def test_augment_off_is_identity(batch):
    aug = Augment()
    assert not aug.enabled and aug(batch) is batch
    assert parse_augment("none") == aug and parse_augment("") == aug


def test_augment_deterministic_and_shape(batch):
    aug = Augment(rotation=15, scale=(0.9, 1.1), translate=0.1, shear=10, elastic_alpha=34)
    out = aug(batch, torch.Generator().manual_seed(0))
    assert out.shape == batch.shape and out.dtype == batch.dtype
    assert 0 <= out.min() and out.max() <= 1
    assert torch.equal(out, aug(batch, torch.Generator().manual_seed(0)))
    assert not torch.allclose(out, aug(batch, torch.Generator().manual_seed(1)))
    assert not torch.allclose(out, batch)


def test_rotation_keeps_ink(batch):
    out = Augment(rotation=30)(batch, torch.Generator().manual_seed(0))
    moved = (out - batch).abs().mean((1, 2, 3))
    assert (moved > 0.01).float().mean() > 0.8  # angles near 0 barely move a digit
    ratio = out.sum((1, 2, 3)) / batch.sum((1, 2, 3))
    assert (ratio - 1).abs().max() < 0.1


def test_tiny_transform_is_near_identity(batch):
    """No flip, offset or half-pixel shift hides in the sampling grid."""
    out = Augment(rotation=1e-4, translate=1e-6, scale=(1 - 1e-6, 1))(batch, torch.Generator().manual_seed(0))
    assert (out - batch).abs().max() < 1e-3


@pytest.mark.parametrize("h, w", [(28, 28), (5, 9)])
def test_affine_grid_matches_torch(h, w):
    theta = torch.randn(16, 2, 3, generator=torch.Generator().manual_seed(0))
    expected = torch.nn.functional.affine_grid(theta, [16, 1, h, w], align_corners=False)
    torch.testing.assert_close(affine_grid(theta, h, w), expected)


def test_scale_and_translate_go_the_right_way(batch):
    g = torch.Generator().manual_seed(0)
    half = Augment(scale=(0.5, 0.5))(batch, g)
    ratio = half.sum((1, 2, 3)) / batch.sum((1, 2, 3))  # area shrinks by scale**2
    assert (ratio - 0.25).abs().max() < 0.05
    dot = torch.zeros(1, 1, 28, 28)
    dot[0, 0, 14, 14] = 1
    moved = Augment(translate=0.25)(dot.repeat(32, 1, 1, 1), g)
    ys, xs = centre_of_mass_t(moved)
    assert (ys - 14).abs().max() <= 7.01 and (xs - 14).abs().max() <= 7.01
    assert (ys - 14).abs().max() > 2  # it does move
    full = Augment(translate=0.5)(torch.ones(4, 1, 28, 28), g)
    assert full.min() == 0  # what comes in from outside is black


def centre_of_mass_t(x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    m = x[:, 0]
    total = m.sum((1, 2))
    ar = torch.arange(m.shape[1], dtype=m.dtype)
    return (m.sum(2) @ ar) / total, (m.sum(1) @ ar) / total


def test_elastic_bends_locally(batch):
    out = Augment(elastic_alpha=34, elastic_sigma=4)(batch, torch.Generator().manual_seed(0))
    assert 0.01 < (out - batch).abs().mean().item() < 0.2
    ratio = out.sum((1, 2, 3)) / batch.sum((1, 2, 3))
    assert abs(ratio.mean().item() - 1) < 0.05  # local stretching and squeezing balance out
    (y0, x0), (y1, x1) = centre_of_mass_t(batch), centre_of_mass_t(out)
    assert torch.hypot(y1 - y0, x1 - x0).max() < 2.5  # the digit stays where it was


def test_stroke_grows_and_thins_strokes_in_place(batch):
    """A whole step of growth is a 3x3 grayscale dilation; half a step lies between; thinning loses ink.
    Nothing moves: the centre of mass stays within a pixel."""
    grown = Augment._stroke(batch, torch.full((len(batch),), 1.0))
    torch.testing.assert_close(grown, torch.nn.functional.max_pool2d(batch, 3, stride=1, padding=1))
    half = Augment._stroke(batch, torch.full((len(batch),), 0.5))
    torch.testing.assert_close(half, (batch + grown) / 2)
    thinned = Augment._stroke(batch, torch.full((len(batch),), -0.5))
    ink = batch.sum((1, 2, 3))
    assert (thinned.sum((1, 2, 3)) < 0.85 * ink).all() and (grown.sum((1, 2, 3)) > 1.5 * ink).all()
    for out in (half, thinned):
        (y0, x0), (y1, x1) = centre_of_mass_t(batch), centre_of_mass_t(out)
        assert torch.hypot(y1 - y0, x1 - x0).max() < 1.0  # (0.5 at most on these 64 digits)
    # per sample: each keeps its own amount, none leaks into another
    mixed = Augment._stroke(batch[:2], torch.tensor([1.0, -0.5]))
    torch.testing.assert_close(mixed, torch.stack([grown[0], thinned[1]]))
    out = Augment(stroke=(-0.3, 0.7))(batch, torch.Generator().manual_seed(0))
    ratio = out.sum((1, 2, 3)) / ink
    assert 0 <= out.min() and out.max() <= 1 and ratio.min() < 0.95 and ratio.max() > 1.2


def test_parse_augment():
    aug = parse_augment("rotation=10, scale=0.9:1.1,translate=0.1,shear=5,elastic=34,stroke=-0.3:0.7")
    assert aug == Augment(rotation=10, scale=(0.9, 1.1), translate=0.1, shear=5, elastic_alpha=34, stroke=(-0.3, 0.7))
    assert parse_augment(aug.to_string()) == aug
    for bad in ("rotate=10", "rotation", "scale=0.9", "scale=1.1:0.9", "rotation=ten", "rotation=5,rotation=6",
                "translate=-0.1", "stroke=1", "stroke=0.5:-0.5"):
        with pytest.raises(ConfigError) as e:
            parse_augment(bad)
        one_line(e)
