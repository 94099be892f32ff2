"""ONNX export: the file computes what the checkpoint computes (ONNX Runtime against PyTorch on real test
images), has a dynamic batch axis and carries the checkpoint's meta; a mismatch or a bad input is a
one-line error and leaves no file."""

import numpy as np
import onnxruntime as ort
import pytest
import torch

from digitlab.checkpoint import Checkpoint, load_checkpoint, model_meta
from digitlab.cli import main
from digitlab.data import Normalization, load_dataset, to_model_input
from digitlab.export import ExportError, export_onnx, onnx_metadata
from digitlab.models import create_model, list_models


def test_export_matches_pytorch_with_any_batch_and_keeps_the_meta(digits_run, tmp_path):
    path = tmp_path / "digits.onnx"
    report = export_onnx(digits_run, path, images=500)
    assert path.is_file() and report.bytes == path.stat().st_size
    assert report.source.startswith("digits test share held out by the run") and report.images == 268
    assert report.max_abs_diff < 1e-3 and report.agreement == 1.0
    ckpt = load_checkpoint(digits_run)
    meta = onnx_metadata(path)
    assert meta["classes"] == ckpt.classes and meta["normalization"] == ckpt.meta["normalization"]
    assert meta["model"] == "fastcnn" and "config" not in meta
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    test = load_dataset("digits", "all")
    for n in (1, 7, 64):  # the batch axis is dynamic
        x = to_model_input(test.images[:n], ckpt.normalization)
        got = session.run(None, {"images": x.numpy()})[0]
        with torch.inference_mode():
            expected = ckpt.model(x).numpy()
        assert got.shape == (n, 10) and np.abs(got - expected).max() < 1e-3


def test_a_mismatch_fails_the_export_and_leaves_no_file(digits_run, tmp_path):
    path = tmp_path / "strict.onnx"
    with pytest.raises(ExportError, match="differ by"):
        export_onnx(digits_run, path, images=50, tolerance=0.0)  # float rounding alone exceeds 0
    assert not path.exists() and list(tmp_path.iterdir()) == []


def test_bundled_classifier_exports_checked_on_real_mnist(shared_data_dir, tmp_path, capsys):
    path = tmp_path / "mnist.onnx"
    assert main(["export", "--out", str(path), "--data-dir", str(shared_data_dir), "--images", "300"]) == 0
    printed = capsys.readouterr().out
    assert "mnist test split (300 images)" in printed and "same class for 100.00%" in printed
    assert onnx_metadata(path)["dataset"] == "mnist"


def test_export_errors_are_one_line(tmp_path, capsys):
    assert main(["export", str(tmp_path / "none"), "--out", str(tmp_path / "x.onnx")]) == 2
    assert "checkpoint file not found" in capsys.readouterr().err
    assert main(["export", "--out", str(tmp_path / "y.onnx"), "--data-dir", str(tmp_path / "missing")]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "Traceback" not in err
    assert not (tmp_path / "x.onnx").exists() and not (tmp_path / "y.onnx").exists()
    with pytest.raises(ExportError, match="not an ONNX file written by digitlab"):
        import onnx

        onnx.save(onnx.helper.make_model(onnx.helper.make_graph([], "empty", [], [])), str(tmp_path / "z.onnx"))
        onnx_metadata(tmp_path / "z.onnx")


@pytest.mark.parametrize("name", list_models())
def test_every_zoo_classifier_exports_and_matches_pytorch(name, tmp_path):
    """Every registered classifier (untrained, seeded) survives the dynamo exporter and computes the same logits."""
    torch.manual_seed(0)
    model = create_model(name).eval()
    meta = model_meta(name, {}, "mnist", [str(d) for d in range(10)], Normalization(0.1307, 0.3081),
                      weights_sha256=name)
    report = export_onnx(Checkpoint(model, meta), tmp_path / f"{name}.onnx", images=32)
    assert report.max_abs_diff < 1e-3 and report.agreement == 1.0


def test_adaptive_max_pool_is_the_exportable_same_as_torchs():
    """The per-bin form that export uses takes the same bins as PyTorch's kernel (used outside export)."""
    from digitlab.models.layers import adaptive_max_pool, binned_max_pool

    for h, w, n in [(7, 7, 4), (7, 7, 2), (8, 8, 4), (5, 6, 3), (14, 14, 1)]:
        x = torch.randn(2, 3, h, w)
        expected = torch.nn.functional.adaptive_max_pool2d(x, n)
        assert torch.equal(binned_max_pool(x, n), expected)
        assert torch.equal(adaptive_max_pool(x, n), expected)
