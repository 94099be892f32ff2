"""What clients and server do, in plain PyTorch (no flwr here, as in Flower's own quickstart `task.py`):
each client's data, its local round (a call of the one training loop for a fixed number of steps from the
weights it was sent), the simulated faults, and testing the global model."""

from __future__ import annotations

import functools
import hashlib
import json
import math
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from torch import nn

from digitlab.data import DigitDataset, get_spec, load_dataset
from digitlab.errors import ConfigError
from digitlab.federated.config import FedConfig
from digitlab.federated.partition import parse_partition, partition_indices
from digitlab.infer import Evaluation, evaluate
from digitlab.models import create_model, init_weights
from digitlab.train.config import TrainConfig
from digitlab.train.loop import ClassificationLoss, steps_per_epoch, train_steps
from digitlab.train.trainer import one_split_defaults, prepare_data

Weights = dict[str, torch.Tensor]


def federated_defaults(cfg: TrainConfig) -> TrainConfig:
    """The clients share the whole training pool: no validation split (a one-split dataset keeps its test
    share carved out, the rest is the pool)."""
    cfg = one_split_defaults(cfg)
    if cfg.test_split:
        return cfg.replace(split=(1.0, 0.0))
    return cfg.replace(split=(cfg.split[0] + cfg.split[1], 0.0, cfg.split[2]))


@functools.lru_cache(maxsize=4)
def _pool_and_test(train_json: str) -> tuple[DigitDataset, DigitDataset]:
    cfg = TrainConfig.from_dict(json.loads(train_json))
    data = prepare_data(cfg)
    return data.train, data.test


def pool_and_test(cfg: TrainConfig) -> tuple[DigitDataset, DigitDataset]:
    """The training pool the clients split, and the held-out test set the server scores on (cached: a
    simulation's worker process serves many clients)."""
    return _pool_and_test(cfg.to_json())


@functools.lru_cache(maxsize=4)
def _parts(train_json: str, clients: int, partition: str, seed: int) -> list[np.ndarray]:
    pool, _ = _pool_and_test(train_json)
    return partition_indices(pool.labels.numpy(), clients, parse_partition(partition), seed=seed)


def client_parts(cfg: TrainConfig, fed: FedConfig) -> list[np.ndarray]:
    """Each client's indices into the pool."""
    seed = cfg.seed if fed.partition_seed is None else fed.partition_seed
    return _parts(cfg.to_json(), fed.clients, fed.partition, seed)


def client_data(cfg: TrainConfig, fed: FedConfig, client: int, data_dir: str | None = None) -> DigitDataset:
    """Client `client`'s training images: its own folder (`data_dir`, or fed.client_data[client]) holding the
    dataset's train split, else its part of the shared pool."""
    folder = data_dir or (fed.client_data[client] if fed.client_data else None)
    if folder:
        return load_dataset(cfg.dataset, cfg.train_split, data_dir=folder)
    if not 0 <= client < fed.clients:
        raise ConfigError(f"client {client} of {fed.clients}: no such partition")
    pool, _ = pool_and_test(cfg)
    return pool.subset(torch.from_numpy(client_parts(cfg, fed)[client]))


def build_model(cfg: TrainConfig) -> nn.Module:
    """The model of cfg, initialised from cfg.seed (the server's initial global model)."""
    torch.manual_seed(cfg.seed)
    model = create_model(cfg.model, in_channels=1, num_classes=len(get_spec(cfg.dataset).classes), **cfg.model_args)
    if cfg.init != "default":
        init_weights(model, cfg.init)
    return model


def float_keys(weights: Weights) -> list[str]:
    """The names of the floating-point tensors, in order: what secure aggregation sums (integer buffers such
    as BatchNorm's batch counters stay with each side's own model)."""
    return [name for name, w in weights.items() if w.is_floating_point()]


def round_seed(seed: int, server_round: int, client: int) -> int:
    """A seed of its own for each client and round (batch order, augmentation, dropout, faults)."""
    digest = hashlib.sha256(f"{seed}/{server_round}/{client}".encode()).digest()
    return int.from_bytes(digest[:4], "little")


def local_steps(fed: FedConfig, images: int, batch_size: int) -> int:
    """K steps, or E passes over the client's images in batches of B."""
    return fed.local_steps or max(1, math.ceil(fed.local_epochs * images / batch_size))


