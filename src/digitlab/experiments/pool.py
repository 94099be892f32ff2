"""Many trainings, one after another or in parallel processes: the worker of cv, sweeps and compare.

Each task is an ordinary `fit` run folder. A task whose folder holds summary.json is done and is not
run again; one with a state.pt and no summary is resumed from its last epoch. So an interrupted
experiment, started again with the same output folder, picks up where it stopped."""

from __future__ import annotations

import json
import os
from collections.abc import Callable, Sequence
from concurrent.futures import FIRST_COMPLETED, ProcessPoolExecutor, wait
from multiprocessing import get_context
from pathlib import Path
from typing import Any

from tqdm import tqdm

from digitlab.train.config import TrainConfig

SUMMARY, STATE = "summary.json", "state.pt"


def cores() -> int:
    """The CPU cores this process may run on."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not Linux
        return os.cpu_count() or 1


def threads_per_job(jobs: int) -> int:
    """Torch threads for each of `jobs` parallel trainings, so that together they fill the cores once."""
    return max(1, cores() // max(1, jobs))


def finished(out: Path) -> dict[str, Any] | None:
    path = Path(out) / SUMMARY
    return json.loads(path.read_text()) if path.is_file() else None


def run_fit(cfg: TrainConfig, out: Path, progress: bool = False, log: Callable[[str], None] | None = None,
            on_epoch: Callable[[dict[str, Any]], None] | None = None) -> dict[str, Any]:
    """fit(cfg, out), or its summary if that run is done, or its resumption if it was interrupted."""
    from digitlab.train import fit

    if (done := finished(out)) is not None:
        return done
    quiet = log or (lambda s: None)
    if (Path(out) / STATE).is_file():
        return fit(None, out, resume=True, progress=progress, log=quiet, on_epoch=on_epoch)
    return fit(cfg, out, progress=progress, log=quiet, on_epoch=on_epoch)


def _child(cfg: TrainConfig, out: Path, threads: int) -> dict[str, Any]:
    import torch

    torch.set_num_threads(threads)
    return run_fit(cfg.replace(threads=threads), out)


def run_fits(tasks: Sequence[tuple[TrainConfig, Path]], jobs: int = 1, progress: bool = True,
             log: Callable[[str], None] = print, desc: str = "runs",
             on_done: Callable[[int, dict[str, Any]], None] | None = None) -> list[dict[str, Any]]:
    """Run every (config, run folder) task and return their summaries in task order.

    jobs > 1 runs that many trainings at once in separate processes, each with cores // jobs torch
    threads, so the machine is not oversubscribed. on_done(task index, summary) follows each task."""
    results: list[dict[str, Any] | None] = [None] * len(tasks)
    bar = tqdm(total=len(tasks), desc=desc, unit="run", disable=not progress, dynamic_ncols=True)

    def done(i: int, summary: dict[str, Any]) -> None:
        results[i] = summary
        bar.update(1)
        if on_done is not None:
            on_done(i, summary)

    try:
        if jobs <= 1 or len(tasks) <= 1:
            for i, (cfg, out) in enumerate(tasks):
                done(i, run_fit(cfg, out, progress=progress, log=None))
        else:
            threads = threads_per_job(jobs)
            with ProcessPoolExecutor(max_workers=jobs, mp_context=get_context("spawn")) as pool:
                pending = {pool.submit(_child, cfg, Path(out), threads): i for i, (cfg, out) in enumerate(tasks)}
                while pending:
                    ready, _ = wait(pending, return_when=FIRST_COMPLETED)
                    for future in ready:
                        done(pending.pop(future), future.result())
    finally:
        bar.close()
    return [r for r in results if r is not None]
