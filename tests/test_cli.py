import argparse
import dataclasses
import json
import subprocess
import sys

import pytest
from PIL import Image

from digitlab.cli import build_parser, commands, main
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
                           "--dry-run", "--out", out_dir, "--no-progress", "--lr", "0.002", "--channels-last", "false")
    assert code == 0
    assert "lenet5-classic: best_val_accuracy" in out and "published val accuracy 98.36%" in out
    summary = json.loads((out_dir / "summary.json").read_text())
    assert summary["epochs"] == 1 and summary["sizes"]["train"] == 512
    config = summary["config"]  # the preset's, with the settings given over it
    assert config["model"] == "lenet5" and config["lr"] == 0.002 and config["channels_last"] is False
    code, out, _ = run_cli(capsys, "runs", tmp_path / "runs")
    assert code == 0 and str(out_dir) in out and "finished" in out
    # on another dataset the preset's published MNIST figure means nothing: no verdict is printed
    code, out, _ = run_cli(capsys, "train", "--preset", "lenet5-classic", "--dataset", "digits", "--dry-run",
                           "--out", tmp_path / "runs" / "digits", "--no-progress")
    assert code == 0 and "published" not in out and "test accuracy" in out


@pytest.mark.parametrize("argv, message", [
    (["train", "--lr", "fast"], "config key 'lr' expects float"),
    (["train", "--preset", "lenet5-clasic"], "did you mean 'lenet5-classic'"),
    (["train", "--model", "lenet", "--epochs", "1"], "lenet5"),
    (["train", "--dataset", "mnistt"], "mnist"),
    (["train", "--dry-run", "--epochs", "many"], "config key 'epochs' expects int"),  # --dry-run checks too
    (["train", "--dry-run", "--optimizer", "adamm"], "optimizer must be one of sgd, adam, adamw"),
    (["train", "--resume", "--out", "runs/x", "--epochs", "3"], "--resume continues the run with its saved config"),
    (["eval", "--checkpoint", "/nonexistent/run"], "not found"),
    (["predict", "."], ". is a directory, not an image"),
])
def test_bad_input_gives_one_line_error(capsys, argv, message):
    code, out, err = run_cli(capsys, *argv)
    assert code == 2
    assert err.startswith("digitlab: error: ") and err.count("\n") == 1 and "Traceback" not in err
    assert message in err


def test_missing_dataset_names_files_and_checksums(capsys, tmp_path):
    code, _, err = run_cli(capsys, "train", "--data-dir", tmp_path, "--epochs", "1")
    assert code == 2 and "train-images-idx3-ubyte.gz" in err and "440fcabf73cc546f" in err


def test_eval_prints_accuracy_and_writes_confusion(capsys, trained, shared_data_dir, tmp_path, monkeypatch):
    # Without --data-dir the run's data is found where the run found it, whatever $DIGITLAB_DATA says now
    monkeypatch.setenv("DIGITLAB_DATA", str(tmp_path / "empty"))
    code, out, _ = run_cli(capsys, "eval", "--checkpoint", trained, "--out", tmp_path)
    assert code == 0 and "mnist/test: 10,000 images" in out
    accuracy = float(out.split("accuracy ")[1].split("%")[0])
    assert accuracy > 90
    assert (tmp_path / "confusion-mnist-test.png").stat().st_size > 1000
    monkeypatch.setenv("DIGITLAB_CHECKPOINT", str(trained))
    code, out, _ = run_cli(capsys, "eval", "--data-dir", shared_data_dir, "--out", tmp_path, "--json")
    report = json.loads(out)
    assert report["accuracy"] == pytest.approx(accuracy / 100, abs=1e-4)
    assert len(report["per_class_accuracy"]) == 10


def test_predict_reads_user_style_image_files(capsys, trained, digit_files):
    paths, labels = digit_files
    code, out, _ = run_cli(capsys, "predict", *paths, "--checkpoint", trained, "--json")
    assert code == 0
    predictions = json.loads(out)
    hits = sum(int(p["label"]) == y for p, y in zip(predictions, labels))
    # dark-on-light, resized, off-centre copies of real test digits: the MNIST-style path must recover them
    assert hits >= 0.85 * len(labels)
    assert all(abs(sum(p["probabilities"]) - 1) < 1e-4 for p in predictions)


def test_predict_without_a_checkpoint_uses_the_bundled_classifier(capsys, digit_files, monkeypatch):
    monkeypatch.delenv("DIGITLAB_CHECKPOINT", raising=False)
    paths, labels = digit_files
    code, out, _ = run_cli(capsys, "predict", *paths[:5])
    assert code == 0 and len(out.splitlines()) == 5
    assert sum(line.startswith(f"{p}: {y} (") for line, p, y in zip(out.splitlines(), paths, labels)) >= 4


def test_predict_prints_the_note_of_an_image_of_several_digits(capsys, monkeypatch):
    """An image that holds several digits gets a note pointing to `digitlab read` instead of a label."""
    import digitlab.infer

    @dataclasses.dataclass(frozen=True)
    class Noted(digitlab.infer.Prediction):  # Prediction.note is on its way to digitlab.infer
        note: str | None = None

    def predict(images, checkpoint=None, backend=None):
        return [Noted("one.png", "7", 7, [0.0] * 7 + [1.0, 0.0, 0.0]),
                Noted("many.png", None, 3, [0.1] * 10, "holds 4 digits: use `digitlab read many.png`")]

    monkeypatch.setattr(digitlab.infer, "predict", predict)
    code, out, _ = run_cli(capsys, "predict", "one.png", "many.png")
    assert code == 0
    assert out.splitlines()[0].startswith("one.png: 7 (100.0%)")
    assert out.splitlines()[1] == "many.png: holds 4 digits: use `digitlab read many.png`"
    code, out, _ = run_cli(capsys, "predict", "one.png", "many.png", "--json")
    assert [p["note"] for p in json.loads(out)] == [None, "holds 4 digits: use `digitlab read many.png`"]


