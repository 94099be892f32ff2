"""Cross-validation, sweeps, grids and searches on small real data (scikit-learn's digits, real
handwriting), and a study shared by two worker processes through a private PostgreSQL server."""

import json
import os
import signal
import subprocess
import sys
import time

import numpy as np
import optuna
import pytest
from postgres_helpers import pg_bin, postgres_server

from digitlab.cli import main
from digitlab.errors import ConfigError
from digitlab.experiments.search import config_from_study, search
from digitlab.experiments.sweep import grid, parse_axis, sweep
from digitlab.train import TrainConfig

QUIET = dict(progress=False, log=lambda s: None)
FAST = TrainConfig(dataset="digits", model="fastcnn", optimizer="sgd", lr=0.05, momentum=0.9, epochs=2)


def run_cli(capsys, *argv):
    code = main([str(a) for a in argv])
    out, err = capsys.readouterr()
    return code, out, err


def test_cv_reports_every_fold_and_their_mean(tmp_path, capsys):
    out = tmp_path / "cv"
    code, text, _ = run_cli(capsys, "cv", "--dataset", "digits", "--model", "fastcnn", "--folds", "3", "--epochs",
                            "1", "--out", out, "--no-progress")
    assert code == 0 and "3-fold: val accuracy" in text
    result = json.loads((out / "cv.json").read_text())
    assert [r["fold"] for r in result["rows"]] == [0, 1, 2] and result["diverged"] == 0
    vals = [r["val_accuracy"] for r in result["rows"]]
    assert result["mean"]["val_accuracy"] == pytest.approx(np.mean(vals))
    assert result["std"]["val_accuracy"] == pytest.approx(np.std(vals, ddof=1))
    for r in result["rows"]:  # each row is its run folder's last epoch
        summary = json.loads((out / r["dir"] / "summary.json").read_text())
        assert summary["config"]["folds"] == 3 and summary["config"]["fold"] == r["fold"]
        assert summary["test_accuracy"] == r["test_accuracy"]
    val_sets = [set(np.load(out / r["dir"] / "splits.npz")["val"]) for r in result["rows"]]
    assert not (val_sets[0] & val_sets[1]) and not (val_sets[1] & val_sets[2])
    assert {"cv.md", "cv.csv", "cv.png"} <= {p.name for p in out.iterdir()}
    stamp = (out / "fold-01" / "summary.json").stat().st_mtime_ns
    assert run_cli(capsys, "cv", "--dataset", "digits", "--model", "fastcnn", "--folds", "3", "--epochs", "1",
                   "--out", out, "--no-progress")[0] == 0
    assert (out / "fold-01" / "summary.json").stat().st_mtime_ns == stamp  # done folds are not trained again
    code, _, err = run_cli(capsys, "cv", "--dataset", "digits", "--model", "fastcnn", "--folds", "3", "--epochs",
                           "2", "--out", out, "--no-progress")
    assert code == 2 and "holds a cross-validation of another config" in err


def test_a_diverged_fold_is_counted_not_averaged(tmp_path, capsys):
    out = tmp_path / "cv"
    with pytest.raises(SystemExit) as exit:
        main(["cv", "--dataset", "digits", "--model", "fastcnn", "--folds", "2", "--epochs", "1", "--optimizer",
              "sgd", "--lr", "1e5", "--out", str(out), "--no-progress"])
    result = json.loads((out / "cv.json").read_text())
    assert exit.value.code == 1 and result["diverged"] == 2 and "all 2 folds diverged" in capsys.readouterr().out
    assert all(r["diverged"] for r in result["rows"]) and result["mean"]["val_accuracy"] is None


