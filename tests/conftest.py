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


@pytest.fixture(scope="session")
def digits_run(tmp_path_factory) -> Path:
    """A small real run that the export, engine and bench tests share (they read it and write elsewhere):
    fastcnn, 2 epochs of scikit-learn's digits."""
    from digitlab.train.config import TrainConfig
    from digitlab.train.trainer import fit

    out = tmp_path_factory.mktemp("digits-run")
    fit(TrainConfig(model="fastcnn", dataset="digits", epochs=2, batch_size=32), out, progress=False)
    return out


@pytest.fixture(scope="session")
def serve_cache(tmp_path_factory) -> Path:
    """One digitlab cache shared by the service and page tests: each bundled model is exported to ONNX once
    per session, not once per server started."""
    return tmp_path_factory.mktemp("serve-cache")


@pytest.fixture()
def cache(tmp_path, monkeypatch) -> Path:
    """A fresh digitlab cache (ONNX exports) for one test, not the user's."""
    monkeypatch.setenv("DIGITLAB_CACHE", str(tmp_path / "cache"))
    return tmp_path / "cache"

