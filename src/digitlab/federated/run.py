"""`federate`: a whole federation on this machine, on Flower's simulation runtime. A private SuperLink is started
on a free port, `flwr run` runs digitlab's Flower App on it, and everything is stopped when it ends (also on
an error or Ctrl-C). The folder gets the partition table and picture, per-round and per-client metrics, the
global model after every round (a normal checkpoint), plots and summary.json; run again with the same
settings and folder, an interrupted federation resumes after its last saved round."""

from __future__ import annotations

import importlib.util
import json
import os
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from tqdm.auto import tqdm

from digitlab.atomic import write_text
from digitlab.data import get_spec, resolve_data_dir
from digitlab.errors import ConfigError
from digitlab.federated.config import FedConfig, pack
from digitlab.federated.history import check_folder, completed_rounds, read_rows
from digitlab.federated.partition import label_counts, partition_rows, plot_partition
from digitlab.federated.runtime import FlowerError, flwr_run, superlink
from digitlab.federated.task import client_data, client_parts, federated_defaults, pool_and_test
from digitlab.table import format_table
from digitlab.train.config import TrainConfig


def prepare(cfg: TrainConfig, fed: FedConfig) -> TrainConfig:
    """The clients' training config as the federation runs it: the whole pool for the clients, the data
    folder absolute (the apps run in other folders and processes)."""
    if cfg.folds:
        raise ConfigError("a federation has no folds: each client trains on its own part (drop --folds)")
    if importlib.util.find_spec("flwr") is None:
        raise FlowerError("federated training needs Flower: pip install -e '.[federated]' (flwr[simulation,dp])")
    cfg = federated_defaults(cfg)
    return cfg.replace(data_dir=str(resolve_data_dir(cfg.data_dir).resolve()))


def describe_partition(cfg: TrainConfig, fed: FedConfig, out: Path, log: Callable[[str], None]) -> list[dict]:
    """partition.csv and partition.png: each client's size and label histogram."""
    classes = list(get_spec(cfg.dataset).classes)
    if fed.client_data:
        datasets = [client_data(cfg, fed, k) for k in range(fed.clients)]
        import numpy as np

        counts = np.stack([np.bincount(d.labels.numpy(), minlength=len(classes)) for d in datasets])
    else:
        pool, _ = pool_and_test(cfg)
        counts = label_counts(pool.labels.numpy(), client_parts(cfg, fed), len(classes))
    rows = partition_rows(counts, classes)
    write_text(out / "partition.csv", "\n".join(",".join(r) for r in rows) + "\n")
    how = "own data folders" if fed.client_data else fed.partition
    plot_partition(counts, classes, out / "partition.png", title=f"{fed.clients} clients, {how}: sizes and labels")
    shown = rows if len(rows) <= 21 else rows[:11] + [tuple("..." for _ in rows[0])] + rows[-5:]
    log(f"partition ({how}):\n{format_table([r[:4] for r in shown])}")
    return [dict(zip(rows[0], r)) for r in rows[1:]]


def federate(cfg: TrainConfig, fed: FedConfig, out: str | Path, *, progress: bool = True,
             log: Callable[[str], None] = print) -> dict[str, Any]:
    """Run (or resume) the federation in `out` on the simulation runtime; returns summary.json's content."""
    cfg = prepare(cfg, fed)
    out = Path(out).resolve()
    done = check_folder(out, cfg, fed)
    log(f"federation folder: {out}\nclients' training:\n{cfg.describe()}\nfederation:\n{fed.describe()}")
    if done:
        log(f"resuming after round {done} of {fed.rounds}")
    describe_partition(cfg, fed, out, log)
    if done < fed.rounds:
        _simulate(cfg, fed, out, done, progress, log)
    return summarize(out, cfg, fed)


def write_run_config(cfg: TrainConfig, fed: FedConfig, out: str | Path, path: str | Path) -> Path:
    """The run config for `flwr run` of digitlab's app against a SuperLink of your own (a deployment): both
    configs, and `out`, the folder the ServerApp writes to on the SuperLink's machine."""
    import tomli_w

    cfg = prepare(cfg, fed)
    write_text(Path(path), tomli_w.dumps({"digitlab-config": pack(cfg, fed), "out": str(Path(out).resolve())}))
    return Path(path)


