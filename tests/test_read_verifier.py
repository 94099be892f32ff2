"""digitlab.read.verifier: owner maps, crop labels, and a verifier trained briefly on real MNIST digits."""

import dataclasses

import numpy as np
import pytest
import torch
from read_helpers import read_model, string_image, sure_digits, test_digits  # noqa: F401 - fixtures

from digitlab.checkpoint import Checkpoint
from digitlab.errors import ConfigError
from digitlab.read import ReadError, segment, synth, verifier
from digitlab.read.config import ReadConfig
from digitlab.read.image import prepare
from digitlab.read.recognize import read

# Clean strings where every neighbouring pair touches: each image holds merged pairs and single digits
PAIRS = dataclasses.replace(synth.EASY, name="pairs", digits=(2, 4), height=(36, 44), touch=1.0)
QUICK = verifier.VerifierConfig(model="lenet5-improved", images=240, val_images=40, epochs=3)


def test_owner_map_marks_each_digit_and_leaves_the_image_as_it_was(test_digits):
    images, labels = test_digits
    plain = synth.generate(images, labels, synth.HARD, 6, seed=5)
    owned = synth.generate(images, labels, synth.HARD, 6, seed=5, owners=True)
    for a, b in zip(plain, owned):
        assert np.array_equal(a.image, b.image) and a.text == b.text and a.owner is None
        assert b.owner.shape == b.image.shape
        n = len(b.text.replace(" ", ""))
        assert set(np.unique(b.owner)) == set(range(n + 1))  # every digit owns some ink
        boxes = [box for line in b.boxes for box in line]
        for k, (x, y, w, h) in enumerate(boxes, 1):
            ys, xs = np.nonzero(b.owner == k)
            inside = (xs >= x - 2) & (xs <= x + w + 2) & (ys >= y - 2) & (ys <= y + h + 2)
            assert inside.mean() > 0.98  # a digit's ink lies in its own box


def test_crops_are_labelled_by_the_ink_they_hold(test_digits):
    images, labels = test_digits
    rng = np.random.default_rng(3)
    merged = single = pairs_read = 0
    for _ in range(6):
        sample = synth.make_sample(images, labels, PAIRS, rng, owners=True)
        crops, digit, fit = verifier.candidate_crops(sample, ReadConfig())
        assert crops.shape[1:] == (28, 28) and crops.dtype == np.uint8 and len(crops) == len(digit) == len(fit)
        x, y = verifier.label_crops(sample, ReadConfig(), verifier.VerifierConfig(pairs=False))
        truth = [int(c) for c in "".join(sample.lines)]
        # Every label is a digit of the string or "not a digit"; touching pairs give whole components
        # holding two digits, which must be labelled "not a digit"
        assert set(y.tolist()) <= set(truth) | {10}
        # A verifier that reads pairs labels a merged pair with its two digits, left to right
        _, y = verifier.label_crops(sample, ReadConfig(), dataclasses.replace(verifier.VerifierConfig(), pairs=True))
        neighbours = {10 + 10 * a + b for a, b in zip(truth, truth[1:])}
        assert set(y.tolist()) <= set(truth) | neighbours | {110}
        pairs_read += int(((y >= 10) & (y < 110)).sum())
        merged += int(((fit[:, 0] < 0.7) & (digit >= 0)).sum())
        single += int((y < 10).sum())
    assert merged > 0 and single > 0 and pairs_read > 0


@pytest.fixture(scope="module")
def quick_verifier(shared_data_dir, tmp_path_factory):
    """A verifier trained for half a minute on crops of 240 synthetic strings of MNIST *train* digits."""
    torch.manual_seed(0)
    out = tmp_path_factory.mktemp("verifier")
    metrics = verifier.train_verifier(QUICK, out, shared_data_dir, log=lambda s: None)
    return verifier.load_verifier(out), metrics


