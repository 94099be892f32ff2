"""Splitting one training set among federated clients: IID, pathological non-IID (label-sorted shards, as
in the FedAvg paper), Dirichlet label skew and quantity skew; a per-client table and picture of sizes and
label histograms. Plain NumPy: no flwr, no torch."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from digitlab.errors import ConfigError

KINDS = ("iid", "shards", "dirichlet", "quantity")
MIN_SIZE_TRIES = 100  # Dirichlet draws tried before a client is accepted with fewer than min_size images


@dataclass(frozen=True)
class Partition:
    """How the training set is split: `kind` and its parameter (shards: shards per client, 2 in the FedAvg
    paper; dirichlet: the concentration alpha of each class's spread over clients, smaller = more skewed;
    quantity: alpha of the clients' size shares, labels IID)."""

    kind: str = "iid"
    param: float | None = None

    def __post_init__(self) -> None:
        if self.kind not in KINDS:
            raise ConfigError(f"partition must be one of {', '.join(KINDS)}, got {self.kind!r}")
        if self.kind == "iid" and self.param is not None:
            raise ConfigError("the iid partition takes no parameter")
        if self.param is not None and not self.param > 0:
            raise ConfigError(f"partition {self.kind}: the parameter must be > 0, got {self.param}")
        if self.kind == "shards" and self.param is not None and self.param != int(self.param):
            raise ConfigError(f"partition shards: shards per client must be a whole number, got {self.param}")

    @property
    def value(self) -> float:
        return self.param if self.param is not None else {"iid": 0, "shards": 2, "dirichlet": 0.5,
                                                           "quantity": 1.0}[self.kind]

    def __str__(self) -> str:
        return self.kind if self.kind == "iid" else f"{self.kind}:{self.value:g}"


def parse_partition(text: str) -> Partition:
    """'iid', 'shards' / 'shards:2', 'dirichlet:0.5', 'quantity:1' -> Partition."""
    kind, _, param = text.strip().partition(":")
    try:
        value = float(param) if param else None
    except ValueError:
        raise ConfigError(f"partition {text!r}: the part after ':' must be a number, e.g. dirichlet:0.5") from None
    return Partition(kind, value)


def partition_indices(labels: Sequence[int] | np.ndarray, clients: int, how: Partition | str = "iid",
                      seed: int = 0, min_size: int = 1) -> list[np.ndarray]:
    """Split indices 0..N-1 among `clients`; every index goes to exactly one client, each client gets at
    least `min_size` (Dirichlet and quantity draws are repeated until they do). Deterministic in `seed`."""
    how = parse_partition(how) if isinstance(how, str) else how
    y = np.asarray(labels)
    n = len(y)
    if clients < 1:
        raise ConfigError(f"clients must be >= 1, got {clients}")
    if n < clients * min_size:
        raise ConfigError(f"{n} images cannot give {clients} clients {min_size} or more each")
    rng = np.random.default_rng(seed)
    if how.kind == "iid":
        parts = np.array_split(rng.permutation(n), clients)
    elif how.kind == "shards":
        parts = _shards(y, clients, int(how.value), rng)
    elif how.kind == "dirichlet":
        parts = _redraw(lambda: _dirichlet_labels(y, clients, how.value, rng), min_size, how)
    else:
        parts = _redraw(lambda: _quantity(n, clients, how.value, rng), min_size, how)
    return [np.sort(p).astype(np.int64) for p in parts]


def _shards(y: np.ndarray, clients: int, per_client: int, rng: np.random.Generator) -> list[np.ndarray]:
    """Sort by label, cut into clients x per_client equal shards, give each client per_client random shards
    (FedAvg paper: 60,000 images, 200 shards of 300, 2 per client, most clients see two digits)."""
    count = clients * per_client
    if count > len(y):
        raise ConfigError(f"{count} shards of {len(y)} images: fewer shards per client, or fewer clients")
    order = np.lexsort((rng.random(len(y)), y))  # by label, ties in random order
    shards = np.array_split(order, count)
    owner = rng.permutation(count).reshape(clients, per_client)
    return [np.concatenate([shards[s] for s in row]) for row in owner]


def _dirichlet_labels(y: np.ndarray, clients: int, alpha: float, rng: np.random.Generator) -> list[np.ndarray]:
    """Each class spread over the clients in Dirichlet(alpha) shares (Hsu et al. 2019)."""
    parts: list[list[np.ndarray]] = [[] for _ in range(clients)]
    for c in np.unique(y):
        idx = rng.permutation(np.flatnonzero(y == c))
        cuts = (np.cumsum(rng.dirichlet(np.full(clients, alpha)))[:-1] * len(idx)).astype(int)
        for k, piece in enumerate(np.split(idx, cuts)):
            parts[k].append(piece)
    return [np.concatenate(p) for p in parts]


def _quantity(n: int, clients: int, alpha: float, rng: np.random.Generator) -> list[np.ndarray]:
    """Client sizes in Dirichlet(alpha) shares, labels IID within each."""
    cuts = (np.cumsum(rng.dirichlet(np.full(clients, alpha)))[:-1] * n).astype(int)
    return np.split(rng.permutation(n), cuts)


def _redraw(draw, min_size: int, how: Partition) -> list[np.ndarray]:
    for _ in range(MIN_SIZE_TRIES):
        parts = draw()
        if min(map(len, parts)) >= min_size:
            return parts
    raise ConfigError(f"partition {how}: no draw in {MIN_SIZE_TRIES} gave every client {min_size}+ images; "
                      f"raise the parameter (less skew) or use fewer clients")


def label_counts(labels: Sequence[int] | np.ndarray, parts: Sequence[np.ndarray], num_classes: int) -> np.ndarray:
    """(clients, classes) image counts."""
    y = np.asarray(labels)
    return np.stack([np.bincount(y[p], minlength=num_classes) for p in parts]) if len(parts) else \
        np.zeros((0, num_classes), dtype=np.int64)


def partition_rows(counts: np.ndarray, classes: Sequence[str]) -> list[tuple[str, ...]]:
    """A table: client, images, classes present, the largest class's share, then the count of each class."""
    rows = [("client", "images", "classes", "top share", *classes)]
    for k, row in enumerate(counts):
        total = int(row.sum())
        top = f"{row.max() / total:.0%}" if total else "-"
        rows.append((str(k), str(total), str(int((row > 0).sum())), top, *map(str, row.tolist())))
    return rows


def plot_partition(counts: np.ndarray, classes: Sequence[str], path: str | Path, title: str = "") -> Path:
    """Client sizes as stacked bars of their label histograms (one colour per class); beyond 30 clients a
    clients x classes heat map, which stays readable at 100."""
    from matplotlib.figure import Figure

    clients = len(counts)
    if clients <= 30:
        fig = Figure(figsize=(max(6.0, 0.35 * clients + 2), 4), layout="constrained")
        ax = fig.subplots()
        bottom = np.zeros(clients)
        cmap = _colours(len(classes))
        for c, name in enumerate(classes):
            ax.bar(range(clients), counts[:, c], bottom=bottom, color=cmap[c], label=name, width=0.8)
            bottom += counts[:, c]
        ax.set_xlabel("client")
        ax.set_ylabel("images")
        ax.set_xticks(range(clients))
        ax.legend(title="class", ncols=1 if len(classes) <= 10 else 2, fontsize=7, loc="upper left",
                  bbox_to_anchor=(1.0, 1.0))
    else:
        fig = Figure(figsize=(10, 0.4 * len(classes) + 2), layout="constrained")
        ax = fig.subplots()
        im = ax.imshow(counts.T, aspect="auto", cmap="viridis", interpolation="nearest")
        fig.colorbar(im, ax=ax, label="images")
        ax.set_yticks(range(len(classes)), classes)
        ax.set_xlabel("client")
        ax.set_ylabel("class")
    ax.set_title(title or f"{clients} clients: sizes and label histograms")
    fig.savefig(path, dpi=110)
    return Path(path)


def _colours(n: int) -> list:
    from matplotlib import colormaps

    cmap = colormaps["tab10" if n <= 10 else "tab20"]
    return [cmap(i % cmap.N) for i in range(n)]
