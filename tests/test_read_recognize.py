"""digitlab.read.read end to end on real MNIST test digits, with a small model trained for the session."""

import copy
import json

import numpy as np
import pytest
from PIL import Image
from read_helpers import ink_mask, read_model, string_image, sure_digits, test_digits  # noqa: F401 - fixtures

from digitlab.read import ReadConfig, read

pytestmark = pytest.mark.slow  # every test here needs the trained model


@pytest.fixture(scope="module")
def digits(read_model, test_digits):
    return sure_digits(read_model[0], *test_digits)


def test_reads_a_string_with_boxes_in_image_coordinates(read_model, digits):
    ckpt, _ = read_model
    img = string_image(digits, "40719", gaps=[0.4] * 4)
    big = np.asarray(Image.fromarray(img).resize((img.shape[1] * 2, img.shape[0] * 2), Image.BILINEAR))
    reading = read(big, ckpt)
    assert reading.text == "40719" and reading.line_texts == ["40719"]
    assert reading.size == (big.shape[1], big.shape[0])
    truth = ink_mask(big)
    for d in reading.digits:
        x, y, w, h = d.box
        assert 0 <= x and x + w <= big.shape[1] and 0 <= y and y + h <= big.shape[0]
        assert truth[y:y + h, x:x + w].sum() > 0.9 * d.crop.astype(bool).sum()  # the box holds the digit's ink
    xs = [d.box[0] for d in reading.digits]
    assert xs == sorted(xs)


def test_several_lines_are_read_in_reading_order(read_model, digits):
    ckpt, _ = read_model
    top, bottom = string_image(digits, "123"), string_image(digits, "4567")
    w = max(top.shape[1], bottom.shape[1])
    page = np.vstack([np.pad(a, ((0, 0), (0, w - a.shape[1])), constant_values=235) for a in (top, bottom)])
    reading = read(page, ckpt)
    assert reading.line_texts == ["123", "4567"] and reading.text == "123 4567"
    assert [d.line for d in reading.digits] == [0, 0, 0, 1, 1, 1, 1]


def test_confidence_is_calibrated_by_the_checkpoint_temperature(read_model, digits):
    ckpt, _ = read_model
    img = string_image(digits, "2593")
    sharp, soft = copy.copy(ckpt), copy.copy(ckpt)
    sharp.meta, soft.meta = {**ckpt.meta, "temperature": 1.0}, {**ckpt.meta, "temperature": 3.0}
    a, b = read(img, sharp), read(img, soft)
    assert a.text == b.text == "2593"
    assert all(x.confidence > y.confidence for x, y in zip(a.digits, b.digits))
    assert b.temperature == 3.0
    for r in (a, b):
        assert r.confidence == pytest.approx(np.prod([d.confidence for d in r.digits]))
        assert all(sum(d.probabilities) == pytest.approx(1.0) for d in r.digits)


def test_every_candidate_goes_to_the_model_in_one_call(read_model, digits, monkeypatch):
    from digitlab.engine import Recognizer

    ckpt, _ = read_model
    calls = []
    real = Recognizer.logits

    def counting(self, images):
        calls.append(len(images))
        return real(self, images)

    monkeypatch.setattr(Recognizer, "logits", counting)
    img = string_image(digits, "68", gaps=[None])  # touching: several candidate splits to score
    assert read(img, ckpt).text == "68"
    assert len(calls) == 1 and calls[0] >= 3


def test_both_backends_and_an_onnx_file_read_alike(read_model, digits, tmp_path):
    pytest.importorskip("onnxruntime")
    from digitlab.engine import Recognizer
    from digitlab.export import export_onnx

    ckpt, _ = read_model
    img = string_image(digits, "40172", height=60)
    by_torch = read(img, ckpt, backend="torch")
    by_ort = read(img, ckpt, backend="onnxruntime")
    export_onnx(ckpt, tmp_path / "m.onnx", images=64)
    by_file = read(img, Recognizer(tmp_path / "m.onnx"))
    assert by_torch.text == "40172"
    for other in (by_ort, by_file):
        assert other.text == by_torch.text
        assert [d.box for d in other.digits] == [d.box for d in by_torch.digits]
        assert np.allclose([d.probabilities for d in other.digits], [d.probabilities for d in by_torch.digits],
                           atol=1e-4)


