"""The `digitlab cv`, `sweep`, `search`, `compare` and `report` commands, added to digitlab's parser by
``add_commands``. Building the parser imports no torch and no Optuna; a command loads them when it runs."""

from __future__ import annotations

import argparse
import os
from datetime import datetime
from pathlib import Path

from digitlab.configs import add_config_options, config_values
from digitlab.errors import ConfigError, DigitlabError
from digitlab.table import format_table

STORAGE_ENV = "DIGITLAB_STORAGE"


def add_commands(command) -> None:
    """Add the experiment commands through digitlab's command(name, help, func, **options) -> parser."""
    p = command("cv", "k-fold cross-validation of a training config", cmd_cv,
                description="Stratified k-fold cross-validation over the training split: per fold the train/val "
                            "loss and accuracy, then mean ± std; a diverged fold is reported, not dropped.")
    _add_training(p, folds_help=True)
    p.add_argument("--jobs", type=int, default=1, metavar="N",
                   help="folds trained at once in separate processes (threads per process: cores / N)")

    p = command("sweep", "sensitivity sweeps (one factor at a time) and cross-validated grids", cmd_sweep,
                description="One factor at a time (--vary) or a grid of cells (--grid, each scored by mean "
                            "validation loss over --folds folds), as an Optuna study of grid points: a table, "
                            "figures, and a study that several machines can share (--storage, --study).")
    p.add_argument("--protocol", metavar="NAME", help="a named sweep or grid (see --list)")
    p.add_argument("--list", action="store_true", help="list the named sweeps and grids and exit")
    p.add_argument("--vary", action="append", default=[], metavar="FIELD=VALUES",
                   help="a factor and its values, e.g. lr=0.005,0.01,0.1 or batch_size=32:256:32 (repeatable)")
    p.add_argument("--grid", action="append", default=[], metavar="FIELD=VALUES",
                   help="an axis of a grid, same forms as --vary (repeatable: the cells are their product)")
    _add_study(p)
    p.add_argument("--jobs", type=int, default=1, metavar="N",
                   help="local workers: points trained at once in separate processes (threads: cores / N)")
    _add_training(p)

    p = command("search", "hyper-parameter search: TPE with pruning, resumable", cmd_search,
                description="Optuna TPE over a declared space; trials whose per-epoch validation metric falls "
                            "below the median are pruned. Run again with the same --out (or --storage/--study) "
                            "to resume. The best config retrains with `digitlab train --from-study OUT`.")
    p.add_argument("--param", action="append", default=[], metavar="FIELD=RANGE",
                   help="a dimension: lr=1e-4:0.3:log, epochs=2:10, momentum=0.3:0.95, batch_size=32,64,128 "
                        "(repeatable)")
    p.add_argument("--space", metavar="FILE", help="the space as YAML or TOML, e.g. `lr: {low: 1e-4, high: 0.3, "
                                                   "log: true}` and `batch_size: [32, 64, 128]`")
    p.add_argument("--trials", type=int, default=20, metavar="N",
                   help="finished (complete or pruned) trials the study should hold (default 20)")
    p.add_argument("--metric", default="val_accuracy", choices=("val_accuracy", "val_loss"),
                   help="what a trial scores: its best epoch's val accuracy (maximised, default) or val loss")
    p.add_argument("--no-prune", action="store_true", help="run every trial to its last epoch")
    _add_study(p)
    _add_training(p)

    p = command("compare", "compare models under one protocol over several seeds", cmd_compare,
                description="Each model trained for each seed: test accuracy mean ± std, parameters, "
                            "multiply-accumulates, train seconds and inference ms/image; Markdown, CSV and a "
                            "bar chart.")
    p.add_argument("models", nargs="*", metavar="MODEL", help="zoo models (default: the protocol's)")
    p.add_argument("--protocol", metavar="NAME", help="a named protocol, e.g. mnist-zoo (see --list)")
    p.add_argument("--list", action="store_true", help="list the named protocols and exit")
    p.add_argument("--seeds", default="3", metavar="N|S1,S2,...",
                   help="a number of seeds (1..N) or a list of seeds (default 3); a k-fold protocol (kannada-mnist) "
                        "or --folds K trains each model once per fold instead")
    p.add_argument("--jobs", type=int, default=None, metavar="N",
                   help="trainings at once in separate processes, one thread each (default: the protocol's, "
                        "else 1)")
    _add_training(p)

    p = command("report", "one self-contained HTML page per run, cv, sweep, grid, search or comparison",
                cmd_report)
    p.add_argument("runs", nargs="+", metavar="RUN", help="experiment or run folders")
    p.add_argument("--out", metavar="FILE.html", help="where to write it (one folder only; default "
                                                      "RUN/report.html)")


