"""The federation's settings: one frozen dataclass beside the TrainConfig of the clients' local training.
Both travel to every app as one JSON string in Flower's run config, so a simulation and a real
SuperLink/SuperNode deployment run the same apps with the same settings."""

from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass
from typing import Any

from digitlab.configs import config_from_dict
from digitlab.errors import ConfigError

STRATEGIES = ("fedavg", "fedprox", "fedavgm", "fedadam", "fedyogi", "fedmedian", "fedtrimmedavg", "krum",
              "multikrum", "bulyan")
ROBUST = ("fedmedian", "fedtrimmedavg", "krum", "multikrum", "bulyan")
ATTACKS = ("scale", "noise")
DP_CLIPPING = ("server", "client")


@dataclass(frozen=True)
class FedConfig:
    # who takes part
    clients: int = 2  # clients (SuperNodes in a simulation); with client_data, one per folder
    partition: str = "iid"  # iid, shards[:PER_CLIENT] (label-sorted, FedAvg paper), dirichlet:ALPHA, quantity:ALPHA
    partition_seed: int | None = None  # seed of the partition (None: the training seed)
    client_data: tuple[str, ...] = ()  # each client's own data folder instead of a partition (DIR,DIR,...)
    fraction: float = 1.0  # C: share of the clients sampled each round
    # rounds and local work
    rounds: int = 3  # rounds of train, aggregate, evaluate
    local_epochs: float = 1.0  # E: passes over its own images per round
    local_steps: int = 0  # K: local optimiser steps per round instead of epochs (model exchange every K iterations)
    eval_every: int = 0  # clients test their local model every this many steps (0: off); per-iteration curves
    # aggregation
    strategy: str = "fedavg"  # how the server combines the clients' weights (robust ones resist poisoned updates)
    proximal_mu: float = 0.01  # fedprox: weight of the proximal term mu/2 |w - w_global|^2 in the local loss
    server_lr: float | None = None  # fedavgm, fedadam, fedyogi: the server's learning rate (None: Flower's own)
    server_momentum: float = 0.9  # fedavgm: the server's momentum
    trim: float = 0.2  # fedtrimmedavg: share of the largest and of the smallest values cut per coordinate
    byzantine: int = 1  # krum, multikrum, bulyan: malicious clients the rule is built to withstand
    # simulated faults
    dropout: float = 0.0  # share of the sampled clients that fail mid-round, each round
    malicious: int = 0  # clients that send a poisoned update every round (the first ones by id)
    attack: str = "scale"  # scale: the update times attack_scale; noise: Gaussian noise of the update's size
    attack_scale: float = 10.0  # scale attack: the factor
    # privacy
    secure_aggregation: bool = False  # SecAgg+: the server learns only the sum of the clients' weights (fedavg)
    secagg_shares: float = 1.0  # SecAgg+: share of the sampled clients that hold shares of each client's keys
    secagg_threshold: float = 0.5  # SecAgg+: share of those shares needed to remove a mask (dropout tolerance)
    secagg_clip: float = 8.0  # SecAgg+: weights are clipped to +-this before quantisation
    dp_noise: float = 0.0  # differential privacy: Gaussian noise multiplier z (0: off); noise std = z C / clients
    dp_clip: float = 1.0  # differential privacy: C, the L2 norm each client's update is clipped to
    dp_clipping: str = "server"  # server: the server clips each update; client: each client clips its own
    dp_delta: float = 1e-5  # differential privacy: the delta at which epsilon is reported
    # execution
    round_timeout: float = 0.0  # seconds a round waits for replies (0: Flower's default)
    client_threads: int = 1  # torch threads per client (a simulation runs cores / client_threads clients at once)

    def __post_init__(self) -> None:
        from digitlab.federated.partition import parse_partition

        if self.strategy not in STRATEGIES:
            raise ConfigError(f"strategy must be one of {', '.join(STRATEGIES)}, got {self.strategy!r}")
        if self.dp_clipping not in DP_CLIPPING:
            raise ConfigError(f"dp_clipping must be one of {', '.join(DP_CLIPPING)}, got {self.dp_clipping!r}")
        if self.attack not in ATTACKS:
            raise ConfigError(f"attack must be one of {', '.join(ATTACKS)}, got {self.attack!r}")
        for name in ("clients", "rounds", "client_threads"):
            if getattr(self, name) < 1:
                raise ConfigError(f"{name} must be >= 1, got {getattr(self, name)}")
        if self.client_data and len(self.client_data) != self.clients:
            raise ConfigError(f"client_data names {len(self.client_data)} folders for {self.clients} clients")
        if not 0 < self.fraction <= 1:
            raise ConfigError(f"fraction must be in (0, 1], got {self.fraction}")
        if not 0 <= self.dropout < 1:
            raise ConfigError(f"dropout must be in [0, 1), got {self.dropout}")
        if not 0 <= self.malicious < self.clients:
            raise ConfigError(f"malicious must be in 0 .. clients-1, got {self.malicious}")
        if self.local_epochs <= 0 and not self.local_steps:
            raise ConfigError(f"local_epochs must be > 0 (or give local_steps), got {self.local_epochs}")
        for name in ("local_steps", "eval_every", "round_timeout", "proximal_mu"):
            if getattr(self, name) < 0:
                raise ConfigError(f"{name} must be >= 0, got {getattr(self, name)}")
        if not 0 <= self.trim < 0.5:
            raise ConfigError(f"trim must be in [0, 0.5), got {self.trim}")
        parse_partition(self.partition)
        self._check_privacy()

    def _check_privacy(self) -> None:
        if self.dp_noise < 0 or self.dp_clip <= 0 or not 0 < self.dp_delta < 1:
            raise ConfigError(f"need dp_noise >= 0, dp_clip > 0 and 0 < dp_delta < 1, got {self.dp_noise}, "
                              f"{self.dp_clip}, {self.dp_delta}")
        if self.dp_noise and self.strategy not in ("fedavg", "fedprox"):
            raise ConfigError(f"differential privacy (dp_noise) works with fedavg or fedprox, whose plain average "
                              f"the privacy accountant covers; got strategy {self.strategy!r}")
        if not self.secure_aggregation:
            return
        if self.strategy != "fedavg":
            raise ConfigError(f"secure aggregation gives the server only the sum of the updates, so it works with "
                              f"fedavg only (robust strategies must see each update); got {self.strategy!r}")
        if self.dp_noise:
            raise ConfigError("secure aggregation together with differential privacy is not supported yet: "
                              "choose one")
        if self.sampled < 2:
            raise ConfigError("secure aggregation needs at least 2 clients in each round")
        if not 0 < self.secagg_shares <= 1 or not 0 < self.secagg_threshold <= 1 or self.secagg_clip <= 0:
            raise ConfigError("need 0 < secagg_shares <= 1, 0 < secagg_threshold <= 1 and secagg_clip > 0")

    @property
    def sampled(self) -> int:
        """Clients sampled each round: C x clients, at least 1."""
        return max(1, round(self.fraction * self.clients))

    @classmethod
    def from_dict(cls, values: dict[str, Any]) -> FedConfig:
        return config_from_dict(cls, values, "federation config")

    def replace(self, **changes: Any) -> FedConfig:
        return FedConfig.from_dict({**self.to_dict(), **changes})

    def to_dict(self) -> dict[str, Any]:
        d = dataclasses.asdict(self)
        d["client_data"] = list(self.client_data)
        return d

    def describe(self) -> str:
        return "\n".join(f"  {k:<16} {v}" for k, v in self.to_dict().items())


def pack(train: Any, fed: FedConfig) -> str:
    """Both configs as the one JSON string the apps read from Flower's run config."""
    return json.dumps({"train": train.to_dict(), "federation": fed.to_dict()})


def unpack(text: str):
    from digitlab.train.config import TrainConfig

    values = json.loads(text)
    return TrainConfig.from_dict(values["train"]), FedConfig.from_dict(values["federation"])
