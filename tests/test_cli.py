import json
import subprocess
import sys

import pytest
from PIL import Image

from digitlab.cli import main
from digitlab.data import load_dataset


def run_cli(capsys, *argv):
    code = main([str(a) for a in argv])
    out, err = capsys.readouterr()
    return code, out, err


@pytest.fixture(scope="module")
def trained(shared_data_dir, tmp_path_factory):
    """A small real model: lenet5-improved, 4096 MNIST images, 2 epochs, through the CLI."""
    out = tmp_path_factory.mktemp("cli") / "run"
    code = main(["train", "--model", "lenet5-improved", "--data-dir", str(shared_data_dir), "--epochs", "2",
                 "--limit", "4096", "--lr", "0.002", "--threads", "1", "--out", str(out), "--no-progress"])
    assert code == 0
    return out


@pytest.fixture(scope="module")
def digit_files(shared_data_dir, tmp_path_factory):
    """Real MNIST test digits saved as image files the way users have them: big, dark ink on white."""
    folder = tmp_path_factory.mktemp("digits")
    test = load_dataset("mnist", "test", data_dir=shared_data_dir)
    images, labels = test.images[-40:].numpy(), test.labels[-40:]
    paths = []
    for i, (img, label) in enumerate(zip(images, labels)):
        big = Image.fromarray(255 - img).resize((140, 180), Image.BILINEAR)  # dark on light, not square
        canvas = Image.new("L", (300, 260), 255)
        canvas.paste(big, (30 + i, 40))
        path = folder / f"{i:02d}_{label}.png"
        canvas.save(path)
        paths.append(path)
    return paths, labels.tolist()


def test_datasets_lists_every_dataset_with_presence(capsys, shared_data_dir):
    code, out, _ = run_cli(capsys, "datasets", "--data-dir", shared_data_dir)
    assert code == 0
    for name in ("mnist", "fashion-mnist", "kannada-mnist", "tibetan-mnist", "usps", "digits"):
        assert name in out
    mnist_train = next(line for line in out.splitlines() if line.startswith("mnist ") and " train " in line)
    assert "60,000" in mnist_train and " yes " in mnist_train


def test_models_prints_params_and_macs(capsys):
    code, out, _ = run_cli(capsys, "models")
    assert code == 0
    lenet = next(line for line in out.splitlines() if line.startswith("lenet5 "))
    assert "61,706" in lenet and "0.42M" in lenet
    code, out, _ = run_cli(capsys, "models", "lenet*")
    assert "resnet18" not in out and "lenet-attention" in out


def test_presets_lists_published_figures(capsys):
    code, out, _ = run_cli(capsys, "presets")
    assert code == 0 and "98.36%" in out and "mobilenetv3-tibetan" in out


def test_train_dry_run_and_runs_table(capsys, shared_data_dir, tmp_path):
    out_dir = tmp_path / "runs" / "dry"
    code, out, _ = run_cli(capsys, "train", "--preset", "lenet5-classic", "--data-dir", shared_data_dir,
                           "--dry-run", "--out", out_dir, "--no-progress")
    assert code == 0
    assert "lenet5-classic: best_val_accuracy" in out and "published val accuracy 98.36%" in out
    summary = json.loads((out_dir / "summary.json").read_text())
    assert summary["epochs"] == 1 and summary["sizes"]["train"] == 512
    code, out, _ = run_cli(capsys, "runs", tmp_path / "runs")
    assert code == 0 and str(out_dir) in out and "finished" in out


@pytest.mark.parametrize("argv, message", [
    (["train", "--lr", "fast"], "config key 'lr' expects float"),
    (["train", "--preset", "lenet5-clasic"], "did you mean 'lenet5-classic'"),
    (["train", "--model", "lenet", "--epochs", "1"], "lenet5"),
    (["train", "--dataset", "mnistt"], "mnist"),
    (["eval", "/nonexistent/run"], "not found"),
])
def test_bad_input_gives_one_line_error(capsys, argv, message):
    code, out, err = run_cli(capsys, *argv)
    assert code == 2
    assert err.startswith("digitlab: error: ") and err.count("\n") == 1 and "Traceback" not in err
    assert message in err


def test_missing_dataset_names_files_and_checksums(capsys, tmp_path):
    code, _, err = run_cli(capsys, "train", "--data-dir", tmp_path, "--epochs", "1")
    assert code == 2 and "train-images-idx3-ubyte.gz" in err and "440fcabf73cc546f" in err


def test_eval_prints_accuracy_and_writes_confusion(capsys, trained, shared_data_dir, tmp_path):
    code, out, _ = run_cli(capsys, "eval", trained, "--data-dir", shared_data_dir, "--out", tmp_path)
    assert code == 0 and "mnist/test: 10,000 images" in out
    accuracy = float(out.split("accuracy ")[1].split("%")[0])
    assert accuracy > 90
    assert (tmp_path / "confusion-mnist-test.png").stat().st_size > 1000
    code, out, _ = run_cli(capsys, "eval", trained, "--data-dir", shared_data_dir, "--out", tmp_path, "--json")
    report = json.loads(out)
    assert report["accuracy"] == pytest.approx(accuracy / 100, abs=1e-4)
    assert len(report["per_class_accuracy"]) == 10


def test_predict_reads_user_style_image_files(capsys, trained, digit_files):
    paths, labels = digit_files
    code, out, _ = run_cli(capsys, "predict", trained, *paths, "--json")
    assert code == 0
    predictions = json.loads(out)
    hits = sum(int(p["label"]) == y for p, y in zip(predictions, labels))
    # dark-on-light, resized, off-centre copies of real test digits: the MNIST-style path must recover them
    assert hits >= 0.85 * len(labels)
    assert all(abs(sum(p["probabilities"]) - 1) < 1e-4 for p in predictions)


def test_predict_rejects_a_file_that_is_not_an_image(capsys, trained, tmp_path):
    bad = tmp_path / "notes.png"
    bad.write_text("not an image")
    code, _, err = run_cli(capsys, "predict", trained, bad)
    assert code == 2 and "notes.png" in err and err.count("\n") == 1


def test_console_script_runs():
    result = subprocess.run([sys.executable, "-m", "digitlab.cli", "--version"], capture_output=True, text=True)
    assert result.returncode == 0 and result.stdout.startswith("digitlab ")


def test_download_command_fetches_from_a_mirror(capsys, shared_data_dir, tmp_path, monkeypatch):
    from data_helpers import MirrorServer

    with MirrorServer() as server:
        for name in ("t10k-images-idx3-ubyte.gz", "t10k-labels-idx1-ubyte.gz"):
            server.files[f"/mnist/{name}"] = (shared_data_dir / "mnist" / name).read_bytes()
        monkeypatch.setenv("DIGITLAB_MIRROR", server.url + "/mnist/")
        code, out, _ = run_cli(capsys, "download", "mnist", "--split", "test", "--data-dir", tmp_path)
    assert code == 0 and "mnist/test: 10,000 images ready" in out
    assert (tmp_path / "mnist" / "t10k-images-idx3-ubyte.gz").read_bytes() == (
        shared_data_dir / "mnist" / "t10k-images-idx3-ubyte.gz").read_bytes()
