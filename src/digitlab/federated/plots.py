"""A federation's pictures: the global model per round, and each client's local model during its rounds."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path


def plot_rounds(rows: Sequence[dict], path: str | Path, title: str = "") -> Path:
    """Test accuracy and loss of the global model against round (round 0: the initial model), with the
    clients' mean train metrics beside them."""
    from matplotlib.figure import Figure
    from matplotlib.ticker import MaxNLocator

    fig = Figure(figsize=(10, 4), layout="constrained")
    rounds = [r["round"] for r in rows]
    for ax, metric in zip(fig.subplots(1, 2), ("accuracy", "loss")):
        ax.plot(rounds, [r[f"test_{metric}"] for r in rows], "-o", ms=3, label="global model, test")
        train = [(r["round"], r[f"train_{metric}"]) for r in rows if r.get(f"train_{metric}") is not None]
        if train:
            ax.plot(*zip(*train), "-s", ms=3, alpha=0.7, label="clients, train (mean)")
        ax.set_xlabel("round")
        ax.set_ylabel(metric)
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        ax.grid(alpha=0.3)
        ax.legend()
    if title:
        fig.suptitle(title)
    fig.savefig(path, dpi=110)
    return Path(path)


def plot_client_curves(rows: Sequence[dict], path: str | Path, title: str = "") -> Path:
    """Each client's local test accuracy against its cumulative local iteration: with models exchanged every
    K iterations, the curves rise in turn as each client takes up what the others learned."""
    from matplotlib.figure import Figure

    fig = Figure(figsize=(8, 4.5), layout="constrained")
    ax = fig.subplots()
    clients = sorted({r["client"] for r in rows})
    for client in clients:
        mine = sorted((r for r in rows if r["client"] == client), key=lambda r: (r["round"], r["step"]))
        offsets, total, last_round = {}, 0, None
        points = []
        for r in mine:
            if r["round"] != last_round:
                offsets[r["round"]] = total
                last_round = r["round"]
            points.append((offsets[r["round"]] + r["step"], r["test_accuracy"]))
            total = max(total, offsets[r["round"]] + r["step"])
        ax.plot(*zip(*points), "-", lw=1.2, label=f"client {client}")
    ax.set_xlabel("local iteration")
    ax.set_ylabel("test accuracy")
    ax.grid(alpha=0.3)
    ax.legend()
    if title:
        ax.set_title(title, fontsize=10)
    fig.savefig(path, dpi=110)
    return Path(path)