def test_crops_are_normalised_the_mnist_way(read_model, digits):
    ckpt, _ = read_model
    reading = read(string_image(digits, "0123456789", height=90), ckpt)
    assert reading.text == "0123456789"
    for d in reading.digits:
        crop = d.crop.astype(np.float64)
        rows, cols = np.flatnonzero(crop.max(1) > 32), np.flatnonzero(crop.max(0) > 32)
        assert max(rows[-1] - rows[0], cols[-1] - cols[0]) + 1 <= 21  # fits 20x20 (antialiasing: +1)
        cy = crop.sum(1) @ np.arange(28) / crop.sum()
        cx = crop.sum(0) @ np.arange(28) / crop.sum()
        assert abs(cy - 14) <= 1 and abs(cx - 14) <= 1  # centred by centre of mass
        assert d.crop.max() == 255  # the stroke core at full intensity, as in MNIST


def test_a_shape_that_is_no_digit_is_rejected_with_a_reason(read_model, digits):
    ckpt, _ = read_model
    img = string_image(digits, "48")
    x0 = img.shape[1] - 40
    img = np.pad(img, ((0, 0), (0, 80)), constant_values=235)
    img[50:110, x0 + 20:x0 + 80] = 25  # a filled square blot, as tall as a digit
    reading = read(img, ckpt)
    assert reading.text == "48?"
    assert reading.digits[-1].rejected and reading.confidence == 0.0


def test_a_line_of_nothing_but_rejected_marks_is_set_aside(read_model, digits):
    """Two blots as tall as the digits under a line of digits: each is rejected, and a line of nothing
    but rejected crops, beside a line that reads, is ignored ink (kept as a line '??' on request)."""
    ckpt, _ = read_model
    img = string_image(digits, "3851")
    img = np.pad(img, ((0, 80), (0, 0)), constant_values=235)
    for x in (30, 110):
        img[-70:-10, x:x + 55] = 25  # filled squares: blots, not digits
    reading = read(img, ckpt)
    assert reading.line_texts == ["3851"] and [d.line for d in reading.digits] == [0] * 4
    assert sum("nothing but unreadable" in i.reason for i in reading.ignored) == 2
    kept = read(img, ckpt, ReadConfig(keep_unread_lines=True))
    assert kept.line_texts == ["3851", "??"]


def test_files_arrays_and_pil_images_read_alike(read_model, digits, tmp_path):
    ckpt, run = read_model
    img = string_image(digits, "907")
    rgb = np.dstack([img, img, np.minimum(img.astype(int) + 10, 255).astype(np.uint8)])  # bluish paper
    path = tmp_path / "digits.jpg"
    Image.fromarray(rgb).save(path, quality=90)
    texts = {read(path, run).text, read(rgb, ckpt).text, read(Image.fromarray(rgb), ckpt).text,
             read(255 - img, ckpt).text}  # light ink on dark too; path: the run folder works as a checkpoint
    assert texts == {"907"}


def test_reading_serialises_to_json(read_model, digits):
    ckpt, _ = read_model
    reading = read(string_image(digits, "31"), ckpt)
    d = json.loads(json.dumps(reading.to_dict()))
    assert d["text"] == "31" and len(d["lines"]) == 1 and len(d["lines"][0]["digits"]) == 2
    digit = d["lines"][0]["digits"][0]
    assert set(digit) >= {"text", "confidence", "box", "probabilities", "rejected"}


def test_class_names_come_from_the_checkpoint(read_model, digits):
    """Any checkpoint reads through the same pipeline: its classes name the digits (here Kannada numerals
    stand in for a Kannada model's class names)."""
    ckpt, _ = read_model
    kannada = copy.copy(ckpt)
    kannada.meta = {**ckpt.meta, "classes": list("೦೧೨೩೪೫೬೭೮೯")}
    assert read(string_image(digits, "305"), kannada).text == "೩೦೫"


def test_a_blank_page_reads_nothing(read_model):
    ckpt, _ = read_model
    rng = np.random.default_rng(0)
    paper = (230 + rng.normal(0, 3, (200, 300))).clip(0, 255).astype(np.uint8)
    reading = read(paper, ckpt, ReadConfig())
    assert reading.text == "" and reading.digits == [] and reading.confidence == 0.0
    # Nothing but a few single dark pixels: no component is of a digit's size (this once failed with an
    # IndexError while measuring the text height)
    for y, x in ((50, 60), (120, 200), (180, 30)):
        paper[y, x] = 0
    assert read(paper, ckpt, ReadConfig()).digits == []
