"""`digitlab read` and `digitlab eval-read` through digitlab's own main(), on real MNIST test digits."""

import csv
import json

import numpy as np
import pytest
from PIL import Image
from read_helpers import read_model, string_image, sure_digits, test_digits, untrained_run  # noqa: F401

import digitlab.cli
from digitlab.read import synth
from digitlab.read.cli import add_commands


@pytest.fixture
def cli(monkeypatch, capsys):
    """main(argv) -> (exit code, stdout, stderr), with the read commands added if the CLI lacks them."""
    build = digitlab.cli.build_parser

    def with_read():
        parser = build()
        sub = next(a for a in parser._actions if a.dest == "command")
        if "read" not in sub.choices:
            add_commands(sub)
        return parser

    monkeypatch.setattr(digitlab.cli, "build_parser", with_read)
    monkeypatch.delenv("DIGITLAB_MODEL", raising=False)
    monkeypatch.delenv("DIGITLAB_VERIFIER", raising=False)
    monkeypatch.delenv("DIGITLAB_LINE_READER", raising=False)

    def run(*argv):
        code = digitlab.cli.main([str(a) for a in argv])
        out, err = capsys.readouterr()
        return code, out, err

    return run


@pytest.fixture(scope="module")
def files(read_model, test_digits, tmp_path_factory):
    folder = tmp_path_factory.mktemp("read-cli")
    digits = sure_digits(read_model[0], *test_digits)
    paths = {}
    for text in ("2024", "715"):
        paths[text] = folder / f"amount-{text}.png"
        Image.fromarray(string_image(digits, text)).save(paths[text])
    return paths


def test_read_reports_bad_files_and_bad_options_in_one_line(cli, untrained_run, tmp_path):
    run = untrained_run
    junk = tmp_path / "junk.png"
    junk.write_bytes(b"no image here")
    code, _, err = cli("read", junk, "--model", run)
    assert code == 2 and "not an image file" in err and err.count("\n") == 1
    code, _, err = cli("read", junk, "--model", run, "--set", "reject_below=high")
    assert code == 2 and "reject_below" in err and "expects float" in err
    code, _, err = cli("read", junk, "--model", run, "--set", "reject_bellow=0.7")
    assert code == 2 and "did you mean 'reject_below'" in err
    code, _, err = cli("read", junk, "--model", tmp_path / "nothing")
    assert code == 2 and "checkpoint file not found" in err


@pytest.mark.slow
def test_read_prints_strings_and_json(cli, read_model, files, monkeypatch):
    _, run = read_model
    code, out, _ = cli("read", files["2024"], files["715"], "--model", run)
    assert code == 0
    assert f"{files['2024']}: 2024" in out and f"{files['715']}: 715" in out
    monkeypatch.setenv("DIGITLAB_MODEL", str(run))
    code, out, _ = cli("read", files["715"], "--json")
    assert code == 0
    result = json.loads(out)
    assert result["text"] == "715"
    boxes = [d["box"] for d in result["lines"][0]["digits"]]
    assert len(boxes) == 3 and all(w > 0 and h > 0 for _, _, w, h in boxes)
    assert 0 < result["confidence"] <= 1


@pytest.mark.slow
def test_read_draws_annotations_and_panels(cli, read_model, files, tmp_path):
    _, run = read_model
    code, _, _ = cli("read", files["715"], "--model", run, "--annotate", tmp_path / "boxes.png",
                     "--panel", tmp_path / "panel.png")
    assert code == 0
    boxes = np.asarray(Image.open(tmp_path / "boxes.png"))
    original = np.asarray(Image.open(files["715"]))
    assert boxes.shape == (*original.shape, 3)
    assert (boxes[..., 1] > boxes[..., 0] + 60).sum() > 50  # green boxes and labels were drawn
    panel = np.asarray(Image.open(tmp_path / "panel.png"))
    assert panel.shape[1] > 2 * boxes.shape[1] * panel.shape[0] / boxes.shape[0] * 0.8  # three parts side by side
    code, _, _ = cli("read", files["715"], files["2024"], "--model", run, "--annotate", tmp_path / "a.png")
    assert (tmp_path / "a-amount-715.png").is_file() and (tmp_path / "a-amount-2024.png").is_file()


@pytest.mark.slow
def test_eval_read_scores_a_folder_and_keeps_a_gallery_of_failures(cli, read_model, test_digits, tmp_path):
    _, run = read_model
    images, labels = test_digits
    folder = tmp_path / "bench"
    labels_csv = synth.write_benchmark(folder, images, labels, synth.EASY, n=6, seed=3)
    rows = list(csv.reader(open(labels_csv)))
    rows[1][1] = rows[1][1] + "1"  # one wrong label: that image must fail (too few digits read)
    rows.append(["missing.png", "12"])  # and a file that is not there is reported, not fatal
    with open(labels_csv, "w", newline="") as f:
        csv.writer(f).writerows(rows)
    code, out, _ = cli("eval-read", folder, "--model", run, "--out", tmp_path / "eval")
    assert code == 0
    assert "images: 7" in out and "exact match:" in out and "too_few" in out and "unreadable 1" in out
    report = json.loads((tmp_path / "eval" / "report.json").read_text())
    assert report["images"] == 7 and report["failures"]["unreadable"] == 1 and report["exact_match"] <= 5 / 7
    assert report["failures"]["too_few"] >= 1
    gallery = list((tmp_path / "eval" / "failures").glob("*.png"))
    assert any("too_few" in p.name for p in gallery)
    assert len(gallery) == sum(v for k, v in report["failures"].items() if k != "unreadable")