@dataclass(frozen=True)
class ProximalLoss:
    """FedProx: the classification loss plus mu/2 |w - w_global|^2, which keeps a client near the model it
    was sent (Li et al. 2020). Flower sends only mu; the term lives on the client, here."""

    base: ClassificationLoss
    mu: float
    anchor: tuple[torch.Tensor, ...]  # the global parameters, in model.parameters() order

    @property
    def chance(self) -> float:
        return self.base.chance

    def __call__(self, model: nn.Module, batch):
        loss, n, correct = self.base(model, batch)
        prox = sum(((p - a) ** 2).sum() for p, a in zip(model.parameters(), self.anchor))
        return loss + 0.5 * self.mu * prox, n, correct


def local_round(model: nn.Module, weights: Weights, data: DigitDataset, cfg: TrainConfig, fed: FedConfig,
                server_round: int, client: int, test: DigitDataset | None = None,
                proximal_mu: float = 0.0) -> tuple[Weights, dict[str, Any]]:
    """One client's local work in one round: from `weights`, local_steps(...) optimiser steps of the one
    training loop on `data`. With fed.eval_every and a `test` set, the local model's test accuracy as
    received (step 0) and every that many steps goes into metrics["curve"] as (step, accuracy) pairs.
    Returns the new weights and {"steps", "train_loss", "train_accuracy", "diverged", "examples"[, "curve"]}."""
    spec = get_spec(cfg.dataset)
    steps = local_steps(fed, len(data), cfg.batch_size)
    local = cfg.replace(seed=round_seed(cfg.seed, server_round, client), check_every=fed.eval_every)
    model.load_state_dict(weights)
    loss = ClassificationLoss(len(spec.classes), cfg.label_smoothing)
    if proximal_mu > 0:
        loss = ProximalLoss(loss, proximal_mu, tuple(p.detach().clone() for p in model.parameters()))
    curve: list[tuple[int, float]] = []
    check = None
    if fed.eval_every and test is not None:
        batches_per_pass = steps_per_epoch(len(data), cfg.batch_size)
        curve.append((0, evaluate(model, test, spec.normalization, len(spec.classes)).accuracy))  # as received

        def check(epochs_done: float, seconds: float) -> None:
            step = round(epochs_done * batches_per_pass)
            if not curve or curve[-1][0] != step:
                curve.append((step, evaluate(model, test, spec.normalization, len(spec.classes)).accuracy))
            model.train()
            return None

    new, metrics = train_steps(model, data.images, data.labels, local, steps, norm=spec.normalization,
                               num_classes=len(spec.classes), loss=loss, check=check)
    metrics["examples"] = len(data)
    if curve:
        metrics["curve"] = curve
    return new, metrics


def poison(sent: Weights, trained: Weights, fed: FedConfig, seed: int) -> Weights:
    """A malicious client's reply: its update scaled by attack_scale, or replaced by Gaussian noise of the
    update's own size per tensor (integer buffers, such as BatchNorm's counters, are left alone)."""
    gen = torch.Generator().manual_seed(seed)
    out = {}
    for name, w in trained.items():
        if not w.is_floating_point():
            out[name] = w
            continue
        update = w - sent[name]
        if fed.attack == "scale":
            out[name] = sent[name] + fed.attack_scale * update
        else:
            noise = torch.randn(w.shape, generator=gen, dtype=w.dtype)
            out[name] = sent[name] + noise * (update.norm() / math.sqrt(max(1, w.numel()))) * fed.attack_scale
    return out


def drops_out(fed: FedConfig, server_round: int, client: int, seed: int) -> bool:
    """Whether this client fails in this round (a seeded coin per client and round, dropout share)."""
    if not fed.dropout:
        return False
    return np.random.default_rng(round_seed(seed + 7919, server_round, client)).random() < fed.dropout


def test_weights(cfg: TrainConfig, weights: Weights, test: DigitDataset, model: nn.Module | None = None) -> Evaluation:
    """The global model of these weights on the test set."""
    spec = get_spec(cfg.dataset)
    model = model if model is not None else build_model(cfg)
    model.load_state_dict(weights)
    return evaluate(model, test, spec.normalization, len(spec.classes), cfg.eval_batch_size)
