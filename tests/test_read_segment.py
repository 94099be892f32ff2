"""digitlab.read segmentation on real MNIST test digits: lines, marks, touching pairs, broken strokes."""

import dataclasses

import cv2
import numpy as np
import pytest
from read_helpers import ink_mask, read_model, string_image, sure_digits, test_digits  # noqa: F401 - fixtures

from digitlab.read import segment, synth
from digitlab.read.config import ReadConfig
from digitlab.read.image import prepare
from digitlab.read.recognize import read


@pytest.fixture(scope="module")
def digits(read_model, test_digits):
    """{class: [test digits the small model reads right on their own]}: failures below are the pipeline's."""
    return sure_digits(read_model[0], *test_digits)


def digit_boxes(img: np.ndarray) -> list[tuple[int, int, int, int]]:
    n, _, stats, _ = cv2.connectedComponentsWithStats(ink_mask(img).astype(np.uint8))
    return sorted((tuple(int(v) for v in s[:4]) for s in stats[1:] if s[4] > 30), key=lambda b: b[0])


def components(mask: np.ndarray) -> int:
    return cv2.connectedComponents((mask > 0).astype(np.uint8))[0] - 1


def test_lines_are_found_in_reading_order(test_digits):
    images, labels = test_digits
    top = synth.render(list(images[:4]), height=40, gaps=[0.4] * 3)  # 7 2 1 0
    bottom = synth.render(list(images[4:10]), height=40, gaps=[0.4] * 5)  # 4 1 4 9 5 9
    w = max(top.shape[1], bottom.shape[1])
    page_img = np.vstack([np.pad(top, ((0, 0), (0, w - top.shape[1])), constant_values=235),
                          np.pad(bottom, ((0, 0), (0, w - bottom.shape[1])), constant_values=235)])
    page = prepare(page_img, ReadConfig())
    lay = segment.layout(page, ReadConfig())
    assert len(lay.lines) == 2
    labels = [{p.label for p in line.pieces} for line in lay.lines]
    assert len(labels[0]) == 4 and len(labels[1]) >= 6  # (a 4 may come in two strokes)
    assert lay.lines[0].bottom < lay.lines[1].top
    xs = [p.box[0] for p in lay.lines[1].pieces]
    assert xs == sorted(xs)


def test_a_digit_in_two_stacked_pieces_opens_no_line_of_its_own(test_digits):
    """Kannada digits at 28x28 often come in two pieces, one above the other: a short piece reaching
    above the line joins the line of the full-height digits beside it."""
    images, _ = test_digits
    img = synth.render(list(images[:4]), height=40, gaps=[0.4] * 3, margin=1.0)
    (x, y, w, hh), = [b for b in digit_boxes(img)][-1:]
    img = np.pad(img, ((0, 0), (0, 60)), constant_values=235)
    left = x + w + 20
    # two loops, each under half the height of the digits beside them (too round for fragments); the
    # upper one mostly above the line's top
    cv2.ellipse(img, (left + 11, y - 2), (11, 7), 0, 0, 360, 25, 3)
    cv2.ellipse(img, (left + 11, y + hh - 14), (11, 7), 0, 0, 360, 25, 3)
    cfg = ReadConfig()
    page = prepare(img, cfg)
    assert len(segment.layout(page, cfg).lines) == 1
    assert len(segment.layout(page, dataclasses.replace(cfg, line_seed_height=0.0, lone_height=0.0)).lines) == 2


def test_a_row_of_small_marks_under_the_digits_is_no_line(test_digits):
    """Blots in a row well below the digits: each is too big and thick for a speck or a fragment and too
    far from the line to join it, but a line of nothing but such marks holds no digits."""
    images, _ = test_digits
    img = synth.render(list(images[:5]), height=40, gaps=[0.4] * 4, margin=1.0)
    img = np.pad(img, ((0, 40), (0, 0)), constant_values=235)
    for x in (40, 110, 180):  # about 0.6 of the digits' ink height
        cv2.circle(img, (x, img.shape[0] - 30), 12, 25, -1)
    cfg = ReadConfig()
    page = prepare(img, cfg)
    lay = segment.layout(page, cfg)
    assert len(lay.lines) == 1 and sum("line of its own" in m.reason for m in lay.marks) == 3
    assert len(segment.layout(page, dataclasses.replace(cfg, lone_height=0.0)).lines) == 2


