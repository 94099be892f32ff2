"""Optuna studies as the one engine of sweeps, grids and searches, on one machine or many.

Storage is an SQLite file in the experiment folder unless a SQLAlchemy URL is given: N machines
started with the same `--storage postgresql://... --study NAME` share one study. A grid (a one-factor
sweep is a grid of one axis) is Optuna's GridSampler over its axes; the worker that creates the study
queues every point as a waiting trial, and each worker claims one waiting trial at a time with the
storage's atomic state change, so no point is run twice. A worker records a heartbeat while it
trains; a trial whose worker stops beating (killed, machine lost) is failed after a grace period and
queued again, where the next worker to look takes it up (resuming its run folder when it has one).
"""

from __future__ import annotations

import json
import os
import socket
import threading
import time
import warnings
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import optuna
from optuna.exceptions import DuplicatedStudyError, UpdateFinishedTrialError
from optuna.storages import RDBStorage, RetryHeartbeatStaleTrialCallback, fail_stale_trials
from optuna.trial import TrialState

from digitlab.errors import ConfigError

HEARTBEAT = 10  # seconds between a worker's heartbeats; silent for GRACE_BEATS of them: taken for dead
GRACE_BEATS = 3
DB_NAME = "study.db"

optuna.logging.set_verbosity(optuna.logging.WARNING)
# heartbeats and the retry of stale trials are marked experimental; they are what a shared study needs
warnings.filterwarnings("ignore", category=optuna.exceptions.ExperimentalWarning)


def storage_url(storage: str | None, out: Path) -> str:
    """The given SQLAlchemy URL, or an SQLite file in the experiment folder."""
    if storage:
        return storage
    return f"sqlite:///{(Path(out) / DB_NAME).resolve()}"


def open_storage(url: str, heartbeat: float = HEARTBEAT) -> RDBStorage:
    """Optuna's relational storage with heartbeats and the retry of trials whose worker died."""
    engine_kwargs: dict[str, Any] = {}
    if url.startswith("sqlite"):
        engine_kwargs = {"connect_args": {"timeout": 60}}  # several local workers wait for the file lock
    else:
        engine_kwargs = {"pool_pre_ping": True}
    beat = max(1, round(heartbeat))
    try:
        return RDBStorage(url, engine_kwargs=engine_kwargs, heartbeat_interval=beat,
                          grace_period=beat * GRACE_BEATS,
                          heartbeat_stale_trial_callback=RetryHeartbeatStaleTrialCallback(max_retry=3))
    except (ImportError, ModuleNotFoundError) as e:
        raise ConfigError(f"storage {redact(url)}: {e} (PostgreSQL needs `pip install psycopg[binary]`)") from None
    except Exception as e:  # sqlalchemy's errors: a bad URL, a server that does not answer
        first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        raise ConfigError(f"storage {redact(url)}: {first}") from None


def redact(url: str) -> str:
    """The URL without its password, for messages."""
    if "://" in url and "@" in url.split("://", 1)[1]:
        scheme, rest = url.split("://", 1)
        cred, host = rest.rsplit("@", 1)
        return f"{scheme}://{cred.split(':')[0]}:***@{host}"
    return url


def grid_study(name: str, storage: RDBStorage, axes: dict[str, Sequence[Any]], attrs: dict[str, Any],
               log: Callable[[str], None] = print, wait: float = 60.0) -> optuna.Study:
    """Create (or join) the study `name` of the grid `axes`, every point queued as a waiting trial.

    `attrs` (the base config, folds, ...) are saved as study user attributes; a worker that joins an
    existing study must bring the same grid and attributes, or it is refused."""
    space = {k: list(v) for k, v in axes.items()}
    sampler = optuna.samplers.GridSampler(space, seed=0)
    points = grid_points(space)
    try:
        study = optuna.create_study(study_name=name, storage=storage, sampler=sampler, direction="minimize")
    except DuplicatedStudyError:
        study = optuna.load_study(study_name=name, storage=storage, sampler=sampler)
        deadline = time.monotonic() + wait
        while "points" not in study.user_attrs:  # its creator is still queueing the points
            if time.monotonic() > deadline:
                raise ConfigError(f"study {name!r} exists but its grid was never queued (its creator died while "
                                  f"queueing?): delete it or use another --study") from None
            time.sleep(0.5)
        theirs = {"space": study.user_attrs.get("space"), **{k: study.user_attrs.get(k) for k in attrs}}
        ours = json.loads(json.dumps({"space": space, **attrs}))
        if theirs != ours:
            diff = sorted(k for k in ours if ours[k] != theirs.get(k))
            raise ConfigError(f"study {name!r} holds another experiment (its {', '.join(diff)} differ): "
                              f"use another --study") from None
        log(f"joined study {name!r}: {len(points)} points")
        return study
    for key, value in attrs.items():
        study.set_user_attr(key, json.loads(json.dumps(value)))
    study.set_user_attr("space", space)
    for point in points:
        study.enqueue_trial(point)
    study.set_user_attr("points", len(points))  # last: joiners wait for it
    log(f"created study {name!r}: {len(points)} points queued")
    return study


