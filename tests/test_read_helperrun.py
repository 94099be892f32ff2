"""What the reader's helpers share around training (digitlab.read.helperrun): the data drawn once and
reloaded on resume, and an init checkpoint of another script refused before anything is drawn."""

import numpy as np
import pytest

from digitlab.checkpoint import Checkpoint
from digitlab.errors import ConfigError
from digitlab.read.config import FieldReaderConfig
from digitlab.read.helperrun import drawn_data, open_helper_run


def test_the_data_are_drawn_once_and_a_resumed_run_reloads_them(shared_data_dir, tmp_path):
    cfg, out, start = open_helper_run(FieldReaderConfig(images=3, threads=1), tmp_path / "run", False,
                                      FieldReaderConfig)
    assert start is None and out == tmp_path / "run"
    calls = []

    def draw(digits, labels, dataset):
        calls.append(dataset)
        return {"first": digits[:2].copy(), "labels": labels[:2].copy()}

    arrays, dataset = drawn_data(cfg, out, shared_data_dir, False, "data.npz", draw, "things", lambda s: None)
    assert dataset == "mnist" and calls == ["mnist"] and (out / "config.json").is_file()
    again, _ = drawn_data(cfg, out, shared_data_dir, True, "data.npz", draw, "things", lambda s: None)
    assert calls == ["mnist"]  # not drawn again
    assert np.array_equal(again["first"], arrays["first"]) and np.array_equal(again["labels"], arrays["labels"])
    with pytest.raises(ConfigError, match="already holds a run"):
        open_helper_run(cfg, out, False, FieldReaderConfig)


def test_an_init_of_another_script_is_refused_before_drawing(shared_data_dir, tmp_path):
    cfg = FieldReaderConfig(images=3, threads=1, init="kannada-reader")
    start = Checkpoint(model=None, meta={"dataset": "kannada-mnist"})

    def draw(digits, labels, dataset):
        raise AssertionError("drew fields for a reader that cannot use them")

    with pytest.raises(ConfigError, match="reads kannada-mnist, but this run draws from mnist"):
        drawn_data(cfg, tmp_path, shared_data_dir, False, "data.npz", draw, "fields", lambda s: None, start)
