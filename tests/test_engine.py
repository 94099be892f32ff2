"""The Recognizer: ONNX Runtime and PyTorch give the same logits for a checkpoint; a checkpoint is exported
once into the cache; an exported .onnx file runs on its own meta; calibrated probabilities."""

import numpy as np
import pytest

from digitlab.data import load_dataset
from digitlab.engine import LineEngine, Recognizer, onnx_cache
from digitlab.errors import ConfigError
from digitlab.export import ExportError, export_line_onnx, export_onnx


def test_onnxruntime_and_torch_agree_and_the_export_is_cached(digits_run, cache, monkeypatch):
    images = load_dataset("digits", "all").images[:300]
    fast = Recognizer(digits_run, threads=2, batch_size=64)  # exported into the cache on first use
    path = onnx_cache(fast.meta)
    assert path.is_file() and path.is_relative_to(cache)
    slow = Recognizer(digits_run, backend="torch")
    assert np.abs(fast.logits(images) - slow.logits(images)).max() < 1e-3
    assert (fast.logits(images).argmax(1) == slow.logits(images).argmax(1)).all()

    def no_export(*args, **kwargs):
        raise AssertionError("exported again")

    monkeypatch.setattr("digitlab.export.export_onnx", no_export)
    again = Recognizer(digits_run)  # the same weights: the cached file, no export
    assert np.array_equal(again.logits(images[:10]), fast.logits(images[:10]))


def test_an_onnx_file_runs_on_its_own_metadata(digits_run, tmp_path):
    export_onnx(digits_run, tmp_path / "d.onnx", images=50)
    from_file, from_run = Recognizer(tmp_path / "d.onnx"), Recognizer(digits_run, backend="torch")
    assert from_file.classes == from_run.classes and from_file.normalization == from_run.normalization
    images = load_dataset("digits", "all").images[:50]
    assert np.abs(from_file.logits(images) - from_run.logits(images)).max() < 1e-3


def test_probabilities_are_the_calibrated_softmax(digits_run):
    engine = Recognizer(digits_run, backend="torch")
    engine.temperature = 2.0
    data = load_dataset("digits", "all")
    z = engine.logits(data.images[:20]) / 2.0
    expected = np.exp(z) / np.exp(z).sum(1, keepdims=True)
    assert np.allclose(engine.probabilities(data.images[:20]), expected, atol=1e-6)
    labels = [label for label, _ in engine.predict(data.images)]
    accuracy = np.mean([a == str(int(b)) for a, b in zip(labels, data.labels)])
    assert accuracy > 0.8  # 2 epochs of fastcnn on digits (its training share among them)
    assert engine.logits(data.images[:0]).shape == (0, 10)


def test_bad_settings_are_one_line_errors(digits_run, tmp_path):
    with pytest.raises(ConfigError, match="backend must be one of"):
        Recognizer(digits_run, backend="tensorrt")
    with pytest.raises(ConfigError, match="threads and batch_size"):
        Recognizer(digits_run, threads=0)
    export_onnx(digits_run, tmp_path / "d.onnx", images=20)
    with pytest.raises(ConfigError, match="onnxruntime backend only"):
        Recognizer(tmp_path / "d.onnx", backend="torch")


def test_a_line_engine_runs_an_unsaved_network_on_pytorch_and_export_refuses_a_classifier(digits_run, tmp_path):
    import torch

    from digitlab.checkpoint import Checkpoint
    from digitlab.models import create_model

    model = create_model("line-reader", width=12, hidden=16).eval()
    engine = LineEngine(Checkpoint(model, {"model": "line-reader"}))  # no weights hash: being trained
    assert engine.backend == "torch"
    x = torch.rand(1, 1, 32, 40)
    with torch.inference_mode():
        assert np.array_equal(engine(x.numpy()), model(x).numpy())
    with pytest.raises(ExportError, match="not a line or field reader"):
        export_line_onnx(digits_run, tmp_path / "c.onnx")
    assert not (tmp_path / "c.onnx").exists()
