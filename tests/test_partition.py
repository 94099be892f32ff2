"""Splitting a training set among federated clients (pure NumPy, no flwr)."""

import numpy as np
import pytest

from digitlab.errors import ConfigError
from digitlab.federated.partition import (
    Partition,
    label_counts,
    parse_partition,
    partition_indices,
    partition_rows,
    plot_partition,
)

LABELS = np.repeat(np.arange(10), 600)  # 6,000 images, 600 per class, sorted by label


def covers_each_once(parts, n):
    joined = np.concatenate(parts)
    return len(joined) == n and np.array_equal(np.sort(joined), np.arange(n))


@pytest.mark.parametrize("how", ["iid", "shards", "shards:3", "dirichlet:0.3", "dirichlet:100", "quantity:0.5"])
def test_every_image_goes_to_exactly_one_client(how):
    parts = partition_indices(LABELS, 20, how, seed=1)
    assert len(parts) == 20
    assert covers_each_once(parts, len(LABELS))
    assert min(map(len, parts)) >= 1


def test_same_seed_same_partition_other_seed_other():
    a = partition_indices(LABELS, 10, "dirichlet:0.5", seed=3)
    b = partition_indices(LABELS, 10, "dirichlet:0.5", seed=3)
    c = partition_indices(LABELS, 10, "dirichlet:0.5", seed=4)
    assert all(np.array_equal(x, y) for x, y in zip(a, b))
    assert not all(np.array_equal(x, y) for x, y in zip(a, c))


def test_iid_clients_have_equal_sizes_and_every_class():
    counts = label_counts(LABELS, partition_indices(LABELS, 10, "iid", seed=0), 10)
    assert set(counts.sum(1)) == {600}
    assert (counts > 0).all()


def test_shards_give_most_clients_at_most_two_classes():
    # the FedAvg paper: label-sorted, 2 shards per client; a shard straddles at most one class boundary
    parts = partition_indices(LABELS, 100, "shards", seed=0)
    counts = label_counts(LABELS, parts, 10)
    assert set(counts.sum(1)) == {60}
    classes = (counts > 0).sum(1)
    assert classes.max() <= 4 and np.mean(classes <= 2) > 0.8


def test_dirichlet_skew_grows_as_alpha_shrinks():
    def mean_top_share(alpha):
        counts = label_counts(LABELS, partition_indices(LABELS, 10, f"dirichlet:{alpha}", seed=0), 10)
        return float(np.mean(counts.max(1) / counts.sum(1)))

    assert mean_top_share(0.1) > mean_top_share(1.0) > mean_top_share(100.0)
    assert mean_top_share(100.0) < 0.2  # near IID: the largest class holds about a tenth


def test_quantity_skew_varies_sizes_not_labels():
    parts = partition_indices(LABELS, 10, "quantity:0.5", seed=0)
    sizes = np.array([len(p) for p in parts])
    assert sizes.max() > 2 * sizes.min()
    big = parts[int(sizes.argmax())]
    share = np.bincount(LABELS[big], minlength=10) / len(big)
    assert share.max() < 0.2  # labels stay mixed


def test_bad_partitions_fail_with_one_line():
    with pytest.raises(ConfigError, match="must be one of"):
        parse_partition("label-skew")
    with pytest.raises(ConfigError, match="must be a number"):
        parse_partition("dirichlet:lots")
    with pytest.raises(ConfigError, match="> 0"):
        parse_partition("dirichlet:0")
    with pytest.raises(ConfigError, match="no parameter"):
        parse_partition("iid:2")
    with pytest.raises(ConfigError, match="cannot give"):
        partition_indices(LABELS[:5], 10)
    with pytest.raises(ConfigError, match="shards"):
        partition_indices(LABELS[:50], 30, "shards")
    assert str(Partition("shards")) == "shards:2"


def test_table_and_picture(tmp_path):
    parts = partition_indices(LABELS, 4, "dirichlet:0.5", seed=0)
    counts = label_counts(LABELS, parts, 10)
    rows = partition_rows(counts, [str(c) for c in range(10)])
    assert rows[0][:4] == ("client", "images", "classes", "top share")
    assert sum(int(r[1]) for r in rows[1:]) == len(LABELS)
    for k, row in enumerate(rows[1:]):
        assert [int(v) for v in row[4:]] == counts[k].tolist()
    for clients in (4, 40):  # bars, then a heat map
        counts = label_counts(LABELS, partition_indices(LABELS, clients, "iid"), 10)
        path = plot_partition(counts, [str(c) for c in range(10)], tmp_path / f"p{clients}.png")
        assert path.stat().st_size > 5000
