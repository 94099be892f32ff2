"""The eval-read scoring, the labels file, the ReadConfig and the synthetic benchmark generator."""

import numpy as np
import pytest
from read_helpers import test_digits  # noqa: F401 - fixture

from digitlab.errors import ConfigError
from digitlab.read import synth
from digitlab.read.config import ReadConfig
from digitlab.read.errors import ReadError
from digitlab.read.evaluate import classify_failure, edit_distance, read_labels, score_item, summarize


@pytest.mark.parametrize("a, b, d", [("", "", 0), ("123", "123", 0), ("123", "13", 1), ("123", "1243", 1),
                                     ("123", "?23", 1), ("1234", "4321", 4), ("", "55", 2)])
def test_edit_distance(a, b, d):
    assert edit_distance(a, b) == edit_distance(b, a) == d


@pytest.mark.parametrize("truth, predicted, kind", [
    ("12 34", "12 34", None), ("12 34", "1234", "lines"), ("12 34", "112 34", "too_many"),
    ("12 34", "2 34", "too_few"), ("12 34", "1? 34", "rejected"), ("12 34", "17 3?", "misread"),
])
def test_failures_are_sorted_by_stage(truth, predicted, kind):
    assert classify_failure(truth, predicted) == kind


def test_summary_counts_digits_segmentation_and_rejections():
    class R:  # the fields of a Reading that scoring uses
        def __init__(self, text):
            self.text, self.raw, self.confidence, self.seconds = text, text, 0.5, 0.01

    results = [score_item("a", "123", R("123")), score_item("b", "456", R("4?6")),
               score_item("c", "78", R("788")), score_item("d", "90", None, error="unreadable")]
    s = summarize(results)
    assert s["images"] == 4 and s["exact_match"] == 0.25
    assert s["digit_accuracy"] == pytest.approx(1 - (0 + 1 + 1 + 2) / 10)
    assert s["too_many_digits"] == 1 and s["too_few_digits"] == 1
    assert s["rejection_rate"] == pytest.approx(1 / 9)
    assert s["failures"] == {"unreadable": 1, "lines": 0, "too_many": 1, "too_few": 0, "rejected": 1,
                             "misread": 0}


def test_labels_file_header_spaces_and_errors(tmp_path):
    path = tmp_path / "labels.csv"
    path.write_text("filename,string\na.png,0042\nb.jpg, 12  345 \n\n")
    assert read_labels(path) == [("a.png", "0042"), ("b.jpg", "12 345")]
    path.write_text("a.png\n")
    with pytest.raises(ReadError, match="expected 'filename,string'"):
        read_labels(path)
    with pytest.raises(ReadError, match="labels file not found"):
        read_labels(tmp_path / "none.csv")


def test_read_config_checks_names_types_and_ranges():
    assert ReadConfig.from_dict({"reject-below": "0.7", "max_cuts": "2"}) == ReadConfig(reject_below=0.7, max_cuts=2)
    with pytest.raises(ConfigError, match="did you mean 'reject_below'"):
        ReadConfig.from_dict({"reject_bellow": 0.5})
    with pytest.raises(ConfigError, match="expects int"):
        ReadConfig.from_dict({"max_cuts": "2.5"})
    with pytest.raises(ConfigError, match="binarization must be one of otsu, sauvola"):
        ReadConfig(binarization="niblack")
    with pytest.raises(ConfigError, match="reject_below must be in"):
        ReadConfig(reject_below=1.5)


