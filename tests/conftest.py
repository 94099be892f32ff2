import os
from pathlib import Path

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
    from digitlab.data import load_dataset

    test = load_dataset("mnist", "test", data_dir=shared_data_dir)
    return test.images[:512], test.labels[:512]
