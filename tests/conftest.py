import gzip
import os
from pathlib import Path

import numpy as np
import pytest
import torch

REPO = Path(__file__).resolve().parents[1]
SHARED_DATA = Path(os.environ.get("DIGITLAB_TEST_DATA", REPO.parent / "shared" / "datasets"))


@pytest.fixture(scope="session")
def shared_data_dir() -> Path:
    """The read-only folder of real datasets (mnist/, kannada_mnist/, tibetan_mnist/)."""
    if not (SHARED_DATA / "mnist").is_dir():
        pytest.skip(f"real datasets not found at {SHARED_DATA} (set DIGITLAB_TEST_DATA)")
    return SHARED_DATA


@pytest.fixture(scope="session")
def mnist_small(shared_data_dir) -> tuple[torch.Tensor, torch.Tensor]:
    """512 real MNIST test digits: uint8 images (N, 28, 28), int64 labels (N,)."""
    with gzip.open(shared_data_dir / "mnist" / "t10k-images-idx3-ubyte.gz") as f:
        images = np.frombuffer(f.read(), np.uint8, offset=16).reshape(-1, 28, 28)[:512]
    with gzip.open(shared_data_dir / "mnist" / "t10k-labels-idx1-ubyte.gz") as f:
        labels = np.frombuffer(f.read(), np.uint8, offset=8)[:512]
    return torch.from_numpy(images.copy()), torch.from_numpy(labels.astype(np.int64))
