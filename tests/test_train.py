import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch
from safetensors.torch import load_file

from digitlab.checkpoint import load_checkpoint
from digitlab.errors import CheckpointError, ConfigError
from digitlab.models import create_model
from digitlab.train import PRESETS, TrainConfig, fit, get_preset, list_runs


def quick_config(data_dir, **kw) -> TrainConfig:
    base = dict(model="lenet5-improved", dataset="mnist", data_dir=str(data_dir), epochs=2, limit=2048,
                batch_size=64, optimizer="adam", lr=2e-3, threads=1)
    return TrainConfig.from_dict({**base, **kw})


# --- config -------------------------------------------------------------------------------------

def test_config_rejects_unknown_key_with_suggestion():
    with pytest.raises(ConfigError, match="did you mean 'epochs'"):
        TrainConfig.from_dict({"epoch": 3})


@pytest.mark.parametrize("key, value, message", [
    ("lr", "fast", "expects float"),
    ("epochs", "2.5", "expects int"),
    ("optimizer", "rmsprop", "optimizer must be one of"),
    ("lr", -1, "lr must be > 0"),
    ("split", "70:20:10", "split must be 2"),
    ("model_args", "{not json", "expects a JSON object"),
    ("augment", "rotate=10", "bad augment item 'rotate=10'"),
])
def test_config_rejects_bad_values(key, value, message):
    with pytest.raises(ConfigError, match=message):
        TrainConfig.from_dict({key: value})


def test_config_coerces_cli_strings_and_round_trips():
    cfg = TrainConfig.from_dict({"lr": "0.01", "epochs": "3", "split": "9:1", "model_args": '{"dropout": 0.1}'})
    assert (cfg.lr, cfg.epochs, cfg.split, cfg.model_args) == (0.01, 3, (9.0, 1.0), {"dropout": 0.1})
    assert TrainConfig.from_dict(json.loads(cfg.to_json())) == cfg


def test_presets_build_valid_configs_and_state_published_figures():
    assert {"lenet5-classic", "lenet5-improved", "rescnn-sgd", "lenet-attention", "mobilenetv3-tibetan"} <= set(PRESETS)
    classic = get_preset("lenet5-classic").config()
    assert (classic.model, classic.optimizer, classic.lr, classic.batch_size, classic.epochs, classic.split) == (
        "lenet5", "adam", 1e-3, 64, 20, (4.0, 1.0))
    tibetan = get_preset("mobilenetv3-tibetan").config()
    assert tibetan.split == (70.0, 20.0, 10.0) and tibetan.test_split == ""
    assert all(p.published for p in PRESETS.values())
    # the time-to-accuracy presets build their models and train on all 60k (no val split)
    for name in ("mnist-fast", "mnist-fast-995", "mnist-best"):
        cfg = get_preset(name).config()
        assert create_model(cfg.model, **cfg.model_args)(torch.zeros(1, 1, 28, 28)).shape == (1, 10)
    assert get_preset("mnist-fast").config().split == (1.0, 0.0)
    with pytest.raises(ConfigError, match="did you mean 'lenet5-classic'"):
        get_preset("lenet5-clasic")


# --- a real (small) run ---------------------------------------------------------------------------

@pytest.fixture(scope="module")
def small_run(shared_data_dir, tmp_path_factory):
    out = tmp_path_factory.mktemp("run")
    summary = fit(quick_config(shared_data_dir), out, progress=False, log=lambda s: None)
    return out, summary


def test_run_writes_every_artifact(small_run):
    out, summary = small_run
    for name in ("config.json", "splits.npz", "metrics.csv", "curves.png", "confusion.png", "confusion.csv",
                 "model.safetensors", "model.json", "summary.json", "state.pt"):
        assert (out / name).is_file(), name
    for key in ("model", "dataset", "epochs", "best_val_accuracy", "test_accuracy", "train_seconds", "diverged"):
        assert key in summary
    assert summary["epochs"] == 2 and summary["diverged"] is False
    # 2048 training images for 2 epochs already beat chance by far on the real test digits
    assert summary["test_accuracy"] > 0.8
    assert len(summary["per_class_accuracy"]) == 10
    lines = (out / "metrics.csv").read_text().strip().splitlines()
    assert lines[0].startswith("epoch,train_loss") and len(lines) == 3


