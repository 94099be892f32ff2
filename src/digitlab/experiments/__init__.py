"""Experiments: k-fold cross-validation, sensitivity sweeps, cross-validated grids, hyper-parameter
search, multi-seed model comparisons and HTML reports. Every fold, sweep point and trial is an
ordinary training run (digitlab.train.fit); sweeps, grids and searches are Optuna studies, in an
SQLite file by default or in any database that several machines share.

Each name loads its module when first used (Optuna, torch and matplotlib only then)."""

from importlib import import_module

_API = {
    "cross_validate": "cv", "sweep": "sweep", "grid": "sweep", "search": "search",
    "config_from_study": "search", "compare": "compare", "write_report": "report",
    "SWEEPS": "sweep_protocols", "PROTOCOLS": "protocols", "run_fits": "pool",
}
__all__ = sorted(_API)


def __getattr__(name: str):
    if name in _API:
        return getattr(import_module(f"digitlab.experiments.{_API[name]}"), name)
    raise AttributeError(f"module 'digitlab.experiments' has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted({*globals(), *__all__})