def test_sweep_varies_one_factor_at_a_time_and_flags_divergence(tmp_path):
    out = tmp_path / "sweep"
    t0 = time.perf_counter()
    result = sweep(FAST, {"lr": [0.01, 0.05, 1e4], "momentum": [0.5, 0.9]}, out, jobs=2, **QUIET)
    first = time.perf_counter() - t0
    lr = {p["value"]: p for p in result["factors"]["lr"]}
    assert lr[1e4]["diverged"] and not lr[0.01]["diverged"] and not lr[0.05]["diverged"]
    assert lr[0.05]["dir"] == "runs/base" == result["factors"]["momentum"][1]["dir"]  # the base runs once
    assert len(list((out / "runs").iterdir())) == 4
    for p in (lr[0.01], lr[0.05]):
        assert p["state"] == "COMPLETE" and len(p["history"]) == 2
        assert p["final"]["val_loss"] == p["history"][-1]["val_loss"]
        assert p["best"]["val_accuracy"] == max(r["val_accuracy"] for r in p["history"])
    for name in ("sweep.md", "sweep.csv", "sweep-lr.png", "sweep-momentum.png"):
        assert (out / name).stat().st_size > 0
    assert (out / "sweep-lr.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    md = (out / "sweep.md").read_text()
    assert "| lr | 1e+04 | yes |" in md and "| momentum | 0.5000 | no |" in md
    t0 = time.perf_counter()
    again = sweep(FAST, {"lr": [0.01, 0.05, 1e4], "momentum": [0.5, 0.9]}, out, **QUIET)  # the studies are done
    assert time.perf_counter() - t0 < first / 2 and again["factors"] == result["factors"]
    with pytest.raises(ConfigError, match="holds another experiment"):
        sweep(FAST.replace(epochs=3), {"lr": [0.01, 0.05, 1e4]}, out, **QUIET)


def test_grid_scores_cells_by_mean_val_loss_over_folds(tmp_path):
    out = tmp_path / "grid"
    result = grid(FAST.replace(epochs=1), {"batch_size": [32, 64], "lr": [0.01, 0.05]}, out, folds=2, **QUIET)
    assert len(result["cells"]) == 4 and all(c["state"] == "COMPLETE" for c in result["cells"])
    for c in result["cells"]:
        losses = [f["val_loss"] for f in c["folds"]]
        assert c["mean_val_loss"] == pytest.approx(np.mean(losses))
        for f, k in zip(c["folds"], range(2)):  # the folds are real runs of this cell's settings
            run = json.loads((out / c["dir"] / f"fold-{k + 1:02d}" / "summary.json").read_text())
            assert run["config"]["batch_size"] == c["params"]["batch_size"] and run["config"]["fold"] == k
    best = min(result["cells"], key=lambda c: c["mean_val_loss"])
    assert result["chosen"]["params"] == best["params"] and "lowest mean validation loss over 2 folds" in result["why"]
    assert (out / "grid.png").read_bytes()[:4] == b"\x89PNG" and "mean_val_loss" in (out / "grid.md").read_text()
    # a worker of another machine (its own data folder and threads) joins the same study and finds it done
    other = FAST.replace(epochs=1, data_dir=str(tmp_path), threads=2)
    again = grid(other, {"batch_size": [32, 64], "lr": [0.01, 0.05]}, out, folds=2, **QUIET)
    assert again["cells"] == result["cells"]


def test_parse_axis_types_values_like_the_setting():
    assert parse_axis("batch_size=32:256:32", FAST) == ("batch_size", [32, 64, 96, 128, 160, 192, 224, 256])
    name, lrs = parse_axis("lr=0.005:0.195:0.005", FAST)
    assert len(lrs) == 39 and lrs[0] == 0.005 and lrs[-1] == 0.195
    assert parse_axis("optimizer=sgd,adam", FAST) == ("optimizer", ["sgd", "adam"])
    for spec, message in (("lr", "expected FIELD="), ("lrr=0.1,0.2", "did you mean 'lr'"),
                          ("lr=0.1,0.1", "given twice"), ("batch_size=0,32", "batch_size must be >= 1")):
        with pytest.raises(ConfigError, match=message):
            parse_axis(spec, FAST)


def test_search_prunes_resumes_and_its_best_config_retrains(tmp_path, capsys):
    out = tmp_path / "search"
    cfg = FAST.replace(epochs=3)
    space = {"lr": {"low": 1e-3, "high": 0.5, "log": True}, "batch_size": {"choices": [16, 32, 64]}}
    result = search(cfg, space, out, trials=7, **QUIET)
    states = [t["state"] for t in result["trials"]]
    assert len(states) == 7 and states.count("PRUNED") >= 1 and states.count("COMPLETE") >= 3
    best = max((t for t in result["trials"] if t["state"] == "COMPLETE"), key=lambda t: t["value"])
    assert result["best"]["number"] == best["number"] and result["best"]["config"]["lr"] == best["params"]["lr"]
    for name in ("search.md", "history.png", "importances.png", "parallel.png"):
        assert (out / name).stat().st_size > 0
    again = search(cfg, space, out, trials=9, **QUIET)  # resumes: two more trials, the first seven kept
    assert len(again["trials"]) == 9 and again["trials"][:7] == result["trials"]
    assert config_from_study(str(out)).lr == again["best"]["params"]["lr"]
    run = tmp_path / "best"
    code, _, _ = run_cli(capsys, "train", "--from-study", out, "--epochs", "1", "--out", run, "--no-progress")
    saved = json.loads((run / "config.json").read_text())
    assert code == 0 and saved["lr"] == again["best"]["params"]["lr"] and saved["epochs"] == 1
    assert saved["batch_size"] == again["best"]["params"]["batch_size"]
    code, _, err = run_cli(capsys, "train", "--from-study", tmp_path, "--out", tmp_path / "x")
    assert code == 2 and "holds no search" in err


@pytest.mark.parametrize("argv, message", [
    (["sweep", "--vary", "lr="], "expected FIELD=V1,V2"),
    (["sweep", "--vary", "lr=0.1", "--grid", "batch_size=32,64"], "not both"),
    (["sweep", "--protocol", "rescnn-sgdd"], "did you mean 'rescnn-sgd'"),
    (["sweep", "--dataset", "digits"], "nothing to sweep"),
    (["search", "--dataset", "digits"], "nothing to search"),
    (["search", "--param", "lr=1:0.1"], "low < high"),
    (["search", "--param", "momentun=0.1:0.9"], "did you mean 'momentum'"),
    (["cv", "--fold", "2"], "--fold belongs to"),
    (["compare", "--seeds", "x", "lenet5"], "--seeds"),
])
def test_bad_experiment_options_end_in_one_line(tmp_path, capsys, argv, message):
    code, _, err = run_cli(capsys, *argv, "--out", tmp_path / "x")
    assert code == 2 and message in err and "Traceback" not in err and len(err.strip().splitlines()) == 1


def test_named_sweeps_are_listed(capsys):
    code, text, _ = run_cli(capsys, "sweep", "--list")
    assert code == 0 and "rescnn-sgd" in text and "3120 trainings" in text


def _trials(url, name):
    return optuna.load_study(study_name=name, storage=url).get_trials(deepcopy=False)


@pytest.mark.skipif(pg_bin("pg_ctl") is None, reason="PostgreSQL is not installed (.ci/run installs it)")
def test_two_workers_share_a_postgresql_study_and_survive_kill_9(tmp_path):
    """Two worker processes on one grid study in PostgreSQL; one is killed with -9 in the middle of a
    point and started again. Every point completes exactly once; the killed point is failed and run
    again, nothing else twice."""
    lrs = [0.01, 0.02, 0.03, 0.04, 0.05, 0.06]
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}

    def worker(name):
        cmd = [sys.executable, "-m", "digitlab.cli", "sweep", "--dataset", "digits", "--model", "fastcnn",
               "--optimizer", "sgd", "--momentum", "0.9", "--epochs", "4", "--grid", "lr=" + ",".join(map(str, lrs)),
               "--storage", url, "--study", "shared", "--heartbeat", "1", "--out", tmp_path / name, "--no-progress"]
        return subprocess.Popen([str(c) for c in cmd], stdout=subprocess.PIPE, stderr=subprocess.STDOUT, env=env,
                                text=True, start_new_session=True)

    with postgres_server() as url:
        a, b = worker("a"), worker("b")
        try:
            deadline = time.monotonic() + 120
            while time.monotonic() < deadline:  # kill a in the middle of a point of its own (its lr drawn)
                try:
                    mine = [t for t in _trials(url, "shared") if t.state == optuna.trial.TrialState.RUNNING
                            and t.user_attrs.get("worker", "").endswith(f":{a.pid}") and t.params]
                except KeyError:  # not created yet
                    mine = []
                if mine:
                    break
                time.sleep(0.05)
            assert mine, "worker a never ran a point"
            os.killpg(a.pid, signal.SIGKILL)
            a.wait()
            again = worker("a")  # the study resumes: a comes back and both finish it
            out_b, _ = b.communicate(timeout=180)
            out_a, _ = again.communicate(timeout=180)
        finally:
            for p in (a, b):
                if p.poll() is None:
                    os.killpg(p.pid, signal.SIGKILL)
        assert b.returncode == 0 and again.returncode == 0, out_a + out_b
        trials = _trials(url, "shared")
    complete = [t for t in trials if t.state == optuna.trial.TrialState.COMPLETE]
    failed = [t for t in trials if t.state == optuna.trial.TrialState.FAIL]
    assert sorted(t.params["lr"] for t in complete) == lrs  # every point once: none lost, none twice
    assert [t.number for t in failed] == [mine[0].number]  # the killed point, and nothing else, was failed
    retried = [t for t in complete if t.system_attrs.get("failed_trial") == mine[0].number]
    assert len(retried) == 1 and retried[0].params == mine[0].params
    assert len(trials) == len(lrs) + 1
    workers = {t.user_attrs["worker"].split(":")[-1] for t in complete}
    assert str(b.pid) in workers  # b did part of the work
    for folder in ("a", "b"):  # whoever finishes writes the grid's table from the shared study
        result = json.loads((tmp_path / folder / "grid.json").read_text())
        assert [c["state"] for c in result["cells"]] == ["COMPLETE"] * len(lrs)