def test_a_digit_drawn_larger_than_its_neighbours_is_no_symbol(test_digits):
    """An 8 taller than the digits beside it sticks out of the line above and below, as the bar
    of a $ does; but what sticks out is its loops, wider than a bar, so it stays a digit of the line."""
    images, labels = test_digits
    img = synth.render([images[labels == c][0] for c in (3, 2, 4, 7, 0)], height=40, gaps=[0.4, 2.6, 0.4, 0.4],
                       margin=1.0)
    eight = synth.render([images[labels == 8][0]], height=40)
    ys, xs = np.nonzero(eight < 128)
    rows = np.flatnonzero((img < 128).any(1))
    tall = 1.4 * (rows[-1] - rows[0] + 1)  # its ink 1.4 times as tall as the line's
    eight = eight[ys.min():ys.max() + 1, xs.min():xs.max() + 1]
    eight = cv2.resize(eight, None, fx=tall / eight.shape[0], fy=tall / eight.shape[0], interpolation=cv2.INTER_CUBIC)
    cols = np.flatnonzero((img < 128).any(0))
    gap = cols[np.argmax(np.diff(cols))], cols[np.argmax(np.diff(cols)) + 1]  # between the 2 and the 4
    y = (rows[0] + rows[-1] - eight.shape[0]) // 2
    x = (gap[0] + gap[1] - eight.shape[1]) // 2
    img[y:y + eight.shape[0], x:x + eight.shape[1]] = eight
    cfg = ReadConfig()
    page = prepare(img, cfg)
    lay = segment.layout(page, cfg)
    assert not any(m.reason.startswith("symbol") for m in lay.marks)
    assert len(lay.lines) == 1 and len({p.label for p in lay.lines[0].pieces}) == 6
    wide = segment.layout(page, dataclasses.replace(cfg, bar_width=1000.0))  # any width passes for a bar
    assert sum(m.reason.startswith("symbol") for m in wide.marks) == 1


def test_a_lone_digit_in_two_stacked_pieces_is_one_line():
    """With nothing beside it, a digit in two pieces one above the other (a Kannada 7) still reads as
    one line: lines of text leave a wider gap between them."""
    img = np.full((90, 80), 235, np.uint8)
    cv2.ellipse(img, (40, 28), (14, 11), 0, 0, 360, 25, 4)
    cv2.ellipse(img, (40, 56), (14, 11), 0, 0, 360, 25, 4)  # a few px of paper between the two loops
    cfg = ReadConfig()
    page = prepare(img, cfg)
    assert len(segment.layout(page, cfg).lines) == 1
    assert len(segment.layout(page, dataclasses.replace(cfg, stack_gap=0.0)).lines) == 2


def test_cut_path_goes_through_the_joint_of_touching_strokes():
    own = np.zeros((40, 40), bool)
    own[:, 8:14] = True  # a 1
    own[:, 24:30] = True  # another 1 ...
    own[30:34, 14:24] = True  # ... joined near the bottom by a short stroke
    paths = segment.cut_paths(own, ReadConfig(), h=40, sw=6, forced=False)
    assert len(paths) >= 1  # (several nearly straight ones may cross the joint, a few pixels apart)
    for path, cost in paths:
        assert (path > 13).all() and (path < 24).all()  # between the two bars, crossing only the joint
        assert cost == pytest.approx(ReadConfig().split_penalty)  # 4 px of joint < 1 stroke width


def test_percentile_is_numpys():
    rng = np.random.default_rng(0)
    for n in (1, 2, 3, 10, 11, 250, 777):
        for x in (rng.random(n, np.float32), np.round(rng.random(n, np.float32) * 4) / 4):  # ties too
            for q in (0, 50, 75, 90, 100):
                assert segment.percentile(x, q) == float(np.percentile(x, q))
        tops = rng.integers(0, 500, n).astype(np.int32)  # the median of components' rows
        assert segment.percentile(tops, 50) == float(np.median(tops))