def test_synthetic_benchmark_is_fixed_by_its_seed_and_uses_test_digits(test_digits, tmp_path):
    images, labels = test_digits
    assert len(images) == 10_000  # the MNIST test split: the models never trained on these
    a = synth.generate(images, labels, synth.HARD, 4, seed=7)
    b = synth.generate(images, labels, synth.HARD, 4, seed=7)
    c = synth.generate(images, labels, synth.HARD, 4, seed=8)
    assert all(np.array_equal(x.image, y.image) and x.lines == y.lines for x, y in zip(a, b))
    assert any(not np.array_equal(x.image, y.image) for x, y in zip(a, c))
    for spec in (synth.EASY, synth.HARD):
        for s in synth.generate(images, labels, spec, 30, seed=1):
            assert spec.lines[0] <= len(s.lines) <= spec.lines[1]
            assert all(spec.digits[0] <= len(t) <= spec.digits[1] and t.isdigit() for t in s.lines)
            assert s.image.dtype == np.uint8 and (s.jpeg is not None) == (spec.jpeg is not None)
    labels_csv = synth.write_benchmark(tmp_path, images, labels, synth.EASY, n=3, seed=0)
    rows = read_labels(labels_csv)
    assert len(rows) == 3 and all((tmp_path / name).is_file() for name, _ in rows)


def test_hard_variant_has_its_nuisances(test_digits):
    """The hard images are darker on one side, noisier, and hold touching digits: not a relabelled easy set."""
    images, labels = test_digits
    easy = synth.generate(images, labels, synth.EASY, 40, seed=5)
    hard = synth.generate(images, labels, synth.HARD, 40, seed=5)

    def paper_spread(img):  # how much the paper's brightness varies (gradient, texture, shadow)
        paper = img[img > np.percentile(img, 40)] if img.mean() > 127 else 255 - img[img < np.percentile(img, 60)]
        return np.percentile(paper, 95) - np.percentile(paper, 5)

    assert np.median([paper_spread(s.image) for s in hard]) > 2 * np.median([paper_spread(s.image) for s in easy])
    assert sum(len(s.lines) > 1 for s in hard) > 10 and all(len(s.lines) == 1 for s in easy)


def test_samples_record_each_digit_box_and_their_nuisances(test_digits):
    """Every digit's box (after the camera's skew and perspective) holds that digit's ink, and the
    nuisances listed are the ones drawn: the benchmark breaks its figures down by them."""
    images, labels = test_digits
    hard = synth.generate(images, labels, synth.HARD, 40, seed=5)
    for s in hard:
        assert [len(b) for b in s.boxes] == [len(t) for t in s.lines]
        dark = s.image < 128 if "inverted" not in s.nuisances else s.image > 128
        for line in s.boxes:
            for x, y, w, h in line:
                assert w > 0 and h > 0 and dark[y:y + h, x:x + w].mean() > 0.05  # ink inside
        assert not {"boxes", "ruling"} <= set(s.nuisances)  # a form has boxes or lines, not both
    kinds = {k for s in hard for k in s.nuisances}
    assert {"touching", "ruling", "inverted"} <= kinds
    assert all(s.nuisances == () for s in synth.generate(images, labels, synth.EASY, 10, seed=5))


def test_held_out_digits_are_a_runs_own_test_split(shared_data_dir, tmp_path):
    import json

    from digitlab.data import load_dataset

    run = tmp_path / "run"
    run.mkdir()
    (run / "config.json").write_text(json.dumps({"dataset": "mnist", "train_split": "train", "test_split": "test"}))
    np.savez(run / "splits.npz", train=np.arange(5), val=np.arange(5, 8), test=np.array([3, 1, 4]))
    images, labels = synth.held_out_digits(run, shared_data_dir)
    test = load_dataset("mnist", "test", data_dir=shared_data_dir)
    np.testing.assert_array_equal(images, test.images.numpy()[[3, 1, 4]])
    np.testing.assert_array_equal(labels, test.labels.numpy()[[3, 1, 4]])
    # A 3-way split of one split (TibetanMNIST has no test split): the test part of the train split
    (run / "config.json").write_text(json.dumps({"dataset": "mnist", "train_split": "train", "test_split": ""}))
    images, _ = synth.held_out_digits(run, shared_data_dir)
    train = load_dataset("mnist", "train", data_dir=shared_data_dir)
    np.testing.assert_array_equal(images, train.images.numpy()[[3, 1, 4]])
    (run / "splits.npz").unlink()
    with pytest.raises(ConfigError, match="not a training run with a test split"):
        synth.held_out_digits(run, shared_data_dir)
