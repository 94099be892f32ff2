"""HTML reports: a real training run and a real comparison on scikit-learn's digits; cv, sweep, grid and
search folders as JSON in the experiments' result format (their numbers are what the page must show)."""

import base64
import json
import re

import pytest

from digitlab.errors import ConfigError
from digitlab.experiments.compare import compare
from digitlab.experiments.report import write_report
from digitlab.train import TrainConfig

PNG = b"\x89PNG\r\n\x1a\n"


@pytest.fixture(scope="module")
def compared(tmp_path_factory):
    out = tmp_path_factory.mktemp("report") / "cmp"
    result = compare(["fastcnn", "lenet5"], base=TrainConfig(dataset="digits", epochs=1), seeds=(1,), out=out,
                     progress=False, log=lambda s: None)
    return out, result


def images(page: str) -> list[bytes]:
    return [base64.b64decode(m) for m in re.findall(r'src="data:image/png;base64,([A-Za-z0-9+/=]+)"', page)]


def self_contained(page: str) -> None:
    assert "http://" not in page and "https://" not in page and "<script" not in page and "<link" not in page
    assert "<style>" in page and page.rstrip().endswith("</html>")


def png(folder, name):
    """A small real PNG, as the experiment would have drawn it."""
    from matplotlib.figure import Figure

    fig = Figure(figsize=(2, 2))
    fig.subplots().plot([0, 1], [1, 0])
    fig.savefig(folder / name, dpi=40)


def test_run_report(compared):
    run = compared[0] / "fastcnn" / "seed-1"
    summary = json.loads((run / "summary.json").read_text())
    page = write_report(run).read_text()
    assert (run / "report.html").is_file()
    self_contained(page)
    assert "Training run: fastcnn on digits" in page
    assert f"{summary['test_accuracy']:.4f}" in page and f"{summary['best_val_accuracy']:.4f}" in page
    first_class = next(iter(summary["per_class_accuracy"].values()))
    assert f"{first_class:.4f}" in page and "optimizer" in page and "adam" in page  # per class; the config
    pictures = images(page)
    assert len(pictures) == 2 and all(p.startswith(PNG) for p in pictures)  # curves.png, confusion.png
    assert pictures[0] == (run / "curves.png").read_bytes()


def test_compare_report(compared, tmp_path):
    out, result = compared
    target = tmp_path / "elsewhere" / "compare.html"
    assert write_report(out, target) == target and not (out / "report.html").exists()
    page = target.read_text()
    self_contained(page)
    for row in result["rows"]:
        assert f"<td>{row['model']}</td>" in page
        assert f"{100 * row['test_accuracy_mean']:.2f}% ± {100 * row['test_accuracy_std']:.2f}%" in page
        assert f"{row['params']:,}" in page
    (picture,) = images(page)
    assert picture == (out / "compare.png").read_bytes() and picture.startswith(PNG)


def test_cv_report(tmp_path):
    row = dict(dir="fold-01", diverged=False, epochs=3, train_loss=0.21, train_accuracy=0.93, val_loss=0.25,
               val_accuracy=0.9123, best_val_accuracy=0.9123, test_accuracy=0.9011, train_seconds=1.5)
    rows = [{"fold": 0, **row}, {"fold": 1, **row, "dir": "fold-02", "val_accuracy": 0.9345},
            {"fold": 2, **row, "dir": "fold-03", "diverged": True, "val_loss": float("nan")}]
    cv = {"kind": "cv", "config": TrainConfig(model="rescnn").to_dict(), "folds": 3, "rows": rows,
          "mean": {"val_accuracy": 0.9234, "val_loss": 0.25}, "std": {"val_accuracy": 0.0157, "val_loss": 0.0},
          "diverged": 1, "wall_seconds": 9.0}
    (tmp_path / "cv.json").write_text(json.dumps(cv))
    png(tmp_path, "cv.png")
    page = write_report(tmp_path).read_text()
    self_contained(page)
    assert "3-fold cross-validation: rescnn on mnist" in page
    assert "0.9234 ± 0.0157" in page and "0.9345" in page and "1 diverged" in page
    assert page.count('<tr class="diverged">') == 1 and len(images(page)) == 1