def test_read_warns_when_the_models_temperature_says_little(cli, untrained_run, tmp_path):
    from digitlab.checkpoint import load_checkpoint, save_checkpoint

    ckpt = load_checkpoint(untrained_run)
    save_checkpoint(tmp_path / "clean-val", ckpt.model, {**ckpt.meta, "temperature": 0.05, "temperature_val_errors": 1})
    page = tmp_path / "blank.png"
    Image.fromarray(np.full((40, 60), 255, np.uint8)).save(page)
    code, _, err = cli("read", page, "--model", tmp_path / "clean-val", "--verifier", "none")
    assert code == 0 and "note: the temperature was fitted on a validation split with 1 misread" in err
    code, _, err = cli("read", page, "--model", untrained_run, "--verifier", "none")
    assert code == 0 and "note" not in err


def test_train_verifier_then_read_with_it(cli, untrained_run, shared_data_dir, tmp_path, monkeypatch):
    out = tmp_path / "verifier"
    code, stdout, err = cli("train-verifier", out, "--data-dir", shared_data_dir, "--set", "images=12",
                            "--set", "val_images=4", "--set", "epochs=1", "--set", "model=lenet5")
    assert code == 0, err
    assert (out / "model.json").is_file() and "verifier saved" in stdout
    meta = json.loads((out / "model.json").read_text())
    assert meta["role"] == "verifier" and len(meta["classes"]) == 11 and meta["config"]["images"] == 12
    page = tmp_path / "blank.png"
    Image.fromarray(np.full((40, 60), 255, np.uint8)).save(page)
    code, stdout, _ = cli("read", page, "--model", untrained_run, "--verifier", out)
    assert code == 0 and "(no digits found)" in stdout
    # A classifier is not a verifier; a bad --set key of the verifier config is one line too
    code, _, err = cli("read", page, "--model", untrained_run, "--verifier", untrained_run)
    assert code == 2 and "not a verifier" in err and err.count("\n") == 1
    code, _, err = cli("train-verifier", out, "--set", "imagez=3")
    assert code == 2 and "did you mean 'images'" in err
    # $DIGITLAB_VERIFIER names one; 'none' reads without
    monkeypatch.setenv("DIGITLAB_VERIFIER", str(untrained_run))
    code, _, err = cli("read", page, "--model", untrained_run)
    assert code == 2 and "not a verifier" in err
    code, _, _ = cli("read", page, "--model", untrained_run, "--verifier", "none")
    assert code == 0


def test_train_line_reader_then_read_and_eval_with_it(cli, read_model, files, shared_data_dir, tmp_path, monkeypatch):
    _, run = read_model
    out = tmp_path / "line-reader"
    code, stdout, err = cli("train-line-reader", out, "--data-dir", shared_data_dir, "--set", "images=12",
                            "--set", "val_images=4", "--set", "epochs=1", "--set", "workers=1", "--set", "width=8",
                            "--set", "hidden=16")
    assert code == 0, err
    assert "line reader saved" in stdout
    meta = json.loads((out / "model.json").read_text())
    assert meta["role"] == "line-reader" and meta["config"]["images"] == 12 and meta["dataset"] == "mnist"
    code, stdout, err = cli("read", files["2024"], "--model", run, "--line-reader", out, "--json")
    assert code == 0, err
    assert len(json.loads(stdout)["lines"]) == 1
    # A classifier is not a line reader; $DIGITLAB_LINE_READER names one; 'none' reads without
    code, _, err = cli("read", files["2024"], "--model", run, "--line-reader", run)
    assert code == 2 and "not a line reader" in err and err.count("\n") == 1
    monkeypatch.setenv("DIGITLAB_LINE_READER", str(run))
    code, _, err = cli("eval-read", files["2024"].parent, "--model", run)
    assert code == 2 and "not a line reader" in err
    code, stdout, _ = cli("read", files["2024"], "--model", run, "--line-reader", "none")
    assert code == 0 and f"{files['2024']}: 2024 " in stdout
    code, _, err = cli("train-line-reader", out, "--set", "epoch=3")
    assert code == 2 and "did you mean 'epochs'" in err
    # A line reader of another script is not used, and `read` says so
    (out / "model.json").write_text(json.dumps({**meta, "dataset": "kannada-mnist"}))
    code, stdout, err = cli("read", files["2024"], "--model", run, "--line-reader", out)
    assert code == 0 and f"{files['2024']}: 2024 " in stdout
    assert "learnt kannada-mnist digits" in err and "not used" in err