def test_eval_finds_the_data_where_the_run_found_it(small_run, shared_data_dir, tmp_path, monkeypatch):
    from digitlab.infer import evaluate_checkpoint

    out, summary = small_run
    recorded = json.loads((out / "config.json").read_text())["data_dir"]
    assert Path(recorded).is_absolute() and Path(recorded).samefile(shared_data_dir)
    monkeypatch.delenv("DIGITLAB_DATA", raising=False)
    monkeypatch.chdir(tmp_path)  # nowhere near the data: only the recorded folder finds it
    report = evaluate_checkpoint(out, split="test")
    assert report["images"] == 10000 and report["accuracy"] > 0.8


def test_splits_are_saved_disjoint_and_deterministic(small_run, shared_data_dir):
    out, _ = small_run
    saved = np.load(out / "splits.npz")
    assert len(saved["train"]) == 2048 and len(saved["val"]) == 2048
    assert not set(saved["train"]) & set(saved["val"])
    from digitlab.train import prepare_data
    again = prepare_data(quick_config(shared_data_dir))
    assert np.array_equal(again.indices["train"], saved["train"])


@pytest.mark.parametrize("keep, kept_epoch", [("best", 1), ("last", 3)])
def test_keep_chooses_the_best_or_the_last_epoch(shared_data_dir, tmp_path, monkeypatch, keep, kept_epoch):
    import dataclasses

    from digitlab.train import trainer

    real, calls = trainer.evaluate, []

    def worsening(*args, **kwargs):  # each val evaluation reports a lower accuracy than the one before
        calls.append(1)
        return dataclasses.replace(real(*args, **kwargs), accuracy=1.0 - 0.1 * len(calls))

    monkeypatch.setattr(trainer, "evaluate", worsening)
    summary = fit(quick_config(shared_data_dir, epochs=3, limit=512, keep=keep), tmp_path, progress=False,
                  log=lambda s: None)
    assert summary["best_epoch"] == kept_epoch == load_checkpoint(tmp_path).meta["epoch"]


def test_checkpoint_is_self_describing(small_run):
    out, summary = small_run
    ckpt = load_checkpoint(out)
    meta = ckpt.meta
    assert meta["model"] == "lenet5-improved" and meta["dataset"] == "mnist"
    assert meta["normalization"] == {"mean": 0.1307, "std": 0.3081}
    assert meta["config"]["lr"] == 2e-3 and meta["code_version"]
    assert meta["metrics"]["test_accuracy"] == summary["test_accuracy"]
    # temperature fitted on the val split; it must not make the test calibration worse by much
    assert meta["temperature"] == summary["temperature"] > 0
    assert summary["test_ece_calibrated"] <= summary["test_ece"] + 0.01
    # with how many misread val images, so that readers can say when the temperature says little
    val_accuracy = max(summary["best_val_accuracy"], 0)
    assert meta["temperature_val_errors"] == summary["temperature_val_errors"] > 0
    assert summary["temperature_val_errors"] <= round((1 - val_accuracy) * summary["sizes"]["val"]) + 1
    # the median top val logit, which readers compare a crop's top logit with
    from digitlab.infer import predict_logits
    val = np.load(out / "splits.npz")["val"]
    from digitlab.data import load_dataset
    images = load_dataset("mnist", "train", data_dir=meta["config"]["data_dir"]).images[val]
    logits = predict_logits(ckpt.model, images, ckpt.normalization, 512)
    assert abs(meta["logit_reference"] - float(logits.max(1).values.median())) < 1e-3
    assert not ckpt.model.training


def test_damaged_checkpoint_is_refused(small_run, tmp_path):
    out, _ = small_run
    for name in ("model.safetensors", "model.json"):
        (tmp_path / name).write_bytes((out / name).read_bytes())
    data = bytearray((tmp_path / "model.safetensors").read_bytes())
    data[-10] ^= 0xFF
    (tmp_path / "model.safetensors").write_bytes(bytes(data))
    with pytest.raises(CheckpointError, match="SHA-256 does not match"):
        load_checkpoint(tmp_path)
    with pytest.raises(CheckpointError, match="not found"):
        load_checkpoint(tmp_path / "missing")


def test_existing_run_folder_is_not_overwritten(small_run):
    out, _ = small_run
    before = (out / "summary.json").read_bytes()
    with pytest.raises(ConfigError, match="already holds a run"):
        fit(TrainConfig(), out, progress=False, log=lambda s: None)
    assert (out / "summary.json").read_bytes() == before


def test_runs_lists_the_run(small_run):
    out, summary = small_run
    rows = list_runs(out.parent)
    row = next(r for r in rows if r["run"] == str(out))
    assert row["status"] == "finished" and row["test_accuracy"] == summary["test_accuracy"]


