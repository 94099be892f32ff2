"""`digitlab read` and `digitlab eval-read` through digitlab's own main(), on real MNIST test digits."""

import csv
import dataclasses
import json
import warnings

import cv2
import numpy as np
import pytest
from PIL import Image
from read_helpers import read_model, string_image, sure_digits, test_digits, untrained_run  # noqa: F401

import digitlab.cli
from digitlab.read import ReadConfig, synth
from digitlab.read.recognize import DigitReading, Reading
from digitlab.read.render import CROP_SCALE, FONT, GREEN, RED, TITLE_SCALE, annotate, label_font, panel


@pytest.fixture
def cli(monkeypatch, capsys):
    """main(argv) -> (exit code, stdout, stderr); SystemExit (usage errors, --help) gives its code too."""
    for name in ("DIGITLAB_CHECKPOINT", "DIGITLAB_VERIFIER", "DIGITLAB_LINE_READER"):
        monkeypatch.delenv(name, raising=False)

    def run(*argv):
        try:
            code = digitlab.cli.main([str(a) for a in argv])
        except SystemExit as e:
            code = e.code
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
    code, _, err = cli("read", junk, "--checkpoint", run)
    assert code == 2 and "not an image file" in err and err.count("\n") == 1
    code, _, err = cli("read", junk, "--checkpoint", run, "--reject-below", "high")
    assert code == 2 and "reject_below" in err and "expects float" in err and err.count("\n") == 1
    code, _, err = cli("read", junk, "--checkpoint", run, "--binarization", "niblack")
    assert code == 2 and "binarization must be one of otsu, sauvola" in err
    code, _, err = cli("read", junk, "--checkpoint", run, "--threads", "-1")
    assert code == 2 and "--threads must be >= 0" in err
    code, _, err = cli("read", junk, "--checkpoint", run, "--reject-bellow", "0.7")
    assert code == 2 and err.splitlines()[0].startswith("usage: digitlab read [options] IMAGE")
    assert err.splitlines()[1] == ("digitlab read: error: unrecognized arguments: --reject-bellow 0.7 "
                                   "(did you mean --reject-below?)") and err.count("\n") == 2
    code, _, err = cli("read", junk, "--checkpoint", tmp_path / "nothing")
    assert code == 2 and "checkpoint file not found" in err
    code, _, err = cli("read", tmp_path, "--checkpoint", run)
    assert code == 2 and err == f"digitlab: error: {tmp_path} is a directory, not an image (give the image files " \
                                "in it)\n"


def test_read_lists_its_settings_with_defaults_and_meanings(cli):
    code, out, err = cli("read", "--list-settings")  # no image needed
    assert code == 0 and err == ""
    rows = {line.split()[0]: line for line in out.splitlines() if line.startswith("--")}
    assert len(rows) == len(dataclasses.fields(ReadConfig))
    assert rows["--reject-below"].split()[1] == "0.5" and "calibrated confidence" in rows["--reject-below"]
    assert rows["--binarization"].split()[1] == "otsu"
    assert "(one of otsu, sauvola)" in " ".join(out.split()) and "--keep-unread-lines" in rows
    code, out2, _ = cli("eval-read", "--list-settings")
    assert code == 0 and out2 == out


@pytest.mark.slow
def test_read_prints_strings_and_json(cli, read_model, files, monkeypatch):
    _, run = read_model
    code, out, _ = cli("read", files["2024"], files["715"], "--checkpoint", run)
    assert code == 0
    assert f"{files['2024']}: 2024" in out and f"{files['715']}: 715" in out
    monkeypatch.setenv("DIGITLAB_CHECKPOINT", str(run))
    code, out, _ = cli("read", files["715"], "--json")
    assert code == 0
    [result] = json.loads(out)  # a list, one reading per image, for one image too
    assert result["text"] == "715"
    boxes = [d["box"] for d in result["lines"][0]["digits"]]
    assert len(boxes) == 3 and all(w > 0 and h > 0 for _, _, w, h in boxes)
    assert 0 < result["confidence"] <= 1
    code, out, _ = cli("read", files["715"], files["2024"], "--json")
    assert code == 0 and [r["text"] for r in json.loads(out)] == ["715", "2024"]