def _add_training(p: argparse.ArgumentParser, folds_help: bool = False) -> None:
    from digitlab.train.config import INITS, KEEPS, OPTIMIZERS, SCHEDULES, TrainConfig

    p.add_argument("--preset", help="start from this preset (see `digitlab presets`)")
    p.add_argument("--out", metavar="DIR", help="experiment folder (default runs/<time>-<command>/)")
    p.add_argument("--no-progress", action="store_true", help="no progress bars; one line per step")
    add_config_options(p, TrainConfig, "training settings (each overrides the preset's)"
                       + ("; --folds K is the number of folds (default 10)" if folds_help else ""),
                       {"optimizer": OPTIMIZERS, "schedule": SCHEDULES, "init": INITS, "keep": KEEPS})


def _add_study(p: argparse.ArgumentParser) -> None:
    p.add_argument("--storage", metavar="URL",
                   help=f"Optuna storage, any SQLAlchemy URL, e.g. postgresql://user:pw@host/db: workers on "
                        f"many machines started with the same --storage and --study share the work (default "
                        f"${STORAGE_ENV}, else an SQLite file in --out)")
    p.add_argument("--study", metavar="NAME", help="study name in the storage (default: the protocol's name, else "
                                                   "the command's)")
    p.add_argument("--heartbeat", type=float, default=10, metavar="SECONDS",
                   help="a worker beats this often while training; silent for 3 beats it is taken for dead "
                        "and its point is run again (default 10)")


def _config(args: argparse.Namespace, preset: str | None = None, **extra):
    from digitlab.train import TrainConfig, get_preset

    values = {**config_values(args, TrainConfig), **extra}
    preset = args.preset or preset
    return get_preset(preset).config(**values) if preset else TrainConfig.from_dict(values)


def _out(args: argparse.Namespace, name: str) -> Path:
    return Path(args.out) if args.out else Path("runs") / f"{datetime.now():%Y%m%d-%H%M%S}-{name}"


def _jobs(args: argparse.Namespace) -> int | None:
    if args.jobs is None:
        return None
    if args.jobs < 1:
        raise ConfigError(f"--jobs must be >= 1, got {args.jobs}")
    return args.jobs


def _storage(args: argparse.Namespace) -> str | None:
    return args.storage or os.environ.get(STORAGE_ENV) or None


def cmd_cv(args: argparse.Namespace) -> None:
    from digitlab.experiments.cv import cross_validate

    if args.fold is not None:
        raise DigitlabError("cv trains every fold; --fold belongs to `digitlab train --folds K --fold I`")
    cfg = _config(args)
    folds = cfg.folds or 10
    result = cross_validate(cfg.replace(folds=0, fold=0), _out(args, "cv"), folds=folds, jobs=_jobs(args),
                            progress=not args.no_progress)
    if result["diverged"] == folds:
        raise SystemExit(1)


