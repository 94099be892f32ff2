"""The one training loop: a fixed number of steps from given weights with no run folder (what a
cross-validation fold and a federated client call), and the verifier and line reader run through it."""

import dataclasses

import pytest
import torch

from digitlab.data import get_spec
from digitlab.errors import ConfigError
from digitlab.models import create_model
from digitlab.train import TrainConfig
from digitlab.train.loop import train_steps

NORM = get_spec("mnist").normalization


@pytest.fixture(scope="module")
def digits(mnist_small):
    return mnist_small  # 512 real MNIST test digits


def test_train_steps_takes_exactly_the_steps_asked_from_the_weights_given(digits, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    images, labels = digits
    cfg = TrainConfig(model="lenet5", batch_size=64, lr=3e-3, seed=1)
    model = create_model("lenet5")
    start = {k: v.clone() for k, v in model.state_dict().items()}
    idx = torch.arange(300)  # 5 batches a pass (the 44 left over are the fifth)
    weights, metrics = train_steps(model, images, labels, cfg, 12, norm=NORM, num_classes=10, indices=idx,
                                   weights=start)
    assert metrics["steps"] == 12 and metrics["epochs"] == 3 and metrics["diverged"] is None
    assert 0 < metrics["train_loss"] < 10 and 0 <= metrics["train_accuracy"] <= 1
    assert any(not torch.equal(weights[k], start[k]) for k in start)
    assert list(tmp_path.iterdir()) == []  # no run folder, no file

    # The same weights, images and seed give the same result, whatever the model held before
    other = create_model("lenet5")
    again, _ = train_steps(other, images, labels, cfg, 12, norm=NORM, num_classes=10, indices=idx, weights=start)
    for k in weights:
        torch.testing.assert_close(again[k], weights[k], rtol=0, atol=0)
    # ... and other images give other weights
    moved, _ = train_steps(other, images, labels, cfg, 12, norm=NORM, num_classes=10,
                           indices=torch.arange(300, 512), weights=start)
    assert any(not torch.equal(moved[k], weights[k]) for k in weights)
    with pytest.raises(ConfigError, match="steps"):
        train_steps(other, images, labels, cfg, 0, norm=NORM, num_classes=10)


def test_a_diverging_local_round_says_so(digits):
    images, labels = digits
    cfg = TrainConfig(model="lenet5-improved", optimizer="sgd", lr=1e4, momentum=0.99)
    _, metrics = train_steps(create_model("lenet5-improved"), images, labels, cfg, 30, norm=NORM, num_classes=10)
    assert metrics["diverged"] and "diverged" in metrics["diverged"]


def interrupt_after_first_epoch(message: str) -> None:
    if message.lstrip().startswith("epoch   1/"):
        raise KeyboardInterrupt


@pytest.mark.parametrize("which", ["verifier", "line reader", "field reader"])
def test_the_readers_helpers_train_in_run_folders_and_resume(which, shared_data_dir, tmp_path, monkeypatch):
    from safetensors.torch import load_file

    from digitlab.read import fieldreader, linereader, verifier

    if which == "field reader":
        cfg = fieldreader.FieldReaderConfig(images=48, val_images=16, epochs=2, width=16, hidden=32, threads=1)
        train, draw, drawn = fieldreader.train_field_reader, "make_fields", fieldreader.FIELDS
        module = fieldreader
    elif which == "verifier":
        cfg = verifier.VerifierConfig(images=40, val_images=10, epochs=2, threads=1)
        train, draw, drawn = verifier.train_verifier, "make_crops", verifier.CROPS
        module = verifier
    else:
        cfg = linereader.LineReaderConfig(images=60, val_images=20, epochs=2, width=16, hidden=32, workers=1,
                                          threads=1)
        train, draw, drawn = linereader.train_line_reader, "draw_lines", linereader.LINES
        module = linereader
    train(cfg, tmp_path / "whole", shared_data_dir, progress=False, log=lambda s: None)
    for name in ("config.json", "metrics.csv", "state.pt", "summary.json", "model.json", drawn):
        assert (tmp_path / "whole" / name).is_file(), name
    assert len((tmp_path / "whole" / "metrics.csv").read_text().strip().splitlines()) == 3  # header + 2 epochs

    with pytest.raises(KeyboardInterrupt):
        train(cfg, tmp_path / "cut", shared_data_dir, progress=False, log=interrupt_after_first_epoch)
    assert not (tmp_path / "cut" / "summary.json").exists()
    with pytest.raises(ConfigError, match="already holds a run"):
        train(cfg, tmp_path / "cut", shared_data_dir, progress=False, log=lambda s: None)
    monkeypatch.setattr(module, draw, lambda *a, **k: pytest.fail("a resumed run draws its data again"))
    with pytest.raises(ConfigError, match="differs from the run's saved config"):
        train(dataclasses.replace(cfg, epochs=3), tmp_path / "cut", resume=True, progress=False, log=lambda s: None)
    train(None, tmp_path / "cut", resume=True, progress=False, log=lambda s: None)
    whole = load_file(str(tmp_path / "whole" / "model.safetensors"))
    resumed = load_file(str(tmp_path / "cut" / "model.safetensors"))
    for k in whole:
        torch.testing.assert_close(resumed[k], whole[k], rtol=0, atol=0)
    assert (tmp_path / "cut" / "metrics.csv").read_text().count("\n") == 3


def test_atomic_writes_get_the_umask_permissions_not_0600(tmp_path):
    import os
    import stat

    from digitlab.atomic import UMASK, write_text

    write_text(tmp_path / "summary.json", "{}")
    assert stat.S_IMODE(os.stat(tmp_path / "summary.json").st_mode) == 0o666 & ~UMASK
    assert (tmp_path / "summary.json").read_text() == "{}" and len(list(tmp_path.iterdir())) == 1