@pytest.mark.slow
def test_read_draws_annotations_and_panels(cli, read_model, files, tmp_path):
    _, run = read_model
    code, _, _ = cli("read", files["715"], "--checkpoint", run, "--annotate", tmp_path / "boxes.png",
                     "--panel", tmp_path / "panel.png")
    assert code == 0
    boxes = np.asarray(Image.open(tmp_path / "boxes.png"))
    original = np.asarray(Image.open(files["715"]))
    assert boxes.shape == (*original.shape, 3)
    assert (boxes[..., 1] > boxes[..., 0] + 60).sum() > 50  # green boxes and labels were drawn
    panel = np.asarray(Image.open(tmp_path / "panel.png"))
    assert panel.shape[1] > 2 * boxes.shape[1] * panel.shape[0] / boxes.shape[0] * 0.8  # three parts side by side
    code, _, _ = cli("read", files["715"], files["2024"], "--checkpoint", run, "--annotate", tmp_path / "a.png")
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
    code, out, _ = cli("eval-read", folder, "--checkpoint", run, "--out", tmp_path / "eval")
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
    code, _, err = cli("read", page, "--checkpoint", tmp_path / "clean-val", "--verifier", "none")
    assert code == 0 and "note: the temperature was fitted on a validation split with 1 misread" in err
    code, _, err = cli("read", page, "--checkpoint", untrained_run, "--verifier", "none")
    assert code == 0 and "note" not in err


def test_train_verifier_then_read_with_it(cli, untrained_run, shared_data_dir, tmp_path, monkeypatch):
    out = tmp_path / "verifier"
    code, stdout, err = cli("train-verifier", "--out", out, "--data-dir", shared_data_dir, "--images", 12,
                            "--val-images", 4, "--epochs", 1, "--model", "lenet5", "--no-progress")
    assert code == 0, err
    assert (out / "model.json").is_file() and "verifier saved" in stdout
    meta = json.loads((out / "model.json").read_text())
    assert meta["role"] == "verifier" and len(meta["classes"]) == 11 and meta["config"]["images"] == 12
    # --resume takes the run's saved config; settings beside it are refused in one line
    code, _, err = cli("train-verifier", "--out", out, "--resume", "--images", 20)
    assert code == 2 and "--resume continues the run with its saved config" in err and err.count("\n") == 1
    code, stdout, err = cli("train-verifier", "--out", out, "--resume", "--data-dir", shared_data_dir, "--no-progress")
    assert code == 0, err
    assert json.loads((out / "model.json").read_text())["config"]["images"] == 12
    page = tmp_path / "blank.png"
    Image.fromarray(np.full((40, 60), 255, np.uint8)).save(page)
    code, stdout, _ = cli("read", page, "--checkpoint", untrained_run, "--verifier", out)
    assert code == 0 and "(no digits found)" in stdout
    # A classifier is not a verifier; a bad setting of the verifier is one line too
    code, _, err = cli("read", page, "--checkpoint", untrained_run, "--verifier", untrained_run)
    assert code == 2 and "not a verifier" in err and err.count("\n") == 1
    code, _, err = cli("train-verifier", "--out", out, "--imagez", 3)
    assert code == 2 and "(did you mean --images?)" in err
    code, _, err = cli("train-verifier", "--out", tmp_path / "v2", "--images", "many")
    assert code == 2 and "config key 'images' expects int" in err and err.count("\n") == 1
    code, _, err = cli("train-verifier", "--images", 3)
    assert code == 2 and "the following arguments are required: --out" in err
    # $DIGITLAB_VERIFIER names one; 'none' reads without
    monkeypatch.setenv("DIGITLAB_VERIFIER", str(untrained_run))
    code, _, err = cli("read", page, "--checkpoint", untrained_run)
    assert code == 2 and "not a verifier" in err
    code, _, _ = cli("read", page, "--checkpoint", untrained_run, "--verifier", "none")
    assert code == 0


