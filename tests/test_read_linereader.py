"""digitlab.read.linereader: line images, CTC decoding, the second opinion per line, training and loading."""

import dataclasses
import json
import math

import numpy as np
import pytest
import torch
from read_helpers import read_model, string_image, sure_digits, test_digits  # noqa: F401 - fixtures

from digitlab.checkpoint import Checkpoint
from digitlab.errors import ConfigError
from digitlab.read import ReadError, linereader, segment, synth
from digitlab.read.config import ReadConfig
from digitlab.read.image import prepare
from digitlab.read.recognize import ReadWarning, helper_notes, read


def frames_for(text: str, per: int = 5, blank_gap: int = 2, p: float = 0.98) -> torch.Tensor:
    """(T, 11) log-probabilities that read `text`: each digit over `per` frames, blanks between."""
    rows = []
    for ch in text:
        rows += [int(ch)] * per + [10] * blank_gap
    logp = np.full((len(rows) + 2, 11), (1 - p) / 10)
    logp[0, :], logp[-1, :] = (1 - p) / 10, (1 - p) / 10
    logp[0, 10] = logp[-1, 10] = p
    for t, c in enumerate(rows, 1):
        logp[t, c] = p
    return torch.from_numpy(np.log(logp / logp.sum(1, keepdims=True))).float()


def test_greedy_decoding_finds_each_digit_and_its_frames():
    logp = frames_for("3003")
    labels, frames = linereader.greedy(logp.numpy())
    assert labels == [3, 0, 0, 3]  # a blank between two 0s keeps both
    assert frames[0] == (1, 6) and frames[1] == (8, 13)
    text = linereader.decode(logp, [str(c) for c in range(10)])
    assert text.text == "3003" and text.logp > math.log(0.5)


def test_ctc_scores_the_read_string_above_its_neighbours():
    logp = frames_for("571")
    right, dropped, swapped, too_long = linereader.sequence_logp(logp, [[5, 7, 1], [5, 1], [5, 1, 7], [5] * 40])
    assert right > math.log(0.5) and right > dropped + 10 and right > swapped + 10
    assert too_long == -math.inf


