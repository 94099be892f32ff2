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
        "format": "QDQ", "weights": "int8", "activations": "uint8", "per_channel": True, "method": "minmax",
        "calibration_images": 200, "calibration_source": "mnist train split (200 images)", "calibration_seed": 0,
        "onnxruntime": meta["quantization"]["onnxruntime"]}
    weights = [t for t in onnx.load(str(mnist_int8.path)).graph.initializer if len(t.dims) == 4]  # conv kernels
    assert weights and all(t.data_type == onnx.TensorProto.INT8 for t in weights)
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