def test_divergence_stops_and_is_recorded(shared_data_dir, tmp_path):
    cfg = quick_config(shared_data_dir, optimizer="sgd", lr=1e6, momentum=0.9, epochs=3)
    messages = []
    summary = fit(cfg, tmp_path, progress=False, log=messages.append)
    assert summary["diverged"] is True
    assert "epoch 1" in summary["diverged_reason"] and "lr 1e+06" in summary["diverged_reason"]
    assert any("diverged" in m for m in messages)
    assert json.loads((tmp_path / "summary.json").read_text())["diverged"] is True


def test_early_stopping_stops_before_the_last_epoch(shared_data_dir, tmp_path):
    # lr so small nothing improves after the first epoch's tiny gain
    cfg = quick_config(shared_data_dir, epochs=6, patience=1, optimizer="sgd", lr=1e-9, momentum=0.0)
    summary = fit(cfg, tmp_path, progress=False, log=lambda s: None)
    assert summary["epochs"] < 6


# --- resume ---------------------------------------------------------------------------------------

def _weights(folder):
    return load_file(str(folder / "model.safetensors"))


def test_resume_after_kill_9_equals_uninterrupted_run(shared_data_dir, tmp_path):
    # dropout (global RNG) and augmentation (the run's generator) both have to resume exactly
    args = dict(epochs=4, limit=2048, augment="rotation=10,translate=0.1")
    reference = fit(quick_config(shared_data_dir, **args), tmp_path / "ref", progress=False, log=lambda s: None)

    out = tmp_path / "killed"
    cmd = [sys.executable, "-m", "digitlab.cli", "train", "--out", str(out), "--no-progress"]
    for k, v in quick_config(shared_data_dir, **args).to_dict().items():
        if v not in (None, {}, ""):
            cmd += [f"--{k.replace('_', '-')}", ":".join(map(str, v)) if isinstance(v, list) else str(v)]
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline and proc.poll() is None:
        metrics = out / "metrics.csv"
        if metrics.exists() and len(metrics.read_text().strip().splitlines()) >= 2:  # header + epoch 1
            break
        time.sleep(0.05)
    killed = proc.poll() is None
    if killed:
        os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    assert killed, "the run finished before it could be killed; make it longer"
    assert not (out / "summary.json").exists()

    resumed = fit(None, out, resume=True, progress=False, log=lambda s: None)
    assert resumed["epochs"] == reference["epochs"] == 4
    assert resumed["test_accuracy"] == reference["test_accuracy"]
    assert resumed["test_loss"] == reference["test_loss"]
    ref_w, res_w = _weights(tmp_path / "ref"), _weights(out)
    assert all(torch.equal(ref_w[k], res_w[k]) for k in ref_w)


def test_resume_refuses_a_missing_run(tmp_path):
    with pytest.raises(ConfigError, match="no run to resume"):
        fit(None, tmp_path, resume=True, progress=False)


def test_temperature_scaling_fixes_overconfident_logits():
    from digitlab.calibrate import expected_calibration_error, fit_temperature

    gen = torch.Generator().manual_seed(0)
    labels = torch.randint(0, 10, (4000,), generator=gen)
    true_logits = torch.randn(4000, 10, generator=gen)
    true_logits[torch.arange(4000), labels] += 2.0
    # sample labels from the calibrated distribution, then make the logits 3x overconfident
    sampled = torch.multinomial(true_logits.softmax(1), 1, generator=gen).squeeze(1)
    t = fit_temperature(3 * true_logits, sampled)
    assert 2.6 < t < 3.4
    before = expected_calibration_error((3 * true_logits).softmax(1), sampled)
    after = expected_calibration_error((3 * true_logits / t).softmax(1), sampled)
    assert after < before / 3


def test_temperature_stays_in_range_when_val_has_no_error():
    from digitlab.calibrate import MIN_ERRORS, T_RANGE, calibration_note, fit_temperature

    labels = torch.arange(10).repeat(50)
    logits = torch.nn.functional.one_hot(labels, 10).float()  # every val image right: NLL falls as T -> 0
    assert fit_temperature(logits, labels) == T_RANGE[0]
    # ... and such a temperature comes with a warning
    assert "0 misread" in calibration_note(0) and "--split" in calibration_note(0)
    assert calibration_note(MIN_ERRORS) is None