@pytest.mark.slow
def test_a_briefly_trained_verifier_tells_merged_pairs_from_single_digits(quick_verifier, test_digits):
    ckpt, metrics = quick_verifier
    # Most crops are not a digit (a constant answer would keep no single digit): both recalls count
    assert metrics["val_recall_single"] > 0.3 and metrics["val_recall_not_a_digit"] > 0.9, metrics
    assert ckpt.meta["role"] == "verifier" and ckpt.classes[-1] == verifier.NOT_A_DIGIT
    # On crops of *test* digits it never saw: whole digits score far above pairs merged into one crop
    images, labels = test_digits
    rng = np.random.default_rng(11)
    singles, merged = [], []
    for _ in range(12):
        sample = synth.make_sample(images, labels, PAIRS, rng, owners=True)
        crops, digit, fit = verifier.candidate_crops(sample, ReadConfig())
        logp = verifier.single_digit_logp(verifier.verifier_logp(ckpt, crops))
        singles += logp[(digit >= 0) & (fit[:, 0] > 0.95) & (fit[:, 1] > 0.95)].tolist()
        merged += logp[(digit >= 0) & (fit[:, 0] < 0.65)].tolist()
    assert len(singles) > 10 and len(merged) > 5
    # Area under the ROC curve: the chance that a whole digit scores above a merged pair
    auc = np.mean([s > m for s in singles for m in merged])
    assert auc > 0.85, auc


def test_only_a_verifier_checkpoint_is_taken_as_one(read_model):
    ckpt, run = read_model
    with pytest.raises(ReadError, match="not a verifier"):
        verifier.load_verifier(run)
    with pytest.raises(ReadError, match="not a verifier"):
        read(np.full((40, 40), 255, np.uint8), ckpt, verifier=ckpt)


def test_verifier_config_rejects_bad_values():
    with pytest.raises(ConfigError, match="touch"):
        verifier.VerifierConfig(touch=0.8, overlap=0.5)
    with pytest.raises(ConfigError, match="unknown"):
        verifier.VerifierConfig.from_dict({"imagez": 3})


def _whole_components(img: np.ndarray) -> np.ndarray:
    """The crops of the candidates that are a whole component: for a touching pair, the merged pair."""
    cfg = ReadConfig()
    page = prepare(img, cfg)
    lay = segment.layout(page, cfg)
    return np.stack([segment.crop(page, lay, lay.pieces_of(c), c.box)
                     for c in segment.candidates(lay, cfg, page.text_height) if c.whole])