def test_each_line_image_holds_its_own_lines_ink_only(read_model, test_digits):
    ckpt, _ = read_model
    digits = sure_digits(ckpt, *test_digits)
    top, bottom = string_image(digits, "2024"), string_image(digits, "7")
    img = np.full((top.shape[0] * 2 + 20, top.shape[1]), 255, np.uint8)
    img[: top.shape[0]] = top
    img[top.shape[0] + 20:, : bottom.shape[1]] = bottom
    cfg = ReadConfig()
    page = prepare(img, cfg)
    lay = segment.layout(page, cfg)
    assert len(lay.lines) == 2
    wide, narrow = (linereader.line_image(page, lay, k) for k in (0, 1))
    for li in (wide, narrow):
        assert li.image.shape[0] == linereader.LINE_HEIGHT and li.image.max() == 255
        rows = np.flatnonzero(li.image.max(1) > 127)
        assert 14 <= rows[-1] - rows[0] + 1 <= linereader.LINE_HEIGHT - 2  # digits near DIGIT_HEIGHT high
    assert wide.image.shape[1] > 3 * narrow.image.shape[1]  # the 7's line holds nothing of the 2024 above it
    # A frame span maps back to the ink under it, in work coordinates
    x, y, w, h = linereader.frame_box(wide, (0, wide.image.shape[1] // linereader.STRIDE), page, lay, 0)
    assert abs(y - lay.lines[0].top) <= 1 and abs(y + h - lay.lines[0].bottom) <= 1


@pytest.fixture
def stand_in(read_model, monkeypatch):
    """A line reader checkpoint whose every line reads as the string in `says[0]` (read_lines patched)."""
    ckpt, _ = read_model
    says = ["0"]

    def read_lines(reader, images, backend=None):
        return [frames_for(says[0]) for _ in images]

    monkeypatch.setattr(linereader, "read_lines", read_lines)
    fake = Checkpoint(model=ckpt.model, meta={**ckpt.meta, "role": linereader.ROLE, "model": "line-reader",
                                              **linereader.GEOMETRY})
    return fake, says


def test_a_line_reader_of_another_geometry_is_refused(read_model):
    ckpt, _ = read_model
    meta = {**ckpt.meta, "role": linereader.ROLE, "model": "line-reader", **linereader.GEOMETRY}
    assert linereader.load_line_reader(Checkpoint(model=ckpt.model, meta=meta)).meta is meta
    with pytest.raises(ReadError, match=r"line_height 48.*line_height 32"):
        linereader.load_line_reader(Checkpoint(model=ckpt.model, meta={**meta, "line_height": 48}))
    with pytest.raises(ReadError, match="not a line reader"):
        linereader.load_line_reader(ckpt)


def test_the_line_reader_reads_a_pair_that_no_cut_separates(read_model, test_digits, stand_in):
    ckpt, _ = read_model
    fake, says = stand_in
    digits = sure_digits(ckpt, *test_digits)
    cfg = ReadConfig(cut_max_runs=0, force_width=99.0)  # no cuts: the touching pair stays one candidate
    img = string_image(digits, "341", gaps=[0.6, None])
    alone = read(img, ckpt, cfg)
    assert alone.text != "341"
    says[0] = "341"
    reading = read(img, ckpt, cfg, line_reader=fake)
    assert reading.text == "341"
    xs = [d.box[0] for d in reading.digits]
    assert xs == sorted(xs) and all(d.confidence > 0.9 and d.crop.shape == (28, 28) for d in reading.digits)
    # Within the margin the segmenter's reading stands (the margin for a different number of digits)
    assert len(alone.text) != 3
    assert read(img, ckpt, ReadConfig(cut_max_runs=0, force_width=99.0, line_margin_count=1e6),
                line_reader=fake).text == alone.text
    assert read(img, ckpt, ReadConfig(cut_max_runs=0, force_width=99.0, line_margin=1e6),
                line_reader=fake).text == "341"


def test_the_segmenters_reading_stands_when_the_line_reader_agrees_or_is_unsure(read_model, test_digits, stand_in):
    ckpt, _ = read_model
    fake, says = stand_in
    digits = sure_digits(ckpt, *test_digits)
    img = string_image(digits, "3859")
    alone = read(img, ckpt)
    assert alone.text == "3859"
    says[0] = "3859"
    agreed = read(img, ckpt, line_reader=fake)
    assert [d.box for d in agreed.digits] == [d.box for d in alone.digits]  # the segmenter's own digits
    says[0] = "3850"  # one digit off, and the segmenter's string is not unlikely under it: no override
    assert read(img, ckpt, ReadConfig(line_margin=50.0), line_reader=fake).text == "3859"


def test_a_rejected_digit_takes_the_line_readers_reading_when_the_rest_agrees(read_model, test_digits, stand_in):
    ckpt, _ = read_model
    fake, says = stand_in
    digits = sure_digits(ckpt, *test_digits)
    img = string_image(digits, "3859")
    cfg = ReadConfig(reject_below=0.99999)  # everything the classifier reads is rejected ...
    assert set(read(img, ckpt, cfg).text) == {"?"}
    says[0] = "3859"
    # ... and the line reader's peaks are 0.98 / (1 - 0.0002): they pass a lower bar of their own
    strict = read(img, ckpt, ReadConfig(reject_below=0.95), line_reader=fake)
    assert strict.text == "3859"
    says[0] = "385"  # a different length: no filling in, and no override within the margin
    assert "?" in read(img, ckpt, ReadConfig(reject_below=0.99999, line_margin_count=1e6), line_reader=fake).text


def test_a_line_reader_of_another_dataset_is_not_asked(read_model, test_digits, stand_in):
    ckpt, _ = read_model
    fake, says = stand_in
    fake.meta["dataset"] = "kannada-mnist"
    digits = sure_digits(ckpt, *test_digits)
    says[0] = "1111"
    with pytest.warns(ReadWarning, match="line reader learnt kannada-mnist digits, the model mnist: it is not used"):
        assert read(string_image(digits, "3859"), ckpt, line_reader=fake).text == "3859"


def test_helpers_trained_on_other_crops_are_named(read_model):
    ckpt, _ = read_model
    cfg = ReadConfig()
    trained = {**cfg.to_dict(), "text_target": 40, "reject_below": 0.9}  # one crop setting, one scoring one
    helper = Checkpoint(model=ckpt.model, meta={**ckpt.meta, "read_config": trained})
    notes = helper_notes(ckpt, cfg, helper, helper)
    assert notes == [f"the {w} learnt crops made with other reading settings (text_target 40 -> 32): it may read "
                     "worse" for w in ("verifier", "line reader")]
    assert helper_notes(ckpt, dataclasses.replace(cfg, text_target=40, reject_below=0.1), helper, None) == []


def test_a_briefly_trained_line_reader_saves_loads_and_reads(shared_data_dir, tmp_path, read_model, test_digits):
    ckpt, run = read_model
    lcfg = linereader.LineReaderConfig(images=40, val_images=10, epochs=1, width=16, hidden=32, workers=1,
                                       threads=1)
    metrics = linereader.train_line_reader(lcfg, tmp_path / "lr", shared_data_dir, log=lambda s: None)
    assert metrics["train_lines"] >= 40 and 0 <= metrics["val_line_accuracy"] <= 1
    reader = linereader.load_line_reader(tmp_path / "lr")
    assert reader.meta["dataset"] == "mnist" and reader.meta["config"]["width"] == 16
    images = [linereader.LineImage(np.zeros((linereader.LINE_HEIGHT, w), np.uint8), 1.0, 0, 0) for w in (40, 90)]
    a, b = linereader.read_lines(reader, images)
    assert a.shape == (10, 11) and b.shape == (23, 11)  # each line's own frames, padding dropped
    torch.testing.assert_close(b.exp().sum(1), torch.ones(23))
    digits = sure_digits(ckpt, *test_digits)
    assert read(string_image(digits, "42"), ckpt, line_reader=tmp_path / "lr").digits  # the pipeline runs
    with pytest.raises(ReadError, match="not a line reader"):
        linereader.load_line_reader(run)

    # Trained further from those weights: its size comes from the checkpoint, and with a vanishing
    # learning rate the weights stay where they started
    more = dataclasses.replace(lcfg, width=48, lr=1e-12, init=str(tmp_path / "lr"))
    linereader.train_line_reader(more, tmp_path / "more", shared_data_dir, log=lambda s: None)
    again = linereader.load_line_reader(tmp_path / "more")
    assert again.meta["config"]["width"] == 16 and again.meta["config"]["init"] == str(tmp_path / "lr")
    for name, w in again.model.state_dict().items():
        if name.endswith("weight"):
            torch.testing.assert_close(w, reader.model.state_dict()[name])
    meta = json.loads((tmp_path / "lr" / "model.json").read_text())
    (tmp_path / "lr" / "model.json").write_text(json.dumps({**meta, "dataset": "kannada-mnist"}))
    with pytest.raises(ConfigError, match="kannada-mnist"):
        linereader.train_line_reader(more, tmp_path / "other", shared_data_dir, log=lambda s: None)


def test_line_reader_config_rejects_bad_values():
    with pytest.raises(ConfigError, match="epochs"):
        linereader.LineReaderConfig(epochs=0)
    with pytest.raises(ConfigError, match="touch"):
        linereader.LineReaderConfig(touch=0.7, overlap=0.5)
    with pytest.raises(ConfigError, match="unknown"):
        linereader.LineReaderConfig.from_dict({"epoch": "3"})


def test_training_lines_are_labelled_with_the_strings_drawn(test_digits):
    images, labels = test_digits
    sample = synth.make_sample(images, labels, synth.EASY, np.random.default_rng(4))
    lines = linereader.sample_lines(sample, ReadConfig())
    assert [lab for _, lab in lines] == [[int(c) for c in t] for t in sample.lines]


def test_drawing_lines_in_worker_processes_gives_the_same_lines(test_digits):
    images, labels = test_digits
    one = linereader.draw_lines(images, labels, 12, 7, linereader.LineReaderConfig(workers=1))
    two = linereader.draw_lines(images, labels, 12, 7, linereader.LineReaderConfig(workers=2))
    assert len(one) >= 12 and len(one) == len(two)
    assert all(np.array_equal(a, b) and la == lb for (a, la), (b, lb) in zip(one, two))
