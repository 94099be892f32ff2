"""The field reader (digitlab.read.fieldreader) and field mode (`read --field`, read(..., field=True))."""

import json

import numpy as np
import pytest

from digitlab.cli import main
from digitlab.data.preprocess import ink_is_dark
from digitlab.read import ReadError, fields, synth
from digitlab.read import fieldreader as fr
from digitlab.read.recognize import field_reader_of, read


@pytest.fixture(scope="module")
def brief_reader(shared_data_dir, tmp_path_factory):
    """A field reader trained for a few seconds: too brief to read well, enough to learn something."""
    out = tmp_path_factory.mktemp("field-reader")
    cfg = fr.FieldReaderConfig(images=768, val_images=64, epochs=2, batch_size=32, threads=1)
    metrics = fr.train_field_reader(cfg, out, shared_data_dir, progress=False, log=lambda s: None)
    return out, metrics


def test_field_images_are_line_height_ink_bright_and_either_polarity_gives_the_same(shared_data_dir):
    sample = fields.make_field(*synth.load_test_digits(shared_data_dir), fields.CELL, np.random.default_rng(0),
                               only={"rules"})
    dark_ink, light_ink = fr.field_image(sample.image), fr.field_image(255 - sample.image)
    assert dark_ink.shape[0] == 32 and dark_ink.dtype == np.uint8
    assert np.median(dark_ink) < 40 and dark_ink.max() == 255  # the paper dark, the ink bright
    assert np.abs(dark_ink.astype(int) - light_ink).mean() < 3
    with pytest.raises(ReadError, match="2-D"):
        fr.field_image(np.zeros((1, 40), np.uint8))


def test_training_fields_are_labelled_as_written(shared_data_dir):
    digits, labels = synth.load_test_digits(shared_data_dir)
    lines = fr.make_fields(digits, labels, 60, 3, fr.FieldReaderConfig())
    written = ["".join(fr.classes_of([str(d) for d in range(10)])[c] for c in target) for _, target in lines]
    assert any(any(c in fr.MARKS for c in w) for w in written)  # separators and marks are classes
    assert all(img.shape[0] == 32 for img, _ in lines)


def test_training_fields_are_written_with_distorted_digits_reproducibly(shared_data_dir):
    digits, labels = synth.load_test_digits(shared_data_dir)
    plain = fr.make_fields(digits, labels, 8, 3, fr.FieldReaderConfig(augment="none"))
    distorted = fr.make_fields(digits, labels, 8, 3, fr.FieldReaderConfig(augment="elastic=30,shear=20"))
    again = fr.make_fields(digits, labels, 8, 3, fr.FieldReaderConfig(augment="elastic=30,shear=20"))
    assert all(np.array_equal(a, b) and ta == tb for (a, ta), (b, tb) in zip(distorted, again))
    assert any(a.shape != b.shape or not np.array_equal(a, b) for (a, _), (b, _) in zip(plain, distorted))
    with pytest.raises(fr.ConfigError, match="augment"):
        fr.FieldReaderConfig(augment="wobble=3")


def test_a_briefly_trained_field_reader_learns_saves_and_reads(brief_reader, shared_data_dir):
    out, metrics = brief_reader
    history = metrics["history"]
    assert history[-1]["loss"] < 0.8 * history[0]["loss"]  # CTC loss falls as it learns
    ckpt = fr.load_field_reader(out)
    assert ckpt.meta["role"] == fr.ROLE and ckpt.classes[10:] == list(fr.MARKS)
    sample = fields.make_field(*synth.load_test_digits(shared_data_dir), fields.CHEQUE, np.random.default_rng(5))
    reading = read(sample.image, field=True, field_reader=out)
    assert reading.raw == reading.raw_text and set(reading.text) <= set("0123456789")
    assert reading.text == "".join(c for c in reading.raw if c.isdigit())
    assert 0.0 <= reading.confidence <= 1.0 and len(reading.lines) <= 1
    for d in reading.digits:  # each digit's box lies in the field
        x, y, w, h = d.box
        assert 0 <= x and x + w <= sample.image.shape[1] and 0 <= y and 0 < h and y + h <= sample.image.shape[0]
    assert reading.to_dict()["raw"] == reading.raw
    from digitlab.read.evaluate import score_item

    scored = score_item("f", sample.text, reading)  # eval-read keeps what was read as written
    assert scored.predicted == reading.text and scored.raw == reading.raw


