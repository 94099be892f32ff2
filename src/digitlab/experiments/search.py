"""Hyper-parameter search: an Optuna study with TPE and the pruning of hopeless trials from their
per-epoch validation metric; resumable, shareable through a storage URL, its best config re-runnable.

A search space maps TrainConfig fields to ranges: `lr=1e-4:0.3:log` (a float range, log-uniform),
`epochs=2:10` (ints), `momentum=0.3:0.95`, `batch_size=32,64,128` (a choice), or the same in a YAML or
TOML file: `lr: {low: 1e-4, high: 0.3, log: true}`, `batch_size: [32, 64, 128]`."""

from __future__ import annotations

import json
import math
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from digitlab.atomic import write_text
from digitlab.errors import ConfigError, close_match
from digitlab.experiments import study as studies
from digitlab.experiments.cv import history
from digitlab.experiments.pool import run_fit
from digitlab.experiments.tables import write_tables
from digitlab.train.config import TrainConfig

METRICS = {"val_accuracy": "maximize", "val_loss": "minimize"}  # best epoch's value of the trial


def parse_param(spec: str) -> tuple[str, dict[str, Any]]:
    """'lr=1e-4:0.3:log' -> ('lr', {'low': 1e-4, 'high': 0.3, 'log': True}); 'batch_size=32,64' -> choices."""
    name, sep, text = spec.partition("=")
    name = name.strip().replace("-", "_")
    if not sep or not text.strip():
        raise ConfigError(f"expected FIELD=LOW:HIGH[:log], FIELD=LOW:HIGH:STEP or FIELD=A,B,C, got {spec!r}")
    if ":" in text and "," not in text:
        parts = text.split(":")
        log = parts[-1].strip() == "log"
        if log:
            parts = parts[:-1]
        try:
            nums = [float(p) for p in parts]
        except ValueError:
            raise ConfigError(f"{name}: LOW:HIGH[:STEP][:log] must be numbers, got {text!r}") from None
        if len(nums) not in (2, 3):
            raise ConfigError(f"{name}: expected LOW:HIGH, LOW:HIGH:STEP or LOW:HIGH:log, got {text!r}")
        dist: dict[str, Any] = {"low": nums[0], "high": nums[1], "log": log}
        if len(nums) == 3:
            dist["step"] = nums[2]
        return name, dist
    return name, {"choices": [v.strip() for v in text.split(",") if v.strip()]}


def load_space(path: str | Path) -> dict[str, dict[str, Any]]:
    """A search space from a YAML (.yaml/.yml) or TOML (.toml) file."""
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"search space file {path} does not exist")
    text = path.read_text()
    try:
        if path.suffix == ".toml":
            import tomllib

            raw = tomllib.loads(text)
        else:
            import yaml

            raw = yaml.safe_load(text)
    except Exception as e:
        raise ConfigError(f"{path}: not valid {path.suffix.lstrip('.').upper() or 'YAML'}: "
                          f"{str(e).splitlines()[0]}") from None
    if not isinstance(raw, dict) or not raw:
        raise ConfigError(f"{path}: expected a mapping of setting -> range or list of choices")
    return {k: ({"choices": list(v)} if isinstance(v, list) else dict(v)) for k, v in raw.items()}


def check_space(space: dict[str, dict[str, Any]], cfg: TrainConfig) -> dict[str, dict[str, Any]]:
    """Each dimension typed like its TrainConfig field and validated; ints stay ints."""
    fields = cfg.to_dict()
    checked = {}
    for name, dist in space.items():
        if name not in fields:
            raise ConfigError(f"search space: {name!r} is not a training setting"
                              f"{close_match(name, fields, list_known=False)}")
        is_int = isinstance(fields[name], int) and not isinstance(fields[name], bool)
        if "choices" in dist:
            choices = [getattr(cfg.replace(**{name: v}), name) for v in dist["choices"]]
            if not choices:
                raise ConfigError(f"search space: {name} has no choices")
            checked[name] = {"choices": choices}
            continue
        unknown = set(dist) - {"low", "high", "log", "step"}
        if unknown or not {"low", "high"} <= set(dist):
            raise ConfigError(f"search space: {name} needs low and high (and optionally log or step), got {dist}")
        low, high = float(dist["low"]), float(dist["high"])
        if not low < high or (dist.get("log") and low <= 0):
            raise ConfigError(f"search space: {name} needs low < high (and low > 0 with log), got {low}..{high}")
        for v in (low, high):
            cfg.replace(**{name: int(v) if is_int else v})  # the bounds must be valid settings
        d = {"low": int(low) if is_int else low, "high": int(high) if is_int else high, "log": bool(dist.get("log"))}
        if dist.get("step"):
            d["step"] = int(dist["step"]) if is_int else float(dist["step"])
        checked[name] = {"int": is_int, **d}
    return checked