def test_sweep_grid_and_search_reports(tmp_path):
    base = TrainConfig(model="rescnn", optimizer="sgd").to_dict()
    final = {"train_loss": 0.1, "train_accuracy": 0.97, "val_loss": 0.1234, "val_accuracy": 0.9654}
    sweep = {"kind": "sweep", "name": "rescnn-sgd", "config": base, "folds": 0, "wall_seconds": 5.0, "factors": {
        "lr": [{"value": 0.01, "dir": "runs/base", "diverged": False, "state": "COMPLETE", "final": final,
                "best": final, "test_accuracy": 0.9712, "history": []},
               {"value": 0.3, "dir": "runs/lr-0.3", "diverged": True, "state": "COMPLETE", "final": {}, "best": {},
                "test_accuracy": None, "history": []}]}}
    grid = {"kind": "grid", "name": "g", "config": base, "folds": 3, "axes": {"batch_size": [32, 64], "lr": [0.01]},
            "cells": [{"params": {"batch_size": 32, "lr": 0.01}, "state": "COMPLETE", "mean_val_loss": 0.0812,
                       "std_val_loss": 0.004, "mean_train_loss": 0.05, "mean_val_accuracy": 0.9801, "diverged": 0},
                      {"params": {"batch_size": 64, "lr": 0.01}, "state": "COMPLETE", "mean_val_loss": 0.0955,
                       "std_val_loss": 0.006, "mean_train_loss": 0.06, "mean_val_accuracy": 0.9766, "diverged": 0}],
            "chosen": {"params": {"batch_size": 32, "lr": 0.01}, "mean_val_loss": 0.0812},
            "why": "chosen batch_size=32, lr=0.01: the lowest mean validation loss over 3 folds, 0.0812",
            "wall_seconds": 3.0}
    search = {"kind": "search", "study": "s<1>", "storage": "sqlite:///study.db", "metric": "val_accuracy",
              "direction": "maximize", "space": {"lr": {"int": False, "low": 1e-4, "high": 0.3, "log": True}},
              "config": base, "best": {"number": 3, "value": 0.9876, "params": {"lr": 0.0421}, "config": base},
              "trials": [{"number": 3, "state": "COMPLETE", "value": 0.9876, "params": {"lr": 0.0421}, "epochs": 2,
                          "test_accuracy": 0.9811, "diverged": False},
                         {"number": 4, "state": "PRUNED", "value": None, "params": {"lr": 0.29}, "epochs": 1,
                          "test_accuracy": None, "diverged": False}], "wall_seconds": 4.0}
    expected = {"sweep": ("0.9654", "0.9712", "Factor lr", "rescnn-sgd"),
                "grid": ("0.0812", "0.0955", "chosen: batch_size=32, lr=0.01", "over 3 folds"),
                "search": ("0.9876", "0.0421", "PRUNED", "s&lt;1&gt;")}  # the study name, escaped
    plots = {"sweep": ["sweep-lr.png"], "grid": ["grid.png"], "search": ["history.png", "parallel.png"]}
    for kind, content in (("sweep", sweep), ("grid", grid), ("search", search)):
        folder = tmp_path / kind
        folder.mkdir()
        (folder / f"{kind}.json").write_text(json.dumps(content))
        for name in plots[kind]:
            png(folder, name)
        page = write_report(folder).read_text()
        self_contained(page)
        assert all(text in page for text in expected[kind]), kind
        assert len(images(page)) == len(plots[kind])
    assert "s<1>" not in (tmp_path / "search" / "report.html").read_text()
    assert "no importances.png" in (tmp_path / "search" / "report.html").read_text()


def test_a_folder_of_no_experiment_fails_in_one_line(tmp_path):
    (tmp_path / "notes.txt").write_text("hello")
    with pytest.raises(ConfigError, match="no experiment folder") as e:
        write_report(tmp_path)
    assert "\n" not in str(e.value) and not (tmp_path / "report.html").exists()
    with pytest.raises(ConfigError, match="not a folder"):
        write_report(tmp_path / "missing")