def _simulate(cfg: TrainConfig, fed: FedConfig, out: Path, done: int, progress: bool,
              log: Callable[[str], None]) -> None:
    work = out / "flower"
    work.mkdir(exist_ok=True)
    run_config = work / "run.toml"
    write_run_config(cfg, fed, out, run_config)
    cores = os.cpu_count() or 1
    federation = {"num_supernodes": fed.clients, "client_resources_num_cpus": fed.client_threads,
                  "init_args_num_cpus": max(fed.client_threads, cores), "init_args_logging_level": "warning"}
    t0 = time.perf_counter()
    with superlink(work, simulation=True) as link:
        proc = flwr_run(link, run_config, work, federation)
        stop = threading.Event()
        watcher = threading.Thread(target=_watch, args=(out, fed, done, progress, log, stop), daemon=True)
        watcher.start()
        try:
            proc.wait()
        finally:
            if proc.poll() is None:
                proc.kill()
            stop.set()
            watcher.join()
    finished = completed_rounds(out)
    log(f"{finished - done} rounds in {time.perf_counter() - t0:.1f}s")
    if finished < fed.rounds:
        raise FlowerError(f"the federation stopped after round {finished} of {fed.rounds}; see {work}/run.log "
                          f"and {work}/superlink.log; run the same command again to resume\n{_tail(work / 'run.log')}")


def _watch(out: Path, fed: FedConfig, done: int, progress: bool, log: Callable[[str], None],
           stop: threading.Event) -> None:
    """A progress bar over rounds (one line per round without a bar), from the rows the server writes."""
    bar = tqdm(total=fed.rounds, initial=done, unit="round", disable=not progress, dynamic_ncols=True, leave=False)
    seen = done
    while True:
        finished = stop.wait(1.0)
        rows = [r for r in read_rows(out / "rounds.csv") if r["round"] > seen]
        for row in rows:
            seen = row["round"]
            msg = (f"round {row['round']:>3}/{fed.rounds}  test acc {row['test_accuracy']:.4f}  "
                   f"loss {row['test_loss']:.4f}  clients {row['replied']}/{row['clients']}  {row['seconds']:.1f}s")
            bar.update(1)
            bar.write(msg) if progress else log(msg)
        if finished:
            break
    bar.close()


def _tail(path: Path, lines: int = 15) -> str:
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return ""


def summarize(out: Path, cfg: TrainConfig, fed: FedConfig) -> dict[str, Any]:
    """summary.json and the plots, from what the server wrote."""
    from digitlab.federated.plots import plot_client_curves, plot_rounds

    rounds = [r for r in read_rows(out / "rounds.csv") if r["round"] >= 1]
    clients = read_rows(out / "clients.csv")
    curves = read_rows(out / "curves.csv")
    best = max(rounds, key=lambda r: r["test_accuracy"]) if rounds else None
    summary = {
        "model": cfg.model, "dataset": cfg.dataset, "strategy": fed.strategy, "partition": fed.partition,
        "clients": fed.clients, "rounds": len(rounds),
        "test_accuracy": rounds[-1]["test_accuracy"] if rounds else None,
        "test_loss": rounds[-1]["test_loss"] if rounds else None,
        "best_round": best["round"] if best else None, "best_test_accuracy": best["test_accuracy"] if best else None,
        "train_seconds": sum(r["seconds"] for r in rounds),
        "failed_replies": sum(r["failed"] for r in rounds),
        "bytes_sent": sum(r["bytes_sent"] for r in rounds), "bytes_received": sum(r["bytes_received"] for r in rounds),
        "local_steps": sum(r["steps"] for r in clients),
        "secure_aggregation": fed.secure_aggregation,
        "epsilon": rounds[-1]["epsilon"] if rounds and fed.dp_noise else None,
        "delta": fed.dp_delta if fed.dp_noise else None,
        "config": cfg.to_dict(), "federation": fed.to_dict(),
    }
    if rounds:
        plot_rounds(read_rows(out / "rounds.csv"), out / "rounds.png",
                    title=f"{cfg.model} on {cfg.dataset}: {fed.strategy}, {fed.clients} clients, {fed.partition}")
    if curves:
        plot_client_curves(curves, out / "client-curves.png", title=f"{cfg.model} on {cfg.dataset}: each client's "
                                                                     f"local model during its rounds")
    write_text(out / "summary.json", json.dumps(summary, indent=2))
    return summary
