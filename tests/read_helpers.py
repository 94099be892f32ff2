"""Helpers for the digitlab.read tests: real MNIST test digits, a small model trained once per session,
and images composed from real digits."""

from __future__ import annotations

import functools
from pathlib import Path

import numpy as np
import pytest
import torch
from session_helpers import shared_folder

from digitlab.read import synth


@functools.cache
def _digits(data_dir: str) -> tuple[np.ndarray, np.ndarray]:
    return synth.load_test_digits(data_dir)


def _train_model(data_dir: str, out: Path) -> None:
    """lenet5-improved on 8192 MNIST train images for 2 epochs with the augmentation the strong models
    use (about 96% test accuracy)."""
    from digitlab.train import TrainConfig, fit

    cfg = TrainConfig(model="lenet5-improved", data_dir=data_dir, limit=8192, epochs=2,
                      augment="rotation=10,scale=0.85:1.15,translate=0.1", threads=1)
    fit(cfg, out, progress=False, log=lambda s: None)


@pytest.fixture(scope="session")
def test_digits(shared_data_dir) -> tuple[np.ndarray, np.ndarray]:
    """All 10000 MNIST test digits (never seen in training): uint8 (N, 28, 28), labels (N,)."""
    return _digits(str(shared_data_dir))


@pytest.fixture(scope="session")
def read_model(shared_data_dir, tmp_path_factory):
    """(Checkpoint, run folder) of the small trained model, trained once for the session (and its workers)."""
    from digitlab.checkpoint import load_checkpoint

    out = shared_folder(tmp_path_factory, "read-model", lambda out: _train_model(str(shared_data_dir), out))
    return load_checkpoint(out), out


def sure_digits(ckpt, images: np.ndarray, labels: np.ndarray, per_class: int = 3, start: int = 0,
                sure: float = 0.99) -> dict:
    """{class: [28x28 images]} of test digits that the model reads right with probability > `sure` on the
    raw 28x28 image, so that a test of the pipeline does not hinge on the model's own mistakes."""
    from digitlab.infer import predict_logits

    sl = slice(start, start + 2000)
    probs = predict_logits(ckpt.model, torch.from_numpy(images[sl]), ckpt.normalization).softmax(1)
    conf, pred = probs.max(1)
    out: dict[int, list[np.ndarray]] = {c: [] for c in range(10)}
    for img, label, p, c in zip(images[sl], labels[sl], pred.tolist(), conf.tolist()):
        if p == label and c > sure and len(out[int(label)]) < per_class:
            out[int(label)].append(img)
    return out


def string_image(digits: dict, text: str, height: float = 48, gaps=None, **kw) -> np.ndarray:
    """A line of real digits spelling `text` (the first sure digit of each class), dark on paper."""
    return synth.render([digits[int(ch)][0] for ch in text], height=height, gaps=gaps, **kw)


def ink_mask(img: np.ndarray) -> np.ndarray:
    """Ground-truth ink of an image rendered by synth.render on plain paper (dark ink): pixels at least
    40% of the way from the paper to the ink."""
    return img < 150


@pytest.fixture(scope="session")
def untrained_run(tmp_path_factory) -> Path:
    """A valid checkpoint of an untrained model, for tests of everything but accuracy (instant)."""
    from digitlab.checkpoint import save_checkpoint
    from digitlab.models import create_model

    torch.manual_seed(0)
    folder = tmp_path_factory.mktemp("untrained")
    meta = {"model": "lenet5-improved", "model_args": {"in_channels": 1, "num_classes": 10}, "dataset": "mnist",
            "classes": [str(c) for c in range(10)], "normalization": {"mean": 0.1307, "std": 0.3081},
            "input_size": [1, 28, 28]}
    save_checkpoint(folder, create_model("lenet5-improved").eval(), meta)
    return folder
