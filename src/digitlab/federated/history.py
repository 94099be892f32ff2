"""A federation's run folder, written by the server after every round: rounds.csv (the global model on the
test set, the clients' mean train metrics, failures, seconds, bytes), clients.csv (each client's metrics
each round), curves.csv (clients' test accuracy during local training, when asked), and the global model
as a normal digitlab checkpoint (model.safetensors + model.json) that eval, predict and read take.

The checkpoint is the authority on progress: its `round` says which rounds are done; rows of later rounds
(written before a crash) are dropped when the federation resumes. No flwr here."""

from __future__ import annotations

import csv
import json
import math
from pathlib import Path
from typing import Any

from torch import nn

from digitlab.atomic import atomic_path, write_csv
from digitlab.checkpoint import load_checkpoint, model_meta, save_checkpoint
from digitlab.data import get_spec
from digitlab.errors import DigitlabError
from digitlab.federated.config import FedConfig
from digitlab.train.config import TrainConfig

ROUND_FIELDS = ["round", "test_loss", "test_accuracy", "train_loss", "train_accuracy", "clients", "replied",
                "failed", "seconds", "bytes_sent", "bytes_received", "epsilon"]
CLIENT_FIELDS = ["round", "client", "examples", "steps", "train_loss", "train_accuracy", "diverged", "malicious",
                 "bytes_received"]
CURVE_FIELDS = ["round", "client", "step", "test_accuracy"]
CONFIG = "federation.json"


def read_rows(path: Path) -> list[dict[str, Any]]:
    if not path.is_file():
        return []
    with open(path, newline="") as f:
        return [{k: _number(v) for k, v in row.items()} for row in csv.DictReader(f)]


def _number(text: str) -> Any:
    if text in ("", None):
        return None
    try:
        value = float(text)
    except ValueError:
        return text
    return int(value) if value.is_integer() and "." not in text and "e" not in text.lower() else value


def completed_rounds(out: Path) -> int:
    """Rounds whose global model is saved in `out` (0: none yet)."""
    if not (out / "model.json").is_file():
        return 0
    try:
        return int(json.loads((out / "model.json").read_text()).get("round", 0))
    except (json.JSONDecodeError, ValueError, OSError):
        return 0


class History:
    """The server's record of a federation in `out` (absolute: the ServerApp may run in another folder)."""

    def __init__(self, out: Path, cfg: TrainConfig, fed: FedConfig):
        self.out, self.cfg, self.fed = out, cfg, fed
        self.done = completed_rounds(out)
        self.rounds = [r for r in read_rows(out / "rounds.csv") if r["round"] <= self.done]
        self.clients = [r for r in read_rows(out / "clients.csv") if r["round"] <= self.done]
        self.curves = [r for r in read_rows(out / "curves.csv") if r["round"] <= self.done]
        self.pending: dict[str, Any] = {}

    def initial_weights(self, model: nn.Module) -> dict:
        """The weights to start from: the last saved round's, else the model's own initialisation."""
        if self.done:
            return load_checkpoint(self.out).model.state_dict()
        return model.state_dict()

    def sent(self, server_round: int, clients: int) -> None:
        """A round began: `clients` were sent the global model."""
        self.pending = {"round": server_round, "clients": clients, "client_rows": [], "curve_rows": [],
                        "replied": 0}

    def received(self, client_rows: list[dict[str, Any]], curve_rows: list[dict[str, Any]]) -> None:
        """The round's replies: one row per client that replied, and their local test curves."""
        client_rows = sorted(client_rows, key=lambda row: row["client"])
        self.pending.update(client_rows=client_rows, curve_rows=curve_rows, replied=len(client_rows))

    def finish_round(self, server_round: int, model: nn.Module, test_loss: float, test_accuracy: float,
                     seconds: float, epsilon: float | None = None, bytes_sent: int = 0,
                     bytes_received: int = 0) -> dict[str, Any]:
        """Append the round's rows and save the global model of this round (round 0: the initial model,
        recorded only once). bytes_*: all the round's traffic, every stage of its protocol."""
        pending, self.pending = self.pending, {}
        honest = [r for r in pending.get("client_rows", []) if not r["malicious"] and not r["diverged"]]
        total = sum(r["examples"] for r in honest)

        def mean(key: str) -> float | None:
            values = [(r[key], r["examples"]) for r in honest if r[key] is not None and math.isfinite(r[key])]
            return sum(v * n for v, n in values) / sum(n for _, n in values) if values and total else None

        row = {"round": server_round, "test_loss": test_loss, "test_accuracy": test_accuracy,
               "train_loss": mean("train_loss"), "train_accuracy": mean("train_accuracy"),
               "clients": pending.get("clients", 0), "replied": pending.get("replied", 0),
               "failed": pending.get("clients", 0) - pending.get("replied", 0), "seconds": seconds,
               "bytes_sent": bytes_sent, "bytes_received": bytes_received,
               "epsilon": epsilon}
        self.rounds.append(row)
        self.clients += pending.get("client_rows", [])
        self.curves += pending.get("curve_rows", [])
        write_csv(self.out / "rounds.csv", ROUND_FIELDS, self.rounds)
        write_csv(self.out / "clients.csv", CLIENT_FIELDS, self.clients)
        if self.curves:
            write_csv(self.out / "curves.csv", CURVE_FIELDS, self.curves)
        spec = get_spec(self.cfg.dataset)
        meta = model_meta(self.cfg.model, {"in_channels": 1, "num_classes": len(spec.classes), **self.cfg.model_args},
                          self.cfg.dataset, spec.classes, spec.normalization, config=self.cfg.to_dict(),
                          federation=self.fed.to_dict(), round=server_round,
                          metrics={"test_accuracy": test_accuracy, "test_loss": test_loss})
        save_checkpoint(self.out, model, meta)  # last: it marks the round done
        self.done = server_round
        return row


def check_folder(out: Path, cfg: TrainConfig, fed: FedConfig) -> int:
    """Before a federation starts in `out`: a new folder gets the configs; a folder of the same federation
    resumes (its completed rounds returned), also with more rounds than before; another federation's folder
    is refused."""
    path = out / CONFIG
    wanted = {"train": cfg.to_dict(), "federation": fed.to_dict()}
    if path.is_file():
        saved = json.loads(path.read_text())
        # a setting added to digitlab after the folder was made counts as its default there
        defaults = {"train": TrainConfig().to_dict(), "federation": FedConfig().to_dict()}
        changed = sorted({f"{part}.{k}" for part in wanted for k in wanted[part]
                          if saved.get(part, {}).get(k, defaults[part][k]) != wanted[part][k]}
                         - {"federation.rounds"})
        if changed:
            raise DigitlabError(f"{out} holds another federation (settings differ: {', '.join(changed[:6])}); "
                                f"use another --out, or the same settings to resume it")
        with atomic_path(path) as tmp:  # more rounds than before: the federation goes on
            tmp.write_text(json.dumps(wanted, indent=2))
        return completed_rounds(out)
    out.mkdir(parents=True, exist_ok=True)
    with atomic_path(path) as tmp:
        tmp.write_text(json.dumps(wanted, indent=2))
    return 0
