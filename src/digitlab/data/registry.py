"""What each dataset is: files, checksums, mirrors, splits, classes and normalisation.

Folder names match the layout of a shared data root (``mnist/``, ``kannada_mnist/``,
``tibetan_mnist/TibetanMnist/``), so ``--data-dir`` can point at an existing copy.
"""

from __future__ import annotations

import difflib
from dataclasses import dataclass, field

from digitlab.data.preprocess import Normalization
from digitlab.errors import DatasetError

DIGITS = tuple(str(d) for d in range(10))


@dataclass(frozen=True)
class RemoteFile:
    """One file of a dataset and how to check it; sha256 is None where no trusted value is known."""

    name: str
    sha256: str | None
    md5: str | None = None
    size: int | None = None  # bytes


@dataclass(frozen=True)
class DatasetSpec:
    name: str
    description: str
    classes: tuple[str, ...]
    splits: dict[str, int]  # split -> expected number of examples
    normalization: Normalization  # of the training split after loading (28x28 uint8 / 255)
    reference: str
    source: str = "idx"  # which reader loads it: idx | tibetan | usps | sklearn-digits
    folder: str = ""  # relative to the data root
    files: dict[str, tuple[RemoteFile, ...]] = field(default_factory=dict)  # split -> (images, labels) or (file,)
    mirrors: tuple[str, ...] = ()  # base URLs, tried in order after $DIGITLAB_MIRROR
    extra_dirs: tuple[str, ...] = ()  # absolute folders searched after the data root (system packages)
    licence: str = ""


_REGISTRY: dict[str, DatasetSpec] = {}


def register_dataset(spec: DatasetSpec) -> DatasetSpec:
    if spec.name in _REGISTRY:
        raise DatasetError(f"dataset {spec.name!r} is registered twice")
    _REGISTRY[spec.name] = spec
    return spec


def list_datasets() -> list[DatasetSpec]:
    return list(_REGISTRY.values())


def get_spec(name: str) -> DatasetSpec:
    key = name.strip().lower().replace("_", "-")
    if key in _REGISTRY:
        return _REGISTRY[key]
    close = difflib.get_close_matches(key, _REGISTRY, n=1, cutoff=0.5)
    hint = f"did you mean {close[0]!r}? " if close else ""
    raise DatasetError(f"unknown dataset {name!r}: {hint}choose from {', '.join(_REGISTRY)}")


def check_split(spec: DatasetSpec, split: str) -> None:
    if split in spec.splits:
        return
    close = difflib.get_close_matches(split, spec.splits, n=1, cutoff=0.5)
    hint = f"did you mean {close[0]!r}? " if close else ""
    raise DatasetError(f"{spec.name} has no split {split!r}: {hint}choose from {', '.join(spec.splits)}")


def _idx_pair(images: tuple, labels: tuple) -> tuple[RemoteFile, RemoteFile]:
    return RemoteFile(*images), RemoteFile(*labels)


register_dataset(DatasetSpec(
    name="mnist",
    description="MNIST handwritten digits (LeCun, Cortes, Burges), 28x28 grayscale",
    classes=DIGITS,
    splits={"train": 60000, "test": 10000},
    normalization=Normalization(0.1307, 0.3081),
    reference="Y. LeCun et al., Gradient-based learning applied to document recognition, Proc. IEEE 1998",
    folder="mnist",
    files={
        "train": _idx_pair(
            ("train-images-idx3-ubyte.gz", "440fcabf73cc546fa21475e81ea370265605f56be210a4024d2ca8f203523609",
             "f68b3c2dcbeaaa9fbdd348bbdeb94873", 9912422),
            ("train-labels-idx1-ubyte.gz", "3552534a0a558bbed6aed32b30c495cca23d567ec52cac8be1a0730e8010255c",
             "d53e105ee54ea40749a09fcbcd1e9432", 28881)),
        "test": _idx_pair(
            ("t10k-images-idx3-ubyte.gz", "8d422c7b0a1c1c79245a5bcf07fe86e33eeafee792b84584aec276f5a2dbc4e6",
             "9fb629c4189551a2d022fa330f9573f3", 1648877),
            ("t10k-labels-idx1-ubyte.gz", "f7ae60f92e00ec6debd23a6088c31dbd2371eca3ffa0defaefb259924204aec6",
             "ec29112dd5afa0611ce80d1b7f02629c", 4542)),
    },
    mirrors=("https://ossci-datasets.s3.amazonaws.com/mnist/", "https://storage.googleapis.com/cvdf-datasets/mnist/"),
    licence="none stated by the authors; commonly listed as CC BY-SA 3.0",
))

