"""int8 quantization through ONNX Runtime: the bundled MNIST classifier, calibrated on real training digits, keeps
its accuracy on real test digits in a file at least 3x smaller, which carries the meta and runs in the Recognizer;
a one-split dataset calibrates on its run's training share; bad input is a one-line error and leaves no file."""

import re
import shutil
import sys

import onnx
import pytest

from digitlab.checkpoint import load_checkpoint
from digitlab.cli import main
from digitlab.compress.quantization import QuantizeError, quantize
from digitlab.data import load_dataset
from digitlab.engine import Recognizer, onnx_cache
from digitlab.errors import ConfigError
from digitlab.export import ExportError, onnx_metadata
from digitlab.infer import as_checkpoint
from digitlab.train.config import TrainConfig


@pytest.fixture(scope="module")
def cache(tmp_path_factory):
    """The ONNX cache of these tests: the bundled classifier is exported into it once, not into the user's."""
    with pytest.MonkeyPatch.context() as mp:
        path = tmp_path_factory.mktemp("cache")
        mp.setenv("DIGITLAB_CACHE", str(path))
        yield path


@pytest.fixture(scope="module")
def mnist_int8(cache, shared_data_dir, tmp_path_factory):
    out = tmp_path_factory.mktemp("int8") / "mnist-int8.onnx"
    return quantize(None, out, data_dir=shared_data_dir, calibration=200, eval_images=1000)


def test_int8_keeps_the_accuracy_in_a_file_3x_smaller(mnist_int8):
    r = mnist_int8
    assert r.path.is_file() and r.bytes == r.path.stat().st_size and r.fp32_bytes >= 3 * r.bytes
    assert r.calibration == "mnist train split (200 images)"
    assert r.source == "mnist test split (1000 images)" and r.images == 1000
    assert r.fp32_accuracy > 0.99 and abs(r.int8_accuracy - r.fp32_accuracy) <= 0.005
    assert r.agreement >= 0.99 and 0 < r.max_prob_diff < 0.5
    assert r.drop == pytest.approx(100 * (r.fp32_accuracy - r.int8_accuracy)) and r.degraded == (r.drop > 0.1)


def test_the_file_carries_the_meta_and_runs_in_the_recognizer(mnist_int8, shared_data_dir):
    meta, bundled = onnx_metadata(mnist_int8.path), as_checkpoint(None).meta
    for key in ("model", "dataset", "classes", "normalization", "temperature", "weights_sha256"):
        assert meta[key] == bundled[key]
    assert "config" not in meta
    assert meta["quantization"] == {
        "format": "QDQ", "weights": "uint8", "activations": "uint8", "per_channel": True, "method": "minmax",
        "calibration_images": 200, "calibration_source": "mnist train split (200 images)", "calibration_seed": 0,
        "onnxruntime": meta["quantization"]["onnxruntime"]}
    weights = [t for t in onnx.load(str(mnist_int8.path)).graph.initializer if len(t.dims) == 4]  # conv kernels
    assert weights and all(t.data_type == onnx.TensorProto.UINT8 for t in weights)
    engine = Recognizer(mnist_int8.path, batch_size=256)
    test = load_dataset("mnist", "test", data_dir=shared_data_dir)
    predicted = engine.probabilities(test.images[:1000]).argmax(1)
    assert float((predicted == test.labels[:1000].numpy()).mean()) == mnist_int8.int8_accuracy
    labels = [label for label, _ in engine.predict(test.images[:20])]
    assert labels == [engine.classes[i] for i in predicted[:20]]


def test_cli_quantizes_an_exported_file(mnist_int8, cache, shared_data_dir, tmp_path, capsys):
    fp32 = tmp_path / "mnist.onnx"  # what `digitlab export` wrote: the engine's cached export of the bundled model
    shutil.copyfile(onnx_cache(as_checkpoint(None).meta), fp32)
    out = tmp_path / "mnist-int8.onnx"
    assert main(["quantize", str(fp32), "--out", str(out), "--data-dir", str(shared_data_dir), "--calibration", "100",
                 "--method", "entropy", "--no-per-channel", "--eval-images", "500"]) == 0
    printed = capsys.readouterr().out
    pattern = (rf"wrote {re.escape(str(out))} \(([\d,]+) bytes, (\d+\.\d)x smaller than fp32 ([\d,]+) bytes\); "
               r"mnist test split \(500 images\): fp32 (\d+\.\d\d)%, int8 (\d+\.\d\d)% \([+-]\d\.\d\d pt\), "
               r"same class for (\d+\.\d\d)%\n")
    m = re.fullmatch(pattern, printed)
    assert m, printed
    assert int(m[1].replace(",", "")) == out.stat().st_size and float(m[2]) >= 3
    assert int(m[3].replace(",", "")) == fp32.stat().st_size
    assert abs(float(m[4]) - float(m[5])) <= 0.5 and float(m[6]) >= 99
    q = onnx_metadata(out)["quantization"]
    assert (q["method"], q["per_channel"], q["calibration_images"]) == ("entropy", False, 100)

    assert main(["quantize", str(fp32), "--out", str(out), "--data-dir", str(shared_data_dir), "--calibration", "50",
                 "--eval-images", "100", "--max-drop", "-1"]) == 0  # any result "drops" more than -1 point
    assert "digitlab: warning: int8 lost" in capsys.readouterr().err