def grid_points(space: dict[str, list[Any]]) -> list[dict[str, Any]]:
    """Every combination of the axes' values, the first axis varying slowest."""
    points: list[dict[str, Any]] = [{}]
    for key, values in space.items():
        points = [{**p, key: v} for p in points for v in values]
    return points


def suggest(trial: optuna.Trial, space: dict[str, list[Any]]) -> dict[str, Any]:
    """The trial's point: each axis suggested as a categorical of its values (fixed by the queue)."""
    return {k: trial.suggest_categorical(k, v) for k, v in space.items()}


class Heartbeat:
    """Records the trial's heartbeat every interval in a daemon thread while the `with` block runs."""

    def __init__(self, storage: RDBStorage, trial_id: int):
        self.storage, self.trial_id = storage, trial_id
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self._beat, daemon=True)

    def _beat(self) -> None:
        interval = self.storage.get_heartbeat_interval() or HEARTBEAT
        while not self.stop.wait(interval):
            try:
                self.storage.record_heartbeat(self.trial_id)
            except Exception:  # a storage hiccup: the next beat tries again
                pass

    def __enter__(self) -> Heartbeat:
        self.storage.record_heartbeat(self.trial_id)
        self.thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self.stop.set()
        self.thread.join()


def claim(study: optuna.Study, storage: RDBStorage) -> tuple[optuna.Trial, int] | None:
    """Take one waiting trial (atomically: a trial another worker took is skipped): (trial, its storage
    id), or None."""
    study_id = storage.get_study_id_from_name(study.study_name)
    for frozen in study.get_trials(deepcopy=False, states=(TrialState.WAITING,)):
        trial_id = storage.get_trial_id_from_study_id_trial_number(study_id, frozen.number)
        try:
            if storage.set_trial_state_values(trial_id, state=TrialState.RUNNING):
                return optuna.Trial(study, trial_id), trial_id
        except UpdateFinishedTrialError:
            continue
    return None


def work(study: optuna.Study, storage: RDBStorage, evaluate: Callable[[optuna.Trial], float],
         log: Callable[[str], None] = print, on_trial: Callable[[optuna.trial.FrozenTrial], None] | None = None,
         poll: float | None = None) -> int:
    """Run the study's queued trials until every one has ended; returns how many this worker ran.

    evaluate(trial) -> the value to minimise (it may store user attributes on the trial). When nothing
    is waiting but other workers still run trials, this worker waits: should one of them die, its
    trial comes back to the queue and is taken up here."""
    poll = poll or (storage.get_heartbeat_interval() or HEARTBEAT)
    ran = 0
    while True:
        fail_stale_trials(study)  # trials of dead workers: failed, and queued again by the retry callback
        claimed = claim(study, storage)
        if claimed is None:
            if study.get_trials(deepcopy=False, states=(TrialState.RUNNING, TrialState.WAITING)):
                time.sleep(poll)
                continue
            return ran
        trial, trial_id = claimed
        trial.set_user_attr("worker", worker_name())
        with Heartbeat(storage, trial_id):
            try:
                value = evaluate(trial)
            except optuna.TrialPruned:
                study.tell(trial, state=TrialState.PRUNED)
            except BaseException:
                study.tell(trial, state=TrialState.FAIL)
                raise
            else:
                study.tell(trial, value)
        ran += 1
        if on_trial is not None:
            on_trial(study.trials[trial.number])


MACHINE_SETTINGS = ("data_dir", "threads")  # each machine's own: workers of one study may differ in them


def shared_config(config: dict[str, Any]) -> dict[str, Any]:
    """A TrainConfig dict without the settings that belong to one machine."""
    return {k: v for k, v in config.items() if k not in MACHINE_SETTINGS}


def worker_name() -> str:
    """host:pid, recorded on each trial a worker runs."""
    return f"{socket.gethostname()}:{os.getpid()}"


def point_key(params: dict[str, Any]) -> str:
    """A folder name for a grid point, e.g. batch_size-32_lr-0.005."""
    return "_".join(f"{k}-{v:g}" if isinstance(v, float) else f"{k}-{v}" for k, v in params.items())
