"""The Python API at the package's top: `import digitlab`, then digitlab.read, predict, fit and
evaluate_checkpoint, on real MNIST digits and the bundled reader."""

import subprocess
import sys

import pytest
from PIL import Image
from read_helpers import string_image, sure_digits, test_digits  # noqa: F401 - fixture

import digitlab

API = ["read", "ReadConfig", "predict", "evaluate_checkpoint", "fit", "TrainConfig", "get_preset", "load_checkpoint",
       "load_dataset", "create_model", "list_models"]


@pytest.fixture(scope="module")
def amount(test_digits, tmp_path_factory):
    """An image of the string 305 written with real MNIST test digits that the bundled classifier reads."""
    from digitlab.read.recognize import bundled_reader

    model, _, _ = bundled_reader()
    path = tmp_path_factory.mktemp("api") / "amount.png"
    # trained with label smoothing 0.1, the model's raw softmax tops out near 0.9
    Image.fromarray(string_image(sure_digits(model, *test_digits, sure=0.85), "305")).save(path)
    return path


def test_import_is_cheap_and_dir_lists_the_api():
    code = ("import sys, digitlab; print(dir(digitlab)); "
            "print([m for m in ('torch', 'cv2', 'numpy') if m in sys.modules])")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    listed, heavy = result.stdout.splitlines()
    assert heavy == "[]"
    assert all(f"'{name}'" in listed for name in API)
    assert "__version__" in dir(digitlab)
    with pytest.raises(AttributeError, match="no attribute 'reed'"):
        digitlab.reed


def test_digitlab_read_reads_before_and_after_its_modules_are_imported(amount):
    """digitlab.read is the package and its read function alike: a submodule import, which sets the
    package as digitlab's attribute, changes nothing."""
    code = (f"import digitlab\n"
            f"print(digitlab.read({str(amount)!r}).text)\n"
            f"import digitlab.read.recognize\n"
            f"from digitlab.read import ReadConfig\n"
            f"print(digitlab.read({str(amount)!r}, config=ReadConfig()).text)\n")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    assert result.stdout.split() == ["305", "305"]
    import digitlab.read.recognize

    assert digitlab.read(amount).text == "305"
    assert digitlab.read.read(amount, None, digitlab.ReadConfig()).text == "305"
    assert digitlab.read.ReadConfig is digitlab.ReadConfig


def test_predict_fit_and_evaluate_from_the_top(shared_data_dir, tmp_path, monkeypatch, test_digits):
    images, labels = test_digits
    pictures = [Image.fromarray(255 - images[i]).resize((84, 84)) for i in range(10)]
    predictions = digitlab.predict(pictures)  # the bundled classifier
    assert sum(int(p.label) == y for p, y in zip(predictions, labels[:10])) >= 9
    cfg = digitlab.TrainConfig(model="fastcnn", data_dir=str(shared_data_dir), epochs=1, limit=2048, threads=1)
    summary = digitlab.fit(cfg, tmp_path / "run", progress=False, log=lambda s: None)
    assert summary["sizes"]["train"] == 2048
    assert len(digitlab.predict(pictures[:2], checkpoint=tmp_path / "run")) == 2
    # without data_dir the run's data is found where the run found it, whatever $DIGITLAB_DATA says now
    monkeypatch.setenv("DIGITLAB_DATA", str(tmp_path / "empty"))
    report = digitlab.evaluate_checkpoint(tmp_path / "run")
    assert report["dataset"] == "mnist" and report["images"] == 10_000 and report["accuracy"] > 0.5