def cmd_sweep(args: argparse.Namespace) -> None:
    from digitlab.experiments.sweep_protocols import SWEEPS, get_sweep

    if args.list:
        rows = [("protocol", "kind", "preset", "points", "description")]
        for p in SWEEPS.values():
            kind = "grid" if p.grid else "sweep"
            n = sum(map(len, p.vary.values())) if p.vary else _product(p.grid) * max(1, p.folds)
            rows.append((p.name, kind, p.preset, f"{n} trainings", p.description))
        print(format_table(rows))
        return
    from digitlab.experiments.sweep import grid, parse_axis, sweep

    protocol = get_sweep(args.protocol) if args.protocol else None
    if protocol and (args.vary or args.grid):
        raise DigitlabError("--protocol brings its own factors; drop --vary/--grid (or drop --protocol)")
    if args.vary and args.grid:
        raise DigitlabError("give either --vary (one factor at a time) or --grid (cells of a product), not both")
    cfg = _config(args, protocol.preset if protocol else None, **(protocol.overrides if protocol else {}))
    folds = cfg.folds or (protocol.folds if protocol else 0)
    base = cfg.replace(folds=0, fold=0)
    common = dict(name=protocol.name if protocol else None, jobs=_jobs(args), storage=_storage(args),
                  study=args.study, heartbeat=args.heartbeat, progress=not args.no_progress)
    if protocol and protocol.vary or args.vary:
        vary = dict(protocol.vary) if protocol else dict(parse_axis(s, base) for s in args.vary)
        sweep(base, vary, _out(args, protocol.name if protocol else "sweep"), folds=folds, **common)
    elif protocol and protocol.grid or args.grid:
        axes = dict(protocol.grid) if protocol else dict(parse_axis(s, base) for s in args.grid)
        grid(base, axes, _out(args, protocol.name if protocol else "grid"), folds=folds, **common)
    else:
        raise DigitlabError("nothing to sweep: give --vary FIELD=VALUES, --grid FIELD=VALUES or --protocol NAME")


def _product(axes: dict) -> int:
    n = 1
    for values in axes.values():
        n *= len(values)
    return n


def cmd_search(args: argparse.Namespace) -> None:
    from digitlab.experiments.search import load_space, parse_param, search

    space = load_space(args.space) if args.space else {}
    space.update(dict(parse_param(s) for s in args.param))
    if not space:
        raise DigitlabError("nothing to search: give --param FIELD=RANGE (repeatable) or --space FILE")
    search(_config(args), space, _out(args, "search"), trials=args.trials, metric=args.metric,
           storage=_storage(args), study=args.study, heartbeat=args.heartbeat, prune=not args.no_prune,
           progress=not args.no_progress)


def parse_seeds(text: str) -> list[int]:
    try:
        if "," in text:
            seeds = [int(s) for s in text.split(",") if s.strip()]
        else:
            seeds = list(range(1, int(text) + 1))
    except ValueError:
        raise ConfigError(f"--seeds: a number of seeds or a comma-separated list, got {text!r}") from None
    if not seeds or len(set(seeds)) != len(seeds):
        raise ConfigError(f"--seeds: give at least one seed, each once, got {text!r}")
    return seeds


def cmd_compare(args: argparse.Namespace) -> None:
    from digitlab.experiments.protocols import PROTOCOLS

    if args.list:
        rows = [("protocol", "dataset", "models", "description")]
        for p in PROTOCOLS.values():
            rows.append((p.name, p.dataset, str(len(p.models)), p.description))
        print(format_table(rows))
        return
    from digitlab.experiments.compare import compare

    if not args.models and not args.protocol:
        raise DigitlabError("nothing to compare: give models (e.g. lenet5 fastcnn) or --protocol NAME")
    base = _config(args) if (args.preset or args.models or any(
        v is not None for v in _config_fields(args).values())) else None
    compare(args.models or None, protocol=args.protocol, base=base, seeds=parse_seeds(args.seeds),
            out=_out(args, args.protocol or "compare"), jobs=_jobs(args), progress=not args.no_progress)


def _config_fields(args: argparse.Namespace) -> dict:
    from digitlab.train import TrainConfig

    return config_values(args, TrainConfig)


def cmd_report(args: argparse.Namespace) -> None:
    from digitlab.experiments.report import write_report

    if args.out and len(args.runs) > 1:
        raise DigitlabError("--out names one file: give one folder, or drop --out (each gets RUN/report.html)")
    for run in args.runs:
        if not Path(run).is_dir():
            raise DigitlabError(f"{run} is not a folder")
        print(write_report(Path(run), Path(args.out) if args.out else None))