def test_the_reader_splits_a_pair_it_merged_when_the_verifier_says_not_a_digit(read_model, test_digits,
                                                                                   monkeypatch):
    from digitlab.read import recognize

    ckpt, _ = read_model
    digits = sure_digits(ckpt, *test_digits)
    merged = []
    for text in ("10", "71", "01", "17", "00", "04", "70", "14", "41", "07"):
        img = string_image(digits, text, gaps=[None])  # the two digits touch
        if len(read(img, ckpt).text) < 2:
            merged.append((text, img))
    assert merged, "no touching pair was read as one digit: nothing to show"

    def whole_pair_is_not_a_digit(checker, crops, batch_size=256):
        """A stand-in verifier: "not a digit" for the merged pair's own crop, a digit for any other."""
        pair = [any(np.array_equal(c, w) for w in checker.meta["pairs"]) for c in crops]
        return np.log(np.where(np.array(pair)[:, None], np.r_[np.full(10, 0.001), 0.99],
                               np.r_[np.full(10, 0.099), 0.01]))

    monkeypatch.setattr(recognize, "verifier_logp", whole_pair_is_not_a_digit)
    read_right = []
    for text, img in merged:
        fake = Checkpoint(model=ckpt.model, meta={**ckpt.meta, "role": "verifier", "pairs": _whole_components(img),
                                                  "classes": [*ckpt.classes, verifier.NOT_A_DIGIT]})
        if read(img, ckpt, verifier=fake).text == text:
            read_right.append(text)
    assert len(read_right) >= max(1, len(merged) // 2), (merged, read_right)


def test_the_verifiers_own_digit_reading_sways_the_class_only_by_its_weight():
    from digitlab.read.recognize import with_verifier_classes

    probs = np.array([[0.0] * 10])
    probs[0, [1, 7]] = 0.5  # the classifier cannot tell a 1 from a 7
    vlogp = np.log(np.r_[np.full(10, 0.01), 0.9])[None, :]
    vlogp[0, 7] = np.log(0.09)  # the verifier, on the segmenter's own crops, has seen this 7
    single = verifier.single_digit_logp(vlogp)
    mixed = with_verifier_classes(probs, vlogp, single, 1.0)
    assert mixed[0].argmax() == 7 and mixed.sum() == pytest.approx(1.0)
    assert mixed[0, 7] == pytest.approx(0.9)  # 0.5 * 0.9 against 0.5 * 0.1 for the 1
    np.testing.assert_allclose(with_verifier_classes(probs, vlogp, single, 0.0), probs, atol=1e-9)
    # "Not a digit" weighs nothing here: it is the verifier's other score (single), not a class
    vlogp[0, 10] = np.log(0.001)
    assert with_verifier_classes(probs, vlogp, verifier.single_digit_logp(vlogp), 1.0)[0, 7] == pytest.approx(0.9)


def test_a_verifier_of_another_dataset_leaves_the_classes_alone(read_model, test_digits, monkeypatch):
    from digitlab.read import recognize

    ckpt, _ = read_model
    img = string_image(sure_digits(ckpt, *test_digits), "305")

    def says_eight(checker, crops, batch_size=256):
        return np.log(np.tile(np.r_[np.full(8, 0.001), 0.99, 0.001, 0.007], (len(crops), 1)))

    monkeypatch.setattr(recognize, "verifier_logp", says_eight)
    classes = [*ckpt.classes, verifier.NOT_A_DIGIT]
    same = Checkpoint(model=ckpt.model, meta={**ckpt.meta, "role": "verifier", "classes": classes})
    other = Checkpoint(model=ckpt.model, meta={**ckpt.meta, "role": "verifier", "classes": classes,
                                               "dataset": "kannada-mnist"})
    with pytest.warns(recognize.ReadWarning, match="verifier learnt kannada-mnist digits, the model mnist"):
        assert read(img, ckpt, verifier=other).text == "305"
    assert read(img, ckpt, ReadConfig(verifier_classes=0.0), verifier=same).text == "305"
    assert read(img, ckpt, ReadConfig(verifier_classes=4.0), verifier=same).text == "888"


def test_a_pair_no_cut_separates_is_read_as_two_digits_when_the_verifier_reads_it(read_model, test_digits,
                                                                                  monkeypatch):
    from digitlab.read import recognize

    ckpt, _ = read_model
    digits = sure_digits(ckpt, *test_digits)
    # No cut at all: the touching pair stays one piece (and, 0.9 heights wide, may be read as a pair)
    cfg = ReadConfig(cut_max_runs=0, force_width=99.0, pair_min_width=0.8, pair_halves=0.0)  # the stand-in alone
    img = string_image(digits, "3" + "41", gaps=[0.6, None])
    assert read(img, ckpt, cfg).text != "341"

    def reads_pairs(checker, crops, batch_size=256):
        """A stand-in 111-class verifier: "41" for the merged pair's own crop, "3" for any other."""
        out = np.full((len(crops), 111), 1e-4)
        for k, c in enumerate(crops):
            pair = any(np.array_equal(c, w) for w in checker.meta["pairs"])
            out[k, 10 + 41 if pair else 3] = 0.99
        return np.log(out / out.sum(1, keepdims=True))

    monkeypatch.setattr(recognize, "verifier_logp", reads_pairs)
    classes = [*ckpt.classes, *(a + b for a in ckpt.classes for b in ckpt.classes), verifier.NOT_A_DIGIT]
    page = prepare(img, cfg)
    lay = segment.layout(page, cfg)
    widest = max((c for c in segment.candidates(lay, cfg, page.text_height) if c.whole), key=lambda c: c.box[2])
    pair = segment.crop(page, lay, lay.pieces_of(widest), widest.box)
    fake = Checkpoint(model=ckpt.model, meta={**ckpt.meta, "role": "verifier", "classes": classes, "pairs": [pair]})
    reading = read(img, ckpt, cfg, verifier=fake)
    assert reading.text == "341"
    three, four, one = reading.lines[0]
    assert four.confidence == one.confidence > 0.9 and four.box[0] < one.box[0]  # the box split in halves
    assert read(img, ckpt, dataclasses.replace(cfg, pair_weight=0.0), verifier=fake).text != "341"


def test_a_verifier_for_another_script_draws_from_that_runs_training_digits(shared_data_dir, tmp_path):
    import json

    from digitlab.data import load_dataset

    run = tmp_path / "kannada"
    run.mkdir()
    (run / "config.json").write_text(json.dumps({"dataset": "kannada-mnist", "train_split": "test", "test_split": ""}))
    np.savez(run / "splits.npz", train=np.array([5, 0, 9]), val=np.array([1]), test=np.array([2]))
    dataset, digits, labels = synth.training_digits(str(run), shared_data_dir)
    test = load_dataset("kannada-mnist", "test", data_dir=shared_data_dir)
    assert dataset == "kannada-mnist"
    np.testing.assert_array_equal(digits, test.images.numpy()[[5, 0, 9]])
    np.testing.assert_array_equal(labels, test.labels.numpy()[[5, 0, 9]])
    assert synth.training_digits("", shared_data_dir)[0] == "mnist"