@pytest.mark.slow
def test_specks_commas_dashes_underlines_and_currency_signs_are_not_read(read_model, digits):
    ckpt, _ = read_model
    for text in ("37", "50"):
        img = string_image(digits, text, gaps=[1.2], margin=1.5)
        (x0, y0, w0, h0), (x1, y1, w1, h1) = digit_boxes(img)[:2]
        base = max(y0 + h0, y1 + h1)
        cv2.circle(img, (x0 + w0 + 6, base - 3), 3, 25, -1)  # a comma after the first digit
        cv2.line(img, (x0 + w0 + 7, base - 2), (x0 + w0 + 3, base + 6), 25, 2)
        cv2.line(img, (x0 + w0 + 16, (y0 + base) // 2), (x1 - 10, (y0 + base) // 2), 25, 3)  # a dash
        for x, y in [(x0 - 20, y0 + 5), (x1 + w1 + 15, base - 10), ((x0 + x1) // 2, y0 - 12)]:
            cv2.circle(img, (x, y), 2, 25, -1)  # specks
        cv2.line(img, (x0 - 60, base + 10), (x1 + w1 + 12, base + 10), 25, 2)  # an underline
        cv2.putText(img, "S", (x0 - 48, base), cv2.FONT_HERSHEY_SIMPLEX, 1.7, 25, 4)  # a handwritten $:
        cv2.line(img, (x0 - 32, y0 - 16), (x0 - 32, base + 16), 25, 3)  # an S with a bar through it
        reading = read(img, ckpt)
        assert reading.text == text
        reasons = " ".join(m.reason for m in reading.ignored)
        assert "speck" in reasons and "dash" in reasons and "symbol" in reasons and "comma" in reasons
        assert reading.page.ruling.sum() > 2 * (x1 + w1 - x0)  # the underline went with the ruling


@pytest.mark.slow
def test_touching_pairs_are_split(read_model, digits):
    ckpt, _ = read_model
    pairs = ["35", "28", "04", "68", "93", "26"]
    right = []
    for text in pairs:
        # the first writing of the pair whose strokes really meet (one connected component)
        img = next(img for a in digits[int(text[0])] for b in digits[int(text[1])]
                   for img in [synth.render([a, b], height=48, gaps=[None])]
                   if components(prepare(img, ReadConfig()).mask) == 1)
        right.append(read(img, ckpt).text == text)
    assert sum(right) >= len(pairs) - 1, right


@pytest.mark.slow
def test_broken_strokes_are_merged(read_model, digits):
    """A 5 whose top stroke came off, and a 4 whose stem came apart above the bar, each read as one digit."""
    ckpt, _ = read_model
    for text in ("357", "142"):
        img = string_image(digits, text, height=56, gaps=[0.5, 0.5])
        x, y, w, h = digit_boxes(img)[1]
        broken = img.copy()
        band = slice(y + int(0.33 * h), y + int(0.33 * h) + 3)  # the pen lifted for 3 px at a third of the height:
        if text[1] == "5":
            broken[band, x:x + w] = 235  # across the 5, below its bar
        else:
            broken[band, x + w // 2:x + w] = 235  # across the 4's stem (the right half), above its bar
        assert components(prepare(broken, ReadConfig()).mask) >= 4, text  # really in pieces
        assert read(broken, ckpt).text == text


@pytest.mark.slow
def test_ink_at_the_image_border_shorter_than_the_digits_is_not_read(read_model, digits):
    """The edge of a table or a shadow cut by the frame: not a line of digits, not a '?'."""
    ckpt, _ = read_model
    img = string_image(digits, "360", gaps=[0.4, 0.4], margin=1.2)
    x0, y0, w0, h0 = digit_boxes(img)[0]
    cv2.rectangle(img, (x0, 0), (x0 + 2 * w0, int(0.6 * h0)), 40, -1)  # a dark band along the top edge
    reading = read(img, ckpt)
    assert reading.text == "360"
    assert any("border" in m.reason for m in reading.ignored)
    without = ReadConfig(border_height=0, lone_height=0, keep_unread_lines=True)
    assert read(img, ckpt, without).text != "360"  # a line of its own without