def test_search_space_files_yaml_and_toml(tmp_path):
    from digitlab.experiments.search import check_space, load_space

    (tmp_path / "space.yaml").write_text("lr: {low: 1.0e-4, high: 0.3, log: true}\nbatch_size: [32, 64]\n"
                                         "epochs: {low: 2, high: 6}\n")
    (tmp_path / "space.toml").write_text('batch_size = [32, 64]\n[lr]\nlow = 1e-4\nhigh = 0.3\nlog = true\n'
                                         '[epochs]\nlow = 2\nhigh = 6\n')
    spaces = [check_space(load_space(tmp_path / f"space.{ext}"), FAST) for ext in ("yaml", "toml")]
    assert spaces[0] == spaces[1]
    assert spaces[0]["lr"] == {"int": False, "low": 1e-4, "high": 0.3, "log": True}
    assert spaces[0]["epochs"]["int"] and spaces[0]["batch_size"] == {"choices": [32, 64]}
    (tmp_path / "bad.yaml").write_text("lr: {low: 0.1\n")
    with pytest.raises(ConfigError, match="not valid YAML"):
        load_space(tmp_path / "bad.yaml")
    with pytest.raises(ConfigError, match="does not exist"):
        load_space(tmp_path / "missing.yaml")


def test_folds_in_parallel_processes_give_the_sequential_numbers(tmp_path):
    from digitlab.experiments.cv import cross_validate

    cfg = FAST.replace(epochs=1)
    one = cross_validate(cfg, tmp_path / "one", folds=2, jobs=1, **QUIET)
    two = cross_validate(cfg, tmp_path / "two", folds=2, jobs=2, **QUIET)
    for a, b in zip(one["rows"], two["rows"]):  # one thread each: the same weights, the same metrics
        assert a["val_loss"] == pytest.approx(b["val_loss"], rel=1e-5)
        assert a["test_accuracy"] == b["test_accuracy"]