def test_stop_at_target_ends_the_run_mid_epoch(shared_data_dir, tmp_path):
    cfg = quick_config(shared_data_dir, epochs=5, stop_at=0.6, check_every=8, channels_last=True)
    summary = fit(cfg, tmp_path, progress=False, log=lambda s: None)
    reached = summary["stopped_at_target"]
    assert summary["epochs"] == 1 and reached["test_accuracy"] >= 0.6
    # the kept checkpoint is the model that reached the target, so the final test says the same
    assert summary["test_accuracy"] == reached["test_accuracy"]
    assert 0 < reached["train_seconds"] < summary["train_seconds"]


def test_target_out_of_reach_runs_every_epoch(shared_data_dir, tmp_path):
    summary = fit(quick_config(shared_data_dir, epochs=1, stop_at=0.9999), tmp_path, progress=False,
                  log=lambda s: None)
    assert summary["epochs"] == 1 and summary["stopped_at_target"] is None


# --- ensembles ------------------------------------------------------------------------------------

def test_ensemble_averages_runs_that_share_a_split(shared_data_dir, tmp_path, capsys):
    from digitlab.cli import main
    from digitlab.train import build_ensemble

    runs = []
    for seed in (1, 2):  # other seeds, one split
        runs.append(tmp_path / f"seed{seed}")
        fit(quick_config(shared_data_dir, epochs=1, seed=seed, split_seed=0), runs[-1], progress=False,
            log=lambda s: None)
    assert np.array_equal(np.load(runs[0] / "splits.npz")["val"], np.load(runs[1] / "splits.npz")["val"])
    summary = build_ensemble(runs, tmp_path / "ensemble", log=lambda s: None)
    ensemble, members = load_checkpoint(tmp_path / "ensemble"), [load_checkpoint(r) for r in runs]
    x = torch.randn(8, 1, 28, 28)
    with torch.no_grad():
        np.testing.assert_allclose(ensemble.model(x), torch.stack([m.model(x) for m in members]).mean(0),
                                   rtol=1e-5, atol=1e-5)
    assert summary["test_accuracy"] > 0.8 and len(summary["member_test_accuracy"]) == 2
    assert ensemble.meta["temperature"] == summary["temperature"] and ensemble.meta["logit_reference"] > 0
    assert (tmp_path / "ensemble" / "splits.npz").is_file()

    assert main(["ensemble", *map(str, runs), "--out", str(tmp_path / "again")]) == 0
    assert "ensemble of 2 saved" in capsys.readouterr().out

    other = tmp_path / "other-split"
    fit(quick_config(shared_data_dir, epochs=1, seed=3), other, progress=False, log=lambda s: None)
    with pytest.raises(ConfigError, match="holds out other images"):
        build_ensemble([runs[0], other], tmp_path / "refused", log=lambda s: None)
    with pytest.raises(ConfigError, match="at least two runs"):
        build_ensemble(runs[:1], tmp_path / "refused", log=lambda s: None)
    assert not (tmp_path / "refused").exists()


def test_a_dataset_with_one_split_is_carved_70_15_15_or_as_asked(tmp_path):
    quiet = dict(progress=False, log=lambda s: None)
    summary = fit(TrainConfig(dataset="digits", epochs=1), tmp_path / "default", **quiet)
    assert summary["config"]["train_split"] == "all" and summary["config"]["split"] == [70, 15, 15]
    assert summary["sizes"] == {"train": 1259, "val": 270, "test": 268}  # stratified, per class
    with pytest.raises(ConfigError, match=r"digits has one split, 'all'.*--train-split all --test-split ''"):
        fit(TrainConfig(dataset="digits", train_split="train", test_split="x"), tmp_path / "run", **quiet)
    assert not (tmp_path / "run").exists()
    summary = fit(TrainConfig(dataset="digits", train_split="all", test_split="", split=(80, 10, 10), epochs=1),
                  tmp_path / "run", **quiet)
    assert summary["sizes"]["test"] == 179 and summary["test_accuracy"] > 0.1


def test_k_fold_config_cuts_disjoint_folds_that_cover_the_pool(tmp_path):
    quiet = dict(progress=False, log=lambda s: None)
    vals = []
    for fold in range(3):
        fit(TrainConfig(dataset="digits", folds=3, fold=fold, epochs=1, limit=0), tmp_path / f"f{fold}", **quiet)
        parts = np.load(tmp_path / f"f{fold}" / "splits.npz")
        assert not set(parts["train"]) & set(parts["val"]) and not set(parts["val"]) & set(parts["test"])
        vals.append(set(parts["val"]))
    # the test share stays out of the folds
    assert sum(map(len, vals)) == len(set().union(*vals)) == 1797 - len(parts["test"])
    with pytest.raises(ConfigError, match="0 <= fold < folds"):
        TrainConfig(folds=3, fold=3)