def test_a_one_split_dataset_calibrates_on_the_runs_training_share(cache, tmp_path):
    from digitlab.train.trainer import fit

    run = tmp_path / "digits-run"
    fit(TrainConfig(model="fastcnn", dataset="digits", epochs=2, batch_size=32), run, progress=False)
    r = quantize(run, tmp_path / "digits-int8.onnx", calibration=5000)
    assert r.calibration == "digits training share of the run (1259 images)"  # ~70% of 1797: all of it
    assert r.source == "digits test share held out by the run (268 images)"
    assert r.fp32_accuracy > 0.8 and r.agreement >= 0.95
    with pytest.raises(QuantizeError, match="quantize the run's checkpoint instead"):  # the .onnx has no split
        quantize(onnx_cache(load_checkpoint(run).meta), tmp_path / "again.onnx")
    assert not (tmp_path / "again.onnx").exists()


def test_the_api_names_are_the_functions_after_their_modules_are_imported():
    import digitlab
    import digitlab.compress
    import digitlab.compress.pruning  # noqa: F401 - a submodule import sets an attribute of the package

    assert digitlab.quantize is quantize and digitlab.compress.quantize is quantize
    assert digitlab.prune is digitlab.compress.prune is digitlab.compress.pruning.prune


def test_errors_are_one_line_and_leave_no_file(mnist_int8, cache, tmp_path, capsys, monkeypatch):
    out = tmp_path / "x.onnx"
    onnx.save(onnx.helper.make_model(onnx.helper.make_graph([], "empty", [], [])), str(tmp_path / "plain.onnx"))
    (tmp_path / "junk.onnx").write_bytes(b"not a model")
    for argv, message in [(["--calibration", "0"], "--calibration must be >= 1"),
                          ([str(tmp_path / "plain.onnx")], "not an ONNX file written by digitlab"),
                          ([str(tmp_path / "junk.onnx")], "not a readable ONNX file"),
                          ([str(tmp_path / "none.onnx")], "no such ONNX file"),
                          ([str(mnist_int8.path)], "already quantized (minmax)")]:
        assert main(["quantize", *argv, "--out", str(out)]) == 2
        err = capsys.readouterr().err
        assert message in err and err.count("\n") == 1 and "Traceback" not in err
    with pytest.raises(ConfigError, match="method must be one of minmax, entropy, percentile"):
        quantize(None, out, method="kl")
    monkeypatch.setitem(sys.modules, "onnxruntime.quantization", None)
    with pytest.raises(ExportError, match=r"needs onnx and onnxruntime: pip install -e '\.\[onnx\]'"):
        quantize(None, out)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["junk.onnx", "plain.onnx"]


# --- quantization-aware fine-tuning ---------------------------------------------------------------------------

