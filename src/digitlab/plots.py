"""Training curves and confusion matrices as PNG (matplotlib's object API: no pyplot, no display)."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import torch


def plot_curves(history: Sequence[dict], path: str | Path, title: str = "") -> Path:
    """Loss and accuracy against epoch, train and val, side by side."""
    from matplotlib.figure import Figure  # imported here: matplotlib costs a second of start-up
    from matplotlib.ticker import MaxNLocator

    epochs = [row["epoch"] for row in history]
    fig = Figure(figsize=(10, 4), layout="constrained")
    for ax, metric in zip(fig.subplots(1, 2), ("loss", "accuracy")):
        for part, style in (("train", "-o"), ("val", "-s")):
            values = [row.get(f"{part}_{metric}") for row in history]
            if any(v is not None for v in values):
                ax.plot(epochs, [float("nan") if v is None else v for v in values], style, ms=3, label=part)
        ax.set_xlabel("epoch")
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        ax.set_ylabel(metric)
        ax.grid(alpha=0.3)
        ax.legend()
    if title:
        fig.suptitle(title)
    fig.savefig(path, dpi=110)
    return Path(path)


def plot_confusion(confusion: torch.Tensor, classes: Sequence[str], path: str | Path, title: str = "") -> Path:
    """Confusion matrix with counts in the cells; rows are true classes, columns predictions."""
    from matplotlib.figure import Figure

    cm = confusion.numpy()
    n = len(classes)
    fig = Figure(figsize=(1.0 + 0.55 * n, 0.6 + 0.5 * n), layout="constrained")
    ax = fig.subplots()
    im = ax.imshow(cm, cmap="Blues")
    fig.colorbar(im, ax=ax, shrink=0.8)
    ax.set_xticks(range(n), classes, rotation=45 if max(map(len, classes)) > 2 else 0)
    ax.set_yticks(range(n), classes)
    ax.set_xlabel("predicted")
    ax.set_ylabel("true")
    threshold = cm.max() / 2
    for i in range(n):
        for j in range(n):
            ax.text(j, i, str(cm[i, j]), ha="center", va="center", fontsize=7,
                    color="white" if cm[i, j] > threshold else "black")
    ax.set_title(title)
    fig.savefig(path, dpi=110)
    return Path(path)