def suggest(trial, space: dict[str, dict[str, Any]]) -> dict[str, Any]:
    params = {}
    for name, d in space.items():
        if "choices" in d:
            params[name] = trial.suggest_categorical(name, d["choices"])
        elif d["int"]:
            params[name] = trial.suggest_int(name, d["low"], d["high"], step=d.get("step", 1), log=d["log"])
        else:
            params[name] = trial.suggest_float(name, d["low"], d["high"], step=d.get("step"), log=d["log"])
    return params


def search(cfg: TrainConfig, space: dict[str, dict[str, Any]], out: str | Path, *, trials: int = 20,
           metric: str = "val_accuracy", storage: str | None = None, study: str | None = None,
           heartbeat: float = studies.HEARTBEAT, prune: bool = True, progress: bool = True,
           log: Callable[[str], None] = print) -> dict[str, Any]:
    """TPE search of `space` around cfg until the study holds `trials` finished (complete or pruned)
    trials; run again, it resumes. Writes search.json, search.md and Optuna's plots into `out`."""
    import optuna

    if metric not in METRICS:
        raise ConfigError(f"metric must be one of {', '.join(METRICS)}, got {metric!r}")
    if trials < 1:
        raise ConfigError(f"trials must be >= 1, got {trials}")
    space = check_space(space, cfg)
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    url = studies.storage_url(storage, out)
    name = study or "search"
    store = studies.open_storage(url, heartbeat)
    attrs = {"kind": "search", "config": studies.shared_config(cfg.to_dict()), "space": space, "metric": metric}
    sampler = optuna.samplers.TPESampler(seed=cfg.seed, n_startup_trials=min(5, trials))
    pruner = optuna.pruners.MedianPruner(n_startup_trials=3, n_warmup_steps=1) if prune else optuna.pruners.NopPruner()
    s = optuna.create_study(study_name=name, storage=store, sampler=sampler, pruner=pruner,
                            direction=METRICS[metric], load_if_exists=True)
    theirs = {k: s.user_attrs.get(k) for k in attrs}
    if s.user_attrs and theirs != json.loads(json.dumps(attrs)):
        diff = sorted(k for k in attrs if json.loads(json.dumps(attrs[k])) != theirs[k])
        raise ConfigError(f"study {name!r} holds another search (its {', '.join(diff)} differ): use another --study")
    for k, v in attrs.items():
        s.set_user_attr(k, json.loads(json.dumps(v)))
    study_id = store.get_study_id_from_name(name)
    finished = (optuna.trial.TrialState.COMPLETE, optuna.trial.TrialState.PRUNED)
    done = len(s.get_trials(deepcopy=False, states=finished))
    log(f"study {name!r} in {studies.redact(url)}: {done} of {trials} trials done")
    t0 = time.perf_counter()

    def objective(trial: optuna.Trial) -> float:
        params = suggest(trial, space)
        frozen = store.get_trial(store.get_trial_id_from_study_id_trial_number(study_id, trial.number))
        retried = optuna.storages.RetryHeartbeatStaleTrialCallback.retried_trial_number(frozen)
        number = trial.number if retried is None else retried  # a retried trial resumes its folder
        run = out / "trials" / f"trial-{number:04d}"

        def report(row: dict[str, Any]) -> None:
            value = row.get(metric)
            if value is not None and math.isfinite(value):
                trial.report(value, int(row["epoch"]))
                if trial.should_prune():
                    log(f"trial {trial.number}: pruned after epoch {int(row['epoch'])} ({metric} {value:.4f}, "
                        f"below the median of earlier trials there)")
                    raise optuna.TrialPruned()

        summary = run_fit(cfg.replace(**params), run, progress=progress, on_epoch=report)
        rows = [r[metric] for r in history(run) if r.get(metric) is not None and math.isfinite(r[metric])]
        trial.set_user_attr("dir", str(run.relative_to(out)))
        trial.set_user_attr("diverged", bool(summary.get("diverged")))
        trial.set_user_attr("test_accuracy", summary.get("test_accuracy"))
        pick = max if METRICS[metric] == "maximize" else min
        value = pick(rows) if rows else (0.0 if METRICS[metric] == "maximize" else math.inf)
        shown = ", ".join(f"{k}={v:.4g}" if isinstance(v, float) else f"{k}={v}" for k, v in params.items())
        diverged = " (diverged)" if summary.get("diverged") else ""
        log(f"trial {trial.number}: {shown} -> {metric} {value:.4f}{diverged}")
        return value

    stop = optuna.study.MaxTrialsCallback(trials, states=finished)
    if done < trials:
        s.optimize(objective, callbacks=[stop], catch=())
    result = summarize(s, url, attrs, time.perf_counter() - t0)
    write_text(out / "search.json", json.dumps(result, indent=2))
    write_search_tables(out, result)
    plot_study(s, out, log)
    if result["best"]:
        log(f"best: trial {result['best']['number']}, {metric} {result['best']['value']:.4f}, "
            f"{result['best']['params']}; retrain it with: digitlab train --from-study {out}")
    return result