def test_fields_read_together_read_as_each_alone(brief_reader, shared_data_dir):
    # widths from a 1-digit cell to a 7-digit cheque amount: a batch pads the narrow ones, which must not
    # change what the BiLSTM reads
    digits = synth.load_test_digits(shared_data_dir)
    rng = np.random.default_rng(7)
    images = [fields.make_field(*digits, spec, rng).image for spec in (fields.CELL, fields.CHEQUE) * 6]
    assert max(i.shape[1] / i.shape[0] for i in images) > 2 * min(i.shape[1] / i.shape[0] for i in images)
    ckpt = fr.load_field_reader(brief_reader[0])
    together = fr.read_fields(images, ckpt)
    alone = [fr.read_fields([image], ckpt)[0] for image in images]
    assert [r.raw for r in together] == [r.raw for r in alone]
    # (a batch pads a field by at most two frames, which moves its probabilities a little)
    assert np.allclose([r.confidence for r in together], [r.confidence for r in alone], rtol=0.1, atol=1e-3)


def test_the_field_reader_reads_alike_on_onnxruntime_and_pytorch(brief_reader, shared_data_dir, cache,
                                                                  monkeypatch):
    from digitlab.engine import line_engine, onnx_cache

    digits = synth.load_test_digits(shared_data_dir)
    rng = np.random.default_rng(11)
    images = [fields.make_field(*digits, spec, rng).image for spec in (fields.CELL, fields.CHEQUE) * 5]
    ckpt = fr.load_field_reader(brief_reader[0])
    monkeypatch.setattr("digitlab.engine._LINES", {})
    fast, slow = fr.read_fields(images, ckpt, "onnxruntime"), fr.read_fields(images, ckpt, "torch")
    path = onnx_cache(ckpt.meta)  # exported once, by the weights' hash
    assert path.is_file() and path.is_relative_to(cache) and "-line-" in path.name
    assert line_engine(ckpt, "onnxruntime").backend == "onnxruntime" and line_engine(ckpt, "torch").backend == "torch"
    assert [r.raw for r in fast] == [r.raw for r in slow]
    assert [[(c, box) for c, _, box in r.chars] for r in fast] == [[(c, box) for c, _, box in r.chars] for r in slow]
    assert np.allclose([p for r in fast for _, p, _ in r.chars], [p for r in slow for _, p, _ in r.chars], atol=1e-4)
    assert np.allclose([r.confidence for r in fast], [r.confidence for r in slow], atol=1e-4)

    def no_export(*args, **kwargs):
        raise AssertionError("exported again")

    monkeypatch.setattr("digitlab.export.export_line_onnx", no_export)
    monkeypatch.setattr("digitlab.engine._LINES", {})
    again = fr.read_fields(images[:2], ckpt, "onnxruntime")  # a new engine of the same weights: the cached file
    assert [r.raw for r in again] == [r.raw for r in fast[:2]]