# Checksums are of the files as served by the official mirror (md5s as published by Zalando).
# Debian's dataset-fashion-mnist ships the same deflate streams with the gzip file name and
# mtime stripped, so its .gz files hash differently; they are read, never re-verified.
register_dataset(DatasetSpec(
    name="fashion-mnist",
    description="Fashion-MNIST (Zalando): 28x28 grayscale photos of 10 kinds of clothing",
    classes=("T-shirt/top", "Trouser", "Pullover", "Dress", "Coat", "Sandal", "Shirt", "Sneaker", "Bag", "Ankle boot"),
    splits={"train": 60000, "test": 10000},
    normalization=Normalization(0.2860, 0.3530),  # measured on train
    reference="H. Xiao, K. Rasul, R. Vollgraf, Fashion-MNIST, arXiv:1708.07747 (2017)",
    folder="fashion-mnist",
    files={
        "train": _idx_pair(
            ("train-images-idx3-ubyte.gz", "3aede38d61863908ad78613f6a32ed271626dd12800ba2636569512369268a84",
             "8d4fb7e6c68d591d4c3dfef9ec88bf0d", 26421880),
            ("train-labels-idx1-ubyte.gz", "a04f17134ac03560a47e3764e11b92fc97de4d1bfaf8ba1a3aa29af54cc90845",
             "25c81989df183df01b3e8a0aad5dffbe", 29515)),
        "test": _idx_pair(
            ("t10k-images-idx3-ubyte.gz", "346e55b948d973a97e58d2351dde16a484bd415d4595297633bb08f03db6a073",
             "bef4ecab320f06d8554ea6380940ec79", 4422102),
            ("t10k-labels-idx1-ubyte.gz", "67da17c76eaffca5446c3361aaab5c3cd6d1c2608764d35dfb1850b086bf8dd5",
             "bb300cfdad3c16e7a12a480ee83cd310", 5148)),
    },
    mirrors=("http://fashion-mnist.s3-website.eu-central-1.amazonaws.com/",),
    extra_dirs=("/usr/share/datasets/fashion-mnist",),
    licence="MIT",
))

register_dataset(DatasetSpec(
    name="kannada-mnist",
    description="Kannada-MNIST: handwritten Kannada digits, 28x28; 'dig' is the out-of-distribution Dig-MNIST",
    classes=DIGITS,
    splits={"train": 60000, "test": 10000, "dig": 10240},
    # Measured on the test split: the train images are not in the shared copy
    normalization=Normalization(0.0727, 0.2255),
    reference="V. U. Prabhu, Kannada-MNIST: A new handwritten digits dataset for the Kannada language, "
              "arXiv:1908.01242 (2019)",
    folder="kannada_mnist",
    files={
        "train": _idx_pair(
            # sha256 unknown: the file is missing from the shared copy; md5 from a public loader
            ("X_kannada_MNIST_train-idx3-ubyte.gz", None, "db2cd247b479801b3a882ab980b340c3"),
            ("y_kannada_MNIST_train-idx1-ubyte.gz", "ef11e1d3e378fefbe78d4c9913dc9617c83fc5f9240b090121fcc335b5642201",
             "f1f06031670554894b697988b906b036", 199)),
        "test": _idx_pair(
            ("X_kannada_MNIST_test-idx3-ubyte.gz", "4628f3fa7b1d32137449dd356be4601da0c28c420b79f1b745a5134504ca35ca",
             "8682876e8fbc8cd0e7bb07fc2f502335", 1120203),
            ("y_kannada_MNIST_test-idx1-ubyte.gz", "645db5902d290681c9e5b452428e24636963a50a3036c2201240351b88786272",
             "b426d27d50a5fd8411b9e5838868be4b", 103)),
        "dig": _idx_pair(
            ("X_dig_MNIST-idx3-ubyte.gz", "abda37c59d3d65ef89505860c18e7b7f7e80bfb2ba361ec1df68949e0c630aaa",
             "d224f44185e453487ad5af34e201a87c", 1395287),
            ("y_dig_MNIST-idx1-ubyte.gz", "321fa413dc0f4bc4342da1f3418c656cd346f91d6d479ea67b1a107e920b907b",
             "9f9e1a4ecb080d70c5953eed2d8121f0", 92)),
    },
    mirrors=("https://raw.githubusercontent.com/vinayprabhu/Kannada_MNIST/master/data/output_tensors/MNIST_format/",),
    licence="none stated; cite Prabhu 2019",
))

register_dataset(DatasetSpec(
    name="tibetan-mnist",
    description="TibetanMNIST: 350x350 JPEGs of handwritten Tibetan digits, brought to 28x28 MNIST-style; "
                "no official split",
    classes=DIGITS,
    splits={"all": 17768},
    normalization=Normalization(0.1510, 0.3273),  # of all 17768 after decoding
    reference="github.com/bat67/TibetanMNIST (Minzu University of China)",
    source="tibetan",
    folder="tibetan_mnist/TibetanMnist",
    licence="CC BY-NC-SA 4.0 (non-commercial)",
))

register_dataset(DatasetSpec(
    name="usps",
    description="USPS handwritten zip-code digits, 16x16, brought to 28x28 MNIST-style",
    classes=DIGITS,
    splits={"train": 7291, "test": 2007},
    # MNIST's values: no USPS copy was at hand to measure; recompute once usps.h5 is available
    normalization=Normalization(0.1307, 0.3081),
    reference="J. J. Hull, A database for handwritten text recognition research, IEEE PAMI 1994",
    source="usps",
    folder="usps",
    files={split: (RemoteFile("usps.h5", None),) for split in ("train", "test")},
    licence="unknown",
))

register_dataset(DatasetSpec(
    name="digits",
    description="scikit-learn's bundled 8x8 UCI optical digits (values 0..16), upsampled to 28x28 MNIST-style",
    classes=DIGITS,
    splits={"all": 1797},
    normalization=Normalization(0.1546, 0.2805),  # of all 1797 after mnist_style
    reference="E. Alpaydin, C. Kaynak, Optical Recognition of Handwritten Digits, UCI ML repository 1998",
    source="sklearn-digits",
    licence="CC BY 4.0",
))
