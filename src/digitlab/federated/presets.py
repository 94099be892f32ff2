"""Named federations: the published protocols digitlab reproduces, as training settings plus federation
settings. `digitlab federate --preset NAME`; any option given beside it overrides the preset's."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from digitlab.errors import close_match


@dataclass(frozen=True)
class FedPreset:
    name: str
    description: str
    train: dict[str, Any] = field(default_factory=dict)  # TrainConfig values
    federation: dict[str, Any] = field(default_factory=dict)  # FedConfig values
    published: str = ""


FED_PRESETS = {p.name: p for p in [
    FedPreset(
        "tibetan-exchange",
        "TibetanMNIST, MobileNetV3-small on 2 clients that exchange models every 1000 local iterations: batch 32, "
        "SGD lr 0.01, 5000 iterations in all (5 rounds)",
        train={"dataset": "tibetan-mnist", "model": "mobilenetv3-small", "batch_size": 32, "optimizer": "sgd",
               "lr": 0.01, "momentum": 0.9},
        federation={"clients": 2, "rounds": 5, "local_steps": 1000, "eval_every": 100, "client_threads": 1},
        published="95.94% test",
    ),
    FedPreset(
        "fedavg-mnist-iid",
        "the FedAvg paper's MNIST CNN on 100 IID clients: C = 0.1, E = 5, B = 10, SGD",
        train={"dataset": "mnist", "model": "fedavg-cnn", "batch_size": 10, "optimizer": "sgd", "lr": 0.05,
               "momentum": 0.0},
        federation={"clients": 100, "fraction": 0.1, "local_epochs": 5, "rounds": 50, "partition": "iid"},
        published="99% test after 20 rounds (FedAvg paper, Table 2)",
    ),
    FedPreset(
        "fedavg-mnist-shards",
        "the FedAvg paper's MNIST CNN on 100 pathological non-IID clients (label-sorted, 2 shards each): C = 0.1, "
        "E = 5, B = 10, SGD",
        train={"dataset": "mnist", "model": "fedavg-cnn", "batch_size": 10, "optimizer": "sgd", "lr": 0.05,
               "momentum": 0.0},
        federation={"clients": 100, "fraction": 0.1, "local_epochs": 5, "rounds": 300, "partition": "shards:2"},
        published="99% test after 229 rounds (FedAvg paper, Table 2)",
    ),
]}


def get_fed_preset(name: str) -> FedPreset:
    if name not in FED_PRESETS:
        from digitlab.errors import ConfigError

        raise ConfigError(f"unknown federation preset {name!r}{close_match(name, FED_PRESETS)}")
    return FED_PRESETS[name]