def test_train_line_reader_then_read_and_eval_with_it(cli, read_model, files, shared_data_dir, tmp_path, monkeypatch):
    _, run = read_model
    out = tmp_path / "line-reader"
    code, stdout, err = cli("train-line-reader", "--out", out, "--data-dir", shared_data_dir, "--images", 12,
                            "--val-images", 4, "--epochs", 1, "--workers", 1, "--width", 8, "--hidden", 16,
                            "--no-progress")
    assert code == 0, err
    assert "line reader saved" in stdout
    meta = json.loads((out / "model.json").read_text())
    assert meta["role"] == "line-reader" and meta["config"]["images"] == 12 and meta["dataset"] == "mnist"
    code, stdout, err = cli("read", files["2024"], "--checkpoint", run, "--line-reader", out, "--json")
    assert code == 0, err
    assert len(json.loads(stdout)[0]["lines"]) == 1
    # A classifier is not a line reader; $DIGITLAB_LINE_READER names one; 'none' reads without
    code, _, err = cli("read", files["2024"], "--checkpoint", run, "--line-reader", run)
    assert code == 2 and "not a line reader" in err and err.count("\n") == 1
    monkeypatch.setenv("DIGITLAB_LINE_READER", str(run))
    code, _, err = cli("eval-read", files["2024"].parent, "--checkpoint", run)
    assert code == 2 and "not a line reader" in err
    code, stdout, _ = cli("read", files["2024"], "--checkpoint", run, "--line-reader", "none")
    assert code == 0 and f"{files['2024']}: 2024 " in stdout
    code, _, err = cli("train-line-reader", "--out", out, "--epoch", 3)
    assert code == 2 and "(did you mean --epochs?)" in err
    # A line reader of another script is not used, and `read` says so
    (out / "model.json").write_text(json.dumps({**meta, "dataset": "kannada-mnist"}))
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        code, stdout, err = cli("read", files["2024"], "--checkpoint", run, "--line-reader", out)
    assert code == 0 and f"{files['2024']}: 2024 " in stdout
    assert not caught and err.count("learnt kannada-mnist digits") == 1  # a note, not a warning besides
    assert "digitlab: note: the line reader learnt kannada-mnist digits, the model mnist: it is not used" in err


def _drawn(text: str, scale: float, color, thick: int = 1) -> np.ndarray:
    """`text` as cv2 draws it on white paper, cut to its ink."""
    canvas = np.full((300, 600, 3), 255, np.uint8)
    cv2.putText(canvas, text, (50, 200), FONT, scale, color, thick, cv2.LINE_AA)
    ys, xs = np.nonzero((canvas < 255).any(2))
    return canvas[ys.min():ys.max() + 1, xs.min():xs.max() + 1]


def _shows_whole(picture: np.ndarray, drawn: np.ndarray) -> bool:
    """The drawn text appears in the picture pixel for pixel (a label cut off at an edge does not)."""
    return cv2.matchTemplate(np.ascontiguousarray(picture), drawn, cv2.TM_SQDIFF).min() < 0.5  # float sums


def _reading(size, *digits) -> Reading:
    """A Reading of (text, box, rejected) digits on one line, as recognize makes it."""
    made = [DigitReading(text=t, best=t[0] if t != "?" else "7", confidence=0.53, probabilities=(), box=box,
                         line=0, rejected="low confidence" if rejected else None,
                         crop=np.zeros((28, 28), np.uint8)) for t, box, rejected in digits]
    return Reading(source="page", size=size, lines=[made], ignored=[], temperature=1.0, seconds=0.0)


@pytest.mark.parametrize("box", [(0, 0, 24, 40), (68, 0, 24, 40), (136, 0, 24, 40), (0, 40, 24, 40), (136, 40, 24, 40),
                                 (0, 80, 24, 40), (68, 80, 24, 40), (136, 80, 24, 40), (20, 0, 120, 120),
                                 (154, 0, 6, 40), (150, 80, 10, 40)])
@pytest.mark.parametrize("text, rejected", [("7", False), ("?", True), ("10", False)])
def test_annotated_labels_stay_inside_the_picture(box, text, rejected):
    """A digit at every edge and corner (and one as tall as the page, and narrow ones whose label is wider
    than their box at the right edge): its whole label is drawn in the 160 x 120 picture."""
    page = np.full((120, 160), 255, np.uint8)
    picture = annotate(_reading((160, 120), (text, box, rejected)), page)
    scale, thick = label_font(box[3])
    assert _shows_whole(picture, _drawn(text, scale, RED if rejected else GREEN, thick))


def test_panel_titles_and_crop_labels_stay_inside_the_picture():
    page = np.full((200, 20), 255, np.uint8)  # tall and narrow: its part is narrower than its title
    picture = panel(_reading((20, 200), ("?", (2, 80, 16, 30), True)), page)
    for text, scale, color in [("original", TITLE_SCALE, (0, 0, 0)), ("normalised crops", TITLE_SCALE, (0, 0, 0)),
                               ("? (7 0.53)", CROP_SCALE, RED)]:
        assert _shows_whole(picture, _drawn(text, scale, color)), text
