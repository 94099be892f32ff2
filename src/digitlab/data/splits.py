"""Deterministic index splits: by ratios (stratified by default) and stratified k-fold."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch

from digitlab.errors import ConfigError


def ratio_split(labels: torch.Tensor, ratios: Sequence[float], seed: int,
                stratify: bool = True) -> tuple[torch.Tensor, ...]:
    """Split indices by ``ratios`` (e.g. (4, 1) or (70, 20, 10)); one int64 tensor per part, shuffled.

    The parts are disjoint and cover every index. Stratified, each class is cut on its own, so
    each part holds its share of every class to within one example. A 0 ratio gives an empty part.
    """
    labels = torch.as_tensor(labels).cpu()
    if labels.dim() != 1:
        raise ConfigError(f"ratio_split expects 1-D labels, got shape {tuple(labels.shape)}")
    if len(ratios) < 2 or any(not r >= 0 for r in ratios) or not sum(ratios) > 0:
        raise ConfigError(f"split ratios must be two or more numbers >= 0, not all 0, got {tuple(ratios)}")
    shares = np.asarray(ratios, dtype=np.float64) / float(sum(ratios))
    rng = np.random.default_rng(seed)
    groups = [np.flatnonzero(labels.numpy() == c) for c in np.unique(labels.numpy())] if stratify \
        else [np.arange(len(labels))]
    parts: list[list[np.ndarray]] = [[] for _ in shares]
    for group in groups:
        group = rng.permutation(group)
        bounds = np.concatenate([[0], np.cumsum(_apportion(len(group), shares))])
        for p in range(len(shares)):
            parts[p].append(group[bounds[p] : bounds[p + 1]])
    # Shuffled, not sorted: a prefix (idx[:limit]) must not be one class of a label-ordered set like TibetanMNIST
    return tuple(torch.from_numpy(rng.permutation(np.concatenate(p))).long() for p in parts)


def _apportion(n: int, shares: np.ndarray) -> np.ndarray:
    """Integer counts summing to n, each within 1 of n * share (largest remainder)."""
    ideal = n * shares
    counts = np.floor(ideal).astype(np.int64)
    order = np.argsort(-(ideal - counts), kind="stable")
    counts[order[: n - counts.sum()]] += 1
    return counts


def kfold_split(labels: torch.Tensor, k: int, seed: int) -> list[tuple[torch.Tensor, torch.Tensor]]:
    """Stratified k-fold: k (train_idx, val_idx) pairs; every index is in exactly one val_idx."""
    from sklearn.model_selection import StratifiedKFold

    y = torch.as_tensor(labels).cpu().numpy()
    if k < 2 or k > len(y):
        raise ConfigError(f"k-fold needs 2 <= k <= {len(y)} (the number of examples), got k={k}")
    folds = StratifiedKFold(n_splits=k, shuffle=True, random_state=seed)
    try:
        return [(torch.from_numpy(tr).long(), torch.from_numpy(va).long())
                for tr, va in folds.split(np.zeros(len(y)), y)]
    except ValueError as e:
        raise ConfigError(f"k-fold with k={k}: {e}") from None