def test_predict_rejects_a_file_that_is_not_an_image(capsys, trained, tmp_path):
    bad = tmp_path / "notes.png"
    bad.write_text("not an image")
    code, _, err = run_cli(capsys, "predict", bad, "--checkpoint", trained)
    assert code == 2 and "notes.png" in err and err.count("\n") == 1


@pytest.mark.parametrize("argv", [["train", "--epochz", "3"], ["read", "x.png", "--model", "m"],
                                  ["eval", "--bogus"], ["train-verifier", "--out", "v", "--set", "images=3"],
                                  ["models", "lenet", "extra"]])
def test_an_unknown_option_gives_the_commands_usage_and_one_line(capsys, argv):
    with pytest.raises(SystemExit) as exit:
        main(argv)
    _, err = capsys.readouterr()
    assert exit.value.code == 2
    usage, error = err.splitlines()
    assert usage.startswith(f"usage: digitlab {argv[0]} ") and "[options]" in usage
    assert error.startswith(f"digitlab {argv[0]}: error: unrecognized arguments: ")


def test_every_option_of_every_command_has_a_help_line():
    parser = build_parser()
    parsers = {"digitlab": parser, **commands(parser)}
    for name, p in parsers.items():
        for action in p._actions:
            if isinstance(action, argparse._SubParsersAction):
                assert all(a.help for a in action._choices_actions), name
            assert action.help and action.help.strip(), f"{name} {action.option_strings or action.dest}"
        assert len(p.format_usage().splitlines()) == 1, name


def test_settings_are_one_option_per_config_field_with_default_and_allowed_values():
    from digitlab.read.config import FieldReaderConfig, LineReaderConfig, ReadConfig, VerifierConfig
    from digitlab.train.config import TrainConfig

    cmds = commands(build_parser())
    for command, cls in [("train", TrainConfig), ("train-verifier", VerifierConfig),
                         ("train-line-reader", LineReaderConfig), ("train-field-reader", FieldReaderConfig),
                         ("read", ReadConfig), ("eval-read", ReadConfig)]:
        options = {a.dest: a for a in cmds[command]._actions}
        for f in dataclasses.fields(cls):
            assert f"--{f.name.replace('_', '-')}" in options[f.name].option_strings
            assert "default " in options[f.name].help, (command, f.name)
        assert "--set" not in cmds[command]._option_string_actions
    train = {a.dest: a.help for a in cmds["train"]._actions}
    assert "default adam; one of sgd, adam, adamw" in train["optimizer"]
    assert train["momentum"] == "SGD only (default 0.9)"
    assert "one of otsu, sauvola" in {a.dest: a.help for a in cmds["read"]._actions}["binarization"]


HELP_WITHOUT_TORCH = """
import contextlib, io, sys, time
from digitlab.cli import main
for argv in {argvs!r}:
    t, out = time.process_time(), io.StringIO()
    with contextlib.redirect_stdout(out):
        try:
            main(argv)
        except SystemExit as e:
            assert e.code == 0, (argv, e.code)
    heavy = [m for m in ('torch', 'cv2', 'numpy', 'PIL') if m in sys.modules]
    print(' '.join(argv), '|', heavy, '|', round(time.process_time() - t, 3), '|', len(out.getvalue()))
"""


def test_help_and_version_answer_without_torch():
    argvs = [["--help"], ["--version"], ["train", "--help"], ["read", "--help"], ["eval", "--help"],
             ["predict", "--help"], ["train-verifier", "--help"], ["train-line-reader", "--help"],
             ["train-field-reader", "--help"], ["read", "--list-settings"]]
    result = subprocess.run([sys.executable, "-c", HELP_WITHOUT_TORCH.format(argvs=argvs)], capture_output=True,
                            text=True)
    assert result.returncode == 0, result.stderr
    for line in result.stdout.splitlines():
        argv, heavy, cpu, printed = line.split(" | ")
        assert heavy == "[]", f"digitlab {argv} imported {heavy}"
        assert float(cpu) < 0.5, f"digitlab {argv}: {cpu} s of CPU"  # CPU time: wall time varies with the load
        assert int(printed) > 0


def test_setting_help_comes_from_the_comments_beside_the_config_fields():
    """The comments of a config dataclass are its documentation: the one after a field with the lines it
    wraps onto, the block above it, shared by uncommented fields after it; section headings are no field's."""
    from digitlab.configs import field_docs
    from digitlab.read.config import ReadConfig
    from digitlab.train.config import TrainConfig

    train, read = field_docs(TrainConfig), field_docs(ReadConfig)
    assert "optimisation" not in train["limit"] and "segmentation" not in read["lone_height"]  # headings
    assert "holds marks, not digits" in read["lone_height"]  # the line its comment wraps onto
    assert "cut off by the edge" in read["border_height"]
    assert read["box_remeasure"].startswith("Boxes joined to their digits")  # the block above it
    assert read["fragment_height"].startswith("Fragments can only be") and read["fragment_height"].endswith(
        "; in text heights")  # the block above it, then its own comment
    assert read["digit_logit_softness"] == read["digit_logit"] != ""  # shared
    assert train["threads"].startswith("torch intra-op threads")
