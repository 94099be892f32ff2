import os
from pathlib import Path

if os.environ.get("PYTEST_XDIST_WORKER"):  # two workers share the machine's cores: one thread each (and
    os.environ.setdefault("OMP_NUM_THREADS", "1")  # in the processes the tests start), set before torch loads

import pytest
import torch
from session_helpers import shared_folder

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

    return shared_folder(tmp_path_factory, "digits-run", lambda out: fit(
        TrainConfig(model="fastcnn", dataset="digits", epochs=2, batch_size=32), out, progress=False))


@pytest.fixture(scope="session")
def serve_cache(tmp_path_factory) -> Path:
    """One digitlab cache shared by the service and page tests: each bundled model is exported to ONNX once
    per session, not once per server started (exports are written atomically)."""
    return shared_folder(tmp_path_factory, "serve-cache")


@pytest.fixture()
def cache(tmp_path, monkeypatch) -> Path:
    """A fresh digitlab cache (ONNX exports) for one test, not the user's."""
    monkeypatch.setenv("DIGITLAB_CACHE", str(tmp_path / "cache"))
    return tmp_path / "cache"


# Tests run in two processes (pytest-xdist, `-n 2 --dist loadgroup` in pyproject.toml), a module at a time so
# that its fixtures are built once. Modules that must not overlap share a group: the Flower simulations (each
# starts Ray) and the service and page tests (one ONNX cache). The longest groups are handed out first.
GROUPS = {"test_federated": "flower", "test_privacy": "flower", "test_serve": "serve", "test_page": "serve"}
FIRST = ("flower", "test_readme", "test_train", "serve", "test_read_verifier", "test_benchmarks", "test_experiments")


def pytest_collection_modifyitems(config, items):
    def group(item) -> str:
        module = Path(str(item.fspath)).stem
        return GROUPS.get(module, module)

    for item in items:
        item.add_marker(pytest.mark.xdist_group(group(item)))
    items.sort(key=lambda item: FIRST.index(group(item)) if group(item) in FIRST else len(FIRST))