def test_rounding_puts_weights_on_the_int8_grid_of_the_folded_layer_and_comes_off_clean():
    import torch
    from torch import nn

    from digitlab.compress.qat import with_rounding

    torch.manual_seed(0)
    model = nn.Sequential(nn.Conv2d(1, 4, 3), nn.BatchNorm2d(4), nn.ReLU(), nn.Flatten(), nn.Linear(4 * 26 * 26, 3))
    with torch.no_grad():
        model[1].weight.copy_(torch.tensor([0.5, 2.0, -1.0, 3.0]))
        model[1].running_var.copy_(torch.tensor([1.0, 4.0, 0.25, 9.0]))
    model.eval()
    x = torch.randn(5, 1, 28, 28)
    expected = model(x)
    for per_channel in (True, False):
        rounded = with_rounding(model, per_channel)
        conv, bn, linear = rounded.model[0], rounded.model[1], rounded.model[4]
        fold = (bn.weight / torch.sqrt(bn.running_var + bn.eps)).detach().reshape(-1, 1, 1, 1)
        for w in (conv.weight * fold, linear.weight):  # what the quantizer sees: the conv folded into its BN
            w = w.detach()
            flat = w.flatten(1) if per_channel else w.reshape(1, -1)
            low = flat.amin(1).clamp_max(0).reshape(-1, *[1] * (w.dim() - 1)) if per_channel else flat.min()
            high = flat.amax(1).clamp_min(0).reshape(-1, *[1] * (w.dim() - 1)) if per_channel else flat.max()
            steps = (w - low) / ((high - low) / 255)  # uint8 levels above the low end
            assert torch.allclose(steps, steps.round(), atol=2e-3) and steps.min() >= -1e-3 and steps.max() <= 255.001
            assert len(torch.unique(steps.round())) > 20  # not collapsed onto a few levels
        assert not torch.allclose(rounded.model(x), expected)  # the rounding is in the forward pass
        plain = rounded.remove()
        assert not any(hasattr(m, "parametrizations") or hasattr(m, "input_rounding") for m in plain.modules())
        assert not any(m._forward_pre_hooks for m in plain.modules())
        assert torch.allclose(plain(x), expected, atol=1e-6)  # the float weights, as they were
        assert sorted(plain.state_dict()) == sorted(model.state_dict())


def test_input_rounding_has_256_levels_with_zero_exact():
    import torch

    from digitlab.compress.qat import InputRounding

    r = InputRounding().train()
    x = torch.linspace(-1, 3, 10_000)
    y = r(x)
    assert len(torch.unique(y)) <= 256 and (y == 0).any() and (y - x).abs().max() <= 4 / 255
    assert float(r.low) == -1 and float(r.high) == 3
    r(torch.linspace(-5, 5, 100))  # the running range moves 1% of the way
    assert float(r.low) == pytest.approx(-1.04) and float(r.high) == pytest.approx(3.02)
    r.eval()
    r(torch.linspace(-50, 50, 100))
    assert float(r.low) == pytest.approx(-1.04)  # only training moves it


def test_quantization_aware_fine_tuning_writes_the_better_file_chosen_on_validation(digits_run, cache, tmp_path,
                                                                                    capsys):
    out = tmp_path / "qat.onnx"
    assert main(["quantize", str(digits_run), "--out", str(out), "--qat", "always", "--qat-epochs", "2",
                 "--no-per-channel", "--no-progress"]) == 0
    printed = capsys.readouterr().out
    m = re.search(r"quantization-aware fine-tuning: 2 epochs \((\d+) steps, lr ([\d.e-]+)\); on the run's validation "
                  r"images \((\d+)\): fp32 (\d+\.\d\d)%, post-training int8 (\d+\.\d\d)%, after fine-tuning "
                  r"(\d+\.\d\d)%; wrote the (fine-tuned model's|post-training one)", printed)
    assert m, printed
    steps, val = int(m[1]), int(m[3])
    assert steps == 2 * -(-1259 // 32) and val >= 250  # 2 passes over the run's training share, batch 32
    meta = onnx_metadata(out)
    tuned_better = float(m[6]) > float(m[5])
    assert (m[7] == "fine-tuned model's") == tuned_better
    assert ("qat" in meta["quantization"]) == tuned_better
    if tuned_better:
        assert meta["quantization"]["qat"] == {"epochs": 2.0, "steps": steps, "lr": float(m[2]), "schedule": "cosine"}
        assert meta["weights_sha256"] is None  # not the checkpoint's weights any more
    engine = Recognizer(out)
    assert engine.classes == load_checkpoint(digits_run).classes

    r = quantize(digits_run, tmp_path / "auto.onnx", max_drop=100)  # auto: nothing lost beyond 100 points
    assert r.qat["ran"] is False and "no more than 100" in r.qat["why"]
    assert quantize(digits_run, tmp_path / "never.onnx", qat="never").qat is None
    with pytest.raises(QuantizeError, match="needs a checkpoint trained by `digitlab train`"):
        quantize(onnx_cache(load_checkpoint(digits_run).meta), tmp_path / "x.onnx", qat="always")
    with pytest.raises(ConfigError, match="qat must be one of auto, always, never"):
        quantize(digits_run, tmp_path / "x.onnx", qat="yes")
    assert not (tmp_path / "x.onnx").exists()