def summarize(s, url: str, attrs: dict[str, Any], seconds: float) -> dict[str, Any]:
    import optuna

    rows = [{"number": t.number, "state": t.state.name, "value": t.value, "params": t.params,
             "epochs": len(t.intermediate_values), "test_accuracy": t.user_attrs.get("test_accuracy"),
             "diverged": t.user_attrs.get("diverged")} for t in s.get_trials(deepcopy=False)]
    complete = s.get_trials(deepcopy=False, states=(optuna.trial.TrialState.COMPLETE,))
    best = None
    if complete:
        b = s.best_trial
        best = {"number": b.number, "value": b.value, "params": b.params,
                "config": TrainConfig.from_dict(attrs["config"]).replace(**b.params).to_dict()}
    return {"kind": "search", "study": s.study_name, "storage": studies.redact(url), "metric": attrs["metric"],
            "direction": s.direction.name.lower(), "space": attrs["space"], "config": attrs["config"],
            "best": best, "trials": rows, "wall_seconds": seconds}


def write_search_tables(out: Path, result: dict[str, Any]) -> None:
    names = list(result["space"])
    rows = [{"trial": t["number"], "state": t["state"], result["metric"]: t["value"], **t["params"],
             "epochs": t["epochs"], "test_accuracy": t["test_accuracy"]} for t in result["trials"]]
    notes = []
    if result["best"]:
        notes.append(f"Best: trial {result['best']['number']} ({result['metric']} {result['best']['value']:.4f}).")
    write_tables(out, "search", rows, ["trial", "state", result["metric"], *names, "epochs", "test_accuracy"],
                 title=f"Search {result['study']}: {result['direction']} {result['metric']}", notes=notes)


def plot_study(s, out: Path, log: Callable[[str], None]) -> list[Path]:
    """Optuna's optimisation history, parameter importances and parallel coordinates as PNG."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from optuna.visualization import matplotlib as oplt

    paths = []
    for name, draw in (("history", oplt.plot_optimization_history), ("importances", oplt.plot_param_importances),
                       ("parallel", oplt.plot_parallel_coordinate)):
        try:
            ax = draw(s)
        except Exception as e:  # e.g. importances need two or more finished trials
            log(f"no {name} plot: {str(e).splitlines()[0] if str(e) else type(e).__name__}")
            continue
        fig = ax.figure if hasattr(ax, "figure") else ax.flat[0].figure
        fig.set_size_inches(8, 5)
        fig.tight_layout()
        fig.savefig(out / f"{name}.png", dpi=100)
        plt.close(fig)
        paths.append(out / f"{name}.png")
    return paths


def config_from_study(ref: str, storage: str | None = None) -> TrainConfig:
    """The best trial's config of a search: `ref` is a search folder (its study.db and search.json), or
    a study name in `storage`."""
    import optuna

    folder = Path(ref)
    if (folder / "search.json").is_file():
        done = json.loads((folder / "search.json").read_text())
        name, url = done["study"], storage or studies.storage_url(None, folder)
    elif folder.is_dir():
        raise ConfigError(f"{folder} holds no search (no search.json)")
    elif storage:
        name, url = ref, storage
    else:
        raise ConfigError(f"--from-study {ref}: not a search folder; give the study's --storage URL")
    try:
        s = optuna.load_study(study_name=name, storage=studies.open_storage(url))
    except KeyError:
        raise ConfigError(f"no study {name!r} in {studies.redact(url)}") from None
    if "config" not in s.user_attrs:
        raise ConfigError(f"study {name!r} is not a digitlab search")
    complete = s.get_trials(deepcopy=False, states=(optuna.trial.TrialState.COMPLETE,))
    if not complete:
        raise ConfigError(f"study {name!r} has no completed trial yet")
    return TrainConfig.from_dict(s.user_attrs["config"]).replace(**s.best_trial.params)