def test_a_field_reader_exports_to_onnx_with_any_width(brief_reader, tmp_path, capsys):
    import onnxruntime as ort
    import torch

    from digitlab.export import onnx_metadata

    out = tmp_path / "field.onnx"
    assert main(["export", str(brief_reader[0]), "--out", str(out)]) == 0
    said = capsys.readouterr().out
    assert "opset 17" in said and "log-probability difference" in said
    assert onnx_metadata(out)["role"] == fr.ROLE
    ckpt = fr.load_field_reader(brief_reader[0])
    session = ort.InferenceSession(str(out), providers=["CPUExecutionProvider"])
    for width in (12, 52, 300):  # widths the export's own check did not use
        x = torch.rand(2, 1, 32, width, generator=torch.Generator().manual_seed(width))
        with torch.inference_mode():
            expected = ckpt.model(x).numpy()
        got = session.run(None, {"lines": x.numpy()})[0]
        assert got.shape == expected.shape == (width // 4, 2, len(ckpt.classes) + 1)
        assert np.abs(got - expected).max() < 1e-3


def test_a_field_reader_of_a_taller_field_image_trains_reads_and_exports(shared_data_dir, tmp_path, cache):
    from digitlab.checkpoint import Checkpoint

    cfg = fr.FieldReaderConfig(images=128, val_images=16, epochs=1, batch_size=32, width=16, hidden=32, height=48,
                               threads=1)
    fr.train_field_reader(cfg, tmp_path / "tall", shared_data_dir, progress=False, log=lambda s: None)
    ckpt = fr.load_field_reader(tmp_path / "tall")
    assert ckpt.meta["line_height"] == 48 and ckpt.meta["model_args"]["height"] == 48
    sample = fields.make_field(*synth.load_test_digits(shared_data_dir), fields.CELL, np.random.default_rng(2))
    assert fr.field_image(sample.image, 48).shape[0] == 48
    fast, slow = (fr.read_fields([sample.image], ckpt, backend)[0] for backend in ("onnxruntime", "torch"))
    assert fast.raw == slow.raw and abs(fast.confidence - slow.confidence) < 1e-4
    for _, _, (x0, y0, x1, y1) in slow.chars:  # boxes in the field's own pixels
        assert 0 <= x0 < x1 <= sample.image.shape[1] and 0 <= y0 < y1 <= sample.image.shape[0]
    with pytest.raises(ReadError, match="pixels high"):
        fr.load_field_reader(Checkpoint(ckpt.model, {**ckpt.meta, "line_height": 50}))
    with pytest.raises(fr.ConfigError, match="height"):
        fr.FieldReaderConfig(height=50)


def test_the_confidence_is_of_the_digits_whatever_the_marks_between_them():
    import torch

    from digitlab.read.linereader import decode, sequence_logp

    classes = fr.classes_of([str(d) for d in range(10)])
    p = torch.full((5, len(classes) + 1), 1e-9)
    p[0, 1] = 1.0  # "1"
    p[1, classes.index(".")] = p[1, classes.index(",")] = 0.5  # a separator: "." or ","
    p[2, 0] = 1.0  # "0"
    p[3:, -1] = 1.0  # blank
    logp = (p / p.sum(1, keepdim=True)).log()
    assert decode(logp, classes).text in ("1.0", "1,0")
    assert fr.digits_probability(logp, [1, 0]) == pytest.approx(1.0, abs=1e-6)
    assert np.exp(sequence_logp(logp, [[1, classes.index("."), 0]])[0]) == pytest.approx(0.5, abs=1e-6)
    assert fr.digits_probability(logp, [1, 1]) < 1e-6


def test_a_field_reader_trains_further_from_another(brief_reader, shared_data_dir, tmp_path):
    out, metrics = brief_reader
    cfg = fr.FieldReaderConfig(images=256, val_images=32, epochs=1, batch_size=32, threads=1, seed=5, width=16,
                               init=str(out))
    further = fr.train_field_reader(cfg, tmp_path / "further", shared_data_dir, progress=False, log=lambda s: None)
    assert further["init_weights_sha256"] == fr.load_field_reader(out).meta["weights_sha256"]
    start_width = fr.load_field_reader(out).meta["model_args"]["width"]
    assert start_width != 16
    assert fr.load_field_reader(tmp_path / "further").meta["model_args"]["width"] == start_width  # not 16
    assert further["history"][0]["loss"] < metrics["history"][0]["loss"]  # it starts from what was learnt


def test_read_field_on_the_command_line(brief_reader, tmp_path, capsys):
    import cv2

    out, _ = brief_reader
    image = tmp_path / "cell.png"
    cv2.imwrite(str(image), fields.make_field(np.zeros((1, 28, 28), np.uint8) + 0, np.zeros(1, int), fields.CELL,
                                              np.random.default_rng(1)).image)
    assert main(["read", str(image), "--field", "--field-reader", str(out), "--json"]) == 0
    printed = json.loads(capsys.readouterr().out)
    assert printed[0]["source"] == str(image) and "raw" in printed[0]


def test_field_mode_without_a_field_reader_or_with_another_checkpoint_fails_in_one_line(digits_run, capsys,
                                                                                         tmp_path):
    image = tmp_path / "x.png"
    import cv2

    cv2.imwrite(str(image), np.full((40, 90), 255, np.uint8))
    assert main(["read", str(image), "--field", "--checkpoint", str(digits_run)]) == 2
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and "no field reader" in err and "train-field-reader" in err
    with pytest.raises(ReadError, match="not a field reader"):
        fr.load_field_reader(digits_run)


def test_eval_read_field_mode_reports_exact_match_after_rejection(brief_reader, shared_data_dir, tmp_path,
                                                                   capsys):
    out, _ = brief_reader
    samples = fields.generate_fields(*synth.load_test_digits(shared_data_dir), fields.CELL, 6, seed=2)
    synth.write_samples(tmp_path / "cells", samples, "cell", 2)
    code = main(["eval-read", str(tmp_path / "cells"), "--field", "--field-reader", str(out),
                 "--out", str(tmp_path / "report")])
    printed = capsys.readouterr().out
    assert code == 0 and "images: 6" in printed and "least confident images rejected" in printed
    report = json.loads((tmp_path / "report" / "report.json").read_text())
    assert report["field"] and set(report["exact_at_rejection"]) == {"0", "0.05", "0.1"}
    assert (tmp_path / "report" / "rejection.png").stat().st_size > 1000


def test_exact_match_after_rejecting_the_least_confident():
    from digitlab.read.evaluate import ItemResult, exact_after_rejecting

    def item(confidence, right):
        return ItemResult("f", "12", "12" if right else "13", confidence, 0.0, 0 if right else 1, 2, 0, 2,
                          None if right else "misread")

    results = [item(0.1, False), item(0.2, False)] + [item(0.9, True)] * 16 + [item(0.95, False)] * 2
    assert exact_after_rejecting(results, 0.0) == pytest.approx(16 / 20)
    assert exact_after_rejecting(results, 0.10) == pytest.approx(16 / 18)  # the two least confident go


def test_a_digits_box_holds_its_ink_not_the_ruling_lines_along_and_across_the_field():
    image = np.zeros((32, 120), np.uint8)
    image[5, :] = 200  # a ruling line along the whole field
    image[:, 100:103] = 255  # and one across it
    image[10:26, 40:52] = 255  # a digit's ink
    assert fr.ink_box(fr.without_lines(image), 30, 110) == (40, 10, 52, 26)
    image[17:19, 40:52] = 0  # a gap inside the digit (a 0's hole) does not split it
    image[8:30, 60:63] = 255  # a tall 1 in the next window stays ink
    ink = fr.without_lines(image)
    assert fr.ink_box(ink, 30, 56) == (40, 10, 52, 26)
    assert fr.ink_box(ink, 56, 80) == (60, 8, 63, 30)
    assert fr.number_columns(ink) == (40, 63)  # the number's columns, the lines aside
    blank = fr.without_lines(np.zeros((32, 50), np.uint8))
    assert fr.ink_box(blank, 5, 20) == (5, 0, 20, 32) and fr.number_columns(blank) == (0, 50)  # no ink


def test_a_printed_pattern_that_turns_the_polarity_round_is_read_the_right_way(shared_data_dir):
    """Dark ink on a cheque whose dense printed lines pass for the paper: the polarity detector says light
    ink, so the field is read both ways, and the bundled reader is surer of (and right in) the right way.
    A field of light ink on dark paper (an ordinary one's negative) still reads as the ordinary one."""
    reader = field_reader_of(None)
    drawn = fields.generate_fields(*synth.load_test_digits(shared_data_dir), fields.CHEQUE, 43, 21)
    sample = drawn[-1]
    assert not ink_is_dark(sample.image)  # fooled: a field where the detector goes wrong
    as_judged, right_way = (fr._read([sample.image], [dark], reader, None)[0] for dark in (False, True))
    assert right_way.confidence > 0.5 > as_judged.confidence and as_judged.raw != right_way.raw
    reading = fr.read_fields([sample.image], reader)[0]
    assert (reading.raw, reading.confidence) == (right_way.raw, right_way.confidence)
    assert reading.raw == "573,726,-" and reading.text == sample.text
    ordinary = drawn[0]
    assert ink_is_dark(ordinary.image)
    positive, negative = fr.read_fields([ordinary.image, 255 - ordinary.image], reader)
    assert negative.raw == positive.raw and negative.confidence == pytest.approx(positive.confidence, abs=1e-4)
