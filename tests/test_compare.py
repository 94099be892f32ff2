"""Model comparisons on scikit-learn's digits (real handwriting, small): the result files, their numbers
against the runs' own summaries, resumption, divergence, k-fold runs and the named protocols."""

import csv
import json
import shutil
import statistics
import subprocess
import sys

import pytest

from digitlab.cli import main
from digitlab.errors import ConfigError
from digitlab.experiments import protocols
from digitlab.experiments.compare import compare, plan
from digitlab.experiments.protocols import PROTOCOLS, Protocol, Recipe
from digitlab.train import TrainConfig

QUIET = dict(progress=False, log=lambda s: None)
DIGITS = TrainConfig(dataset="digits", epochs=1)
FILES = ("compare.json", "compare.md", "compare.csv", "compare.png")


@pytest.fixture(scope="module")
def compared(tmp_path_factory):
    out = tmp_path_factory.mktemp("compare") / "two"
    return out, compare(["lenet5", "fastcnn"], base=DIGITS, seeds=(1, 2), out=out, **QUIET)


def summary(run):
    return json.loads((run / "summary.json").read_text())


def test_compare_writes_every_file_and_the_runs_numbers(compared):
    out, result = compared
    assert all((out / name).is_file() for name in FILES)
    assert (out / "compare.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert json.loads((out / "compare.json").read_text()) == result
    assert result["kind"] == "compare" and result["dataset"] == "digits" and result["seeds"] == [1, 2]
    assert [r["model"] for r in result["rows"]] == ["lenet5", "fastcnn"]
    with (out / "compare.csv").open() as f:
        lines = list(csv.DictReader(f))
    for row, line in zip(result["rows"], lines):
        runs = [out / row["model"] / f"seed-{s}" for s in (1, 2)]
        summaries = [summary(run) for run in runs]
        accuracies = [s["test_accuracy"] for s in summaries]
        assert all(s["config"]["seed"] == seed and s["config"]["model"] == row["model"]
                   for s, seed in zip(summaries, (1, 2)))
        assert row["runs"] == 2 and row["diverged"] == 0 and row["epochs"] == 1
        assert row["test_accuracy_mean"] == pytest.approx(statistics.mean(accuracies))
        assert row["test_accuracy_std"] == pytest.approx(statistics.stdev(accuracies))
        assert row["train_seconds"] == pytest.approx(statistics.mean(s["train_seconds"] for s in summaries))
        assert row["ms_per_image"] > 0 and row["params"] > 0 and row["macs"] > 0
        assert float(line["test_accuracy_mean"]) == pytest.approx(row["test_accuracy_mean"])
        assert line["model"] == row["model"] and int(line["params"]) == row["params"]
        # every run tested on the same images: one train/val/test cut whatever the seed
        assert summaries[0]["sizes"] == summaries[1]["sizes"]
        assert [run.name for run in runs] == [p["dir"].split("/")[1] for p in row["per_run"]]
    lenet, fast = result["rows"]
    assert (lenet["params"], lenet["macs"]) == (61706, 416520)  # `digitlab models`
    md = (out / "compare.md").read_text()
    assert f"{100 * fast['test_accuracy_mean']:.2f}% ± {100 * fast['test_accuracy_std']:.2f}%" in md
    assert "| fastcnn | 1 | 2 | 0 |" in md


def test_a_second_call_trains_nothing(compared):
    out, first = compared
    stamps = {p: p.stat().st_mtime_ns for p in out.glob("*/seed-*/*")}
    again = compare(["lenet5", "fastcnn"], base=DIGITS, seeds=(1, 2), out=out, **QUIET)
    assert {p: p.stat().st_mtime_ns for p in out.glob("*/seed-*/*")} == stamps
    assert [{k: v for k, v in r.items()} for r in again["rows"]] == first["rows"]  # timings come from the cache
    with pytest.raises(ConfigError, match="holds a run of another config"):
        compare(["fastcnn"], base=DIGITS.replace(epochs=2), seeds=(1,), out=out, **QUIET)


def test_a_bad_model_name_fails_before_any_training(tmp_path):
    with pytest.raises(ConfigError, match="unknown model 'lenet6'.*'lenet5'") as e:
        compare(["fastcnn", "lenet6"], base=DIGITS, out=tmp_path / "bad", **QUIET)
    assert "\n" not in str(e.value) and not (tmp_path / "bad").exists()
    with pytest.raises(ConfigError, match="takes no argument"):
        compare(["fastcnn"], base=DIGITS.replace(model_args={"widht": 3}), out=tmp_path / "bad", **QUIET)
    with pytest.raises(ConfigError, match="unknown comparison protocol 'mnist-zo'; did you mean 'mnist-zoo'"):
        compare(protocol="mnist-zo", out=tmp_path / "bad", **QUIET)
    assert not (tmp_path / "bad").exists()


def test_a_diverged_run_is_counted_not_averaged(tmp_path, monkeypatch, compared):
    monkeypatch.setitem(PROTOCOLS, "test-diverge", Protocol(
        name="test-diverge", description="", dataset="digits", base={"dataset": "digits", "epochs": 1},
        recipes=(Recipe("fastcnn", overrides={"optimizer": "sgd", "lr": 1e6}, published=0.5),), jobs=1))
    result = compare(protocol="test-diverge", seeds=(1, 2), out=tmp_path / "div", **QUIET)
    (row,) = result["rows"]
    assert row["diverged"] == 2 and row["runs"] == 2 and row["test_accuracy_mean"] is None
    assert row["ms_per_image"] is None and row["beats_published"] is None
    assert all(summary(tmp_path / "div" / p["dir"])["diverged"] for p in row["per_run"])
    assert "| fastcnn | 1 | 2 | 2 | all diverged |" in (tmp_path / "div" / "compare.md").read_text()
    # one diverged seed of two: the mean is the other seed's, and the row says one diverged
    out = tmp_path / "half"
    shutil.copytree(compared[0], out)
    run = out / "fastcnn" / "seed-2" / "summary.json"
    run.write_text(json.dumps({**summary(run.parent), "diverged": True, "diverged_reason": "loss is nan"}))
    fast = compare(["lenet5", "fastcnn"], base=DIGITS, seeds=(1, 2), out=out, **QUIET)["rows"][1]
    assert fast["diverged"] == 1 and fast["runs"] == 2 and fast["test_accuracy_std"] == 0.0
    assert fast["test_accuracy_mean"] == summary(out / "fastcnn" / "seed-1")["test_accuracy"]


def test_folds_stand_in_for_seeds(tmp_path):
    result = compare(["fastcnn"], base=DIGITS.replace(folds=2), out=tmp_path / "k", **QUIET)
    (row,) = result["rows"]
    assert result["folds"] == 2 and row["runs"] == 2 and [p["dir"] for p in row["per_run"]] == [
        "fastcnn/fold-01", "fastcnn/fold-02"]
    configs = [summary(tmp_path / "k" / p["dir"])["config"] for p in row["per_run"]]
    assert [(c["folds"], c["fold"]) for c in configs] == [(2, 0), (2, 1)]
    assert row["test_accuracy_mean"] == pytest.approx(statistics.mean(p["test_accuracy"] for p in row["per_run"]))


def test_every_protocol_plans_valid_runs(tmp_path):
    for proto in PROTOCOLS.values():
        entries = plan(proto.models, proto, None, [1, 2, 3], tmp_path)
        assert [e.model for e in entries] == proto.models
        for e in entries:
            cfg = e.runs[0][2]
            assert cfg.dataset == proto.dataset and cfg.split_seed == 0
            assert f"{e.model} {cfg.epochs}" in proto.description.replace(" epochs", "")  # epochs are stated
            assert len(e.runs) == (proto.folds or 3)
    zoo = {e.model: e for e in plan(PROTOCOLS["mnist-zoo"].models, PROTOCOLS["mnist-zoo"], None, [1], tmp_path)}
    assert {m: e.published for m, e in zoo.items()} == {
        "lenet5": 0.977, "lenet-attention": 0.993, "lenet5-improved": 0.9914, "alexnet": 0.987, "vgg16": 0.989,
        "resnet18": 0.865, "rescnn": 0.98, "mobilenetv3-small": None}
    kannada = plan(["vgg16"], PROTOCOLS["kannada-mnist"], TrainConfig(epochs=1), [1], tmp_path)[0]
    assert [(c.train_split, c.test_split, c.folds, c.fold, c.epochs) for _, _, c, _ in kannada.runs] == [
        ("test", "dig", 5, i, 1) for i in range(5)]  # a base setting overrides the recipe


def test_protocols_list_without_torch(capsys):
    code = subprocess.run([sys.executable, "-c", "import sys, digitlab.experiments.protocols as p; "
                           "assert 'torch' not in sys.modules and p.PROTOCOLS"]).returncode
    assert code == 0 and protocols.get_protocol("mnist-zoo").jobs == 2
    assert main(["compare", "--list"]) == 0
    text = capsys.readouterr().out
    assert all(name in text for name in PROTOCOLS)
