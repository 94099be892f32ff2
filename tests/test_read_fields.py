"""The synthetic fields' nuisances (digitlab.read.fields): each draws what its name says, and only when on."""

import numpy as np
import pytest

from digitlab.errors import ConfigError
from digitlab.read import fields, synth
from digitlab.read.config import FieldReaderConfig


@pytest.fixture(scope="module")
def digits(shared_data_dir):
    return synth.load_test_digits(shared_data_dir)


def field(digits, only, seed=0, spec=fields.CHEQUE):
    return fields.make_field(*digits, spec, np.random.default_rng(seed), only=set(only))


def writing(sample) -> np.ndarray:
    """Where the digits (their boxes, 2 px round them) and the marks between them are: a mask."""
    mask = np.zeros(sample.image.shape, bool)
    xs = [x for x, _, w, _ in sample.boxes[0]] + [x + w for x, _, w, _ in sample.boxes[0]]
    ys = [y for _, y, _, _ in sample.boxes[0]] + [y + h for _, y, _, h in sample.boxes[0]]
    mask[max(0, min(ys) - 2):max(ys) + 2, max(0, min(xs) - 2):max(xs) + 12] = True
    return mask


def background(sample) -> np.ndarray:
    """The pixels away from every digit's box (2 px round them) and away from the marks between them."""
    return sample.image[~writing(sample)].astype(float)


def test_a_plain_field_holds_its_digits_and_is_reproducible(digits):
    a, b = field(digits, ()), field(digits, ())
    assert np.array_equal(a.image, b.image) and a.text == b.text and a.raw == (a.text,)
    assert a.nuisances == () and a.image.dtype == np.uint8 and 3 <= len(a.text) <= 7
    assert len(a.boxes[0]) == len(a.text)
    assert a.image.std() > 20  # ink on paper


def test_printed_backgrounds_put_fine_lines_where_there_was_plain_paper(digits):
    plain = background(field(digits, (), seed=3)).std()
    for name in ("guilloche", "hatching"):
        sample = field(digits, (name,), seed=3)
        assert sample.nuisances == (name,)
        assert background(sample).std() > 3 * plain, name


def test_tinted_paper_is_darker(digits):
    assert np.median(background(field(digits, ("tint",), seed=4))) < np.median(background(field(digits, (), seed=4)))


def test_small_digits_are_20_to_40_pixels_high(digits):
    for seed in range(10):
        sample = field(digits, ("small",), seed=seed)
        heights = [h for _, _, _, h in sample.boxes[0]]
        assert 12 <= min(heights) and max(heights) <= 46, heights  # 20-40 px boxes; a digit's ink fills most of it


def test_separators_trailing_marks_and_signs_stay_out_of_the_text(digits):
    seen = set()
    for seed in range(30):
        for name in ("separators", "trailing", "currency", "fullstop"):
            sample = field(digits, (name,), seed=seed)
            raw, text = sample.raw[0], sample.text
            assert "".join(c for c in raw if c.isdigit()) == text
            if name == "separators" and len(text) >= 4:
                groups = raw.replace(",", ".").replace("'", ".").split(".")
                assert len(groups) == (len(text) + 2) // 3 and all(len(g) == 3 for g in groups[1:]), raw
                seen.add(name)
            if name == "trailing":
                assert raw[len(text):] in fields.TRAILING
                seen.add(name)
            if name == "currency":
                assert raw[0] in fields.CURRENCY
                seen.add(name)
            if name == "fullstop":
                assert raw == text + "."
                seen.add(name)
    assert seen == {"separators", "trailing", "currency", "fullstop"}


def long_dark_run(mask: np.ndarray, axis: int) -> float:
    """The largest share of the image's extent that one row (axis=1) or column (axis=0) is dark over."""
    return float(mask.mean(axis=axis).max())


def test_table_rules_cross_the_whole_cell(digits):
    found = 0
    for seed in range(6):
        sample = field(digits, ("rules",), seed=seed, spec=fields.CELL)
        plain = field(digits, (), seed=seed, spec=fields.CELL)
        dark = sample.image < np.median(sample.image) - 40
        gain = max(long_dark_run(dark, 0), long_dark_run(dark, 1))
        found += gain > 0.9 and gain > long_dark_run(plain.image < np.median(plain.image) - 40, 0) + 0.2
    assert found >= 4  # most cells get a line through all of them (a few draw all theirs faint or none)


def test_the_page_edge_band_darkens_one_side(digits):
    for seed in range(6):
        sample = field(digits, ("band",), seed=seed, spec=fields.CELL)
        columns = sample.image.mean(0)
        edge = min(columns[:3].mean(), columns[-3:].mean())
        assert edge < 100 and max(columns[:3].mean(), columns[-3:].mean()) > 140, seed


def test_strokes_over_the_number_and_under_it(digits):
    for name in ("strike", "underline"):
        sample, plain = field(digits, (name,), seed=5), field(digits, (), seed=5)  # the same field, stroke aside
        x0 = min(x for x, _, _, _ in sample.boxes[0])
        x1 = max(x + w for x, _, w, _ in sample.boxes[0])
        top = min(y for _, y, _, _ in sample.boxes[0])
        bottom = max(y + h for _, y, _, h in sample.boxes[0])
        added = (sample.image < 120) & (plain.image > 180)  # paper there before, dark now
        rows = np.flatnonzero(added.any(1))
        assert added[:, x0:x1].any(0).mean() > 0.5, name  # along the number (the digits cover the rest)
        if name == "strike":
            assert top <= rows.min() and rows.max() <= bottom + 2
        else:
            assert rows.min() >= bottom - 2


def test_faint_and_thin_ink_is_lighter_or_narrower(digits):
    plain, faint, thin = (field(digits, only, seed=6) for only in ((), ("faint",), ("thin",)))
    assert np.percentile(faint.image, 1) > np.percentile(plain.image, 1) + 40
    assert (thin.image < 128).sum() < (plain.image < 128).sum()


def test_faint_ink_stays_darker_than_the_print_beneath_it(digits):
    # light ink on a security pattern or tinted paper, yet legible: its core is darker than the pattern's lines
    for seed in range(6):
        sample = field(digits, ("faint", "guilloche", "hatching", "tint"), seed=seed)
        ink = np.percentile(sample.image[writing(sample)], 1)
        assert ink < np.percentile(background(sample), 1) - 5, seed


def test_stamp_scan_and_photo_change_the_image_and_the_photo_is_a_jpeg(digits):
    plain = field(digits, (), seed=8).image.astype(float)
    for name in ("stamp", "scan", "photo", "touching"):
        sample = field(digits, (name,), seed=8)
        if sample.image.shape == plain.shape:
            assert np.abs(sample.image - plain).mean() > 0.5, name
    photo = field(digits, ("photo",), seed=8)
    assert photo.jpeg is not None and photo.jpeg[:2] == b"\xff\xd8"


def test_neighbours_put_cut_off_writing_at_the_edges_only(digits):
    for seed in range(6):
        sample, plain = field(digits, ("neighbours",), seed, fields.CELL), field(digits, (), seed, fields.CELL)
        added = (sample.image < 120) & (plain.image > 180)
        assert added.any(), seed
        rows, cols = np.flatnonzero(added.any(1)), np.flatnonzero(added.any(0))
        h, w = sample.image.shape
        # each piece touches the crop's edge: the new ink reaches the top, bottom, left or right border
        assert rows.min() == 0 or rows.max() == h - 1 or cols.min() == 0 or cols.max() == w - 1, seed


def test_bleed_through_is_faint_and_spots_are_small(digits):
    for seed in range(4):
        plain = field(digits, (), seed, fields.CELL).image.astype(float)
        bleed = field(digits, ("bleed",), seed, fields.CELL).image.astype(float)
        spots = field(digits, ("spots",), seed, fields.CELL).image.astype(float)
        darker = plain - bleed
        assert (darker > 8).mean() > 0.01 and np.percentile(darker, 99.9) < 110, seed  # seen, but lighter than ink
        specks = (plain - spots) > 30
        assert specks.any() and specks.mean() < 0.08, seed


def test_variants_draw_their_nuisances_at_random_and_unknown_names_fail(digits):
    samples = fields.generate_fields(*digits, fields.CELL, 40, seed=11)
    seen = {n for s in samples for n in s.nuisances}
    assert {"rules", "band", "faint"} <= seen and "guilloche" not in seen
    assert all(1 <= len(s.text) <= 3 for s in samples)
    with pytest.raises(ValueError, match="unknown nuisances"):
        field(digits, ("smudge",))


def test_the_amount_box_draws_long_printed_lines_beside_the_number(digits):
    found = 0
    for seed in range(6):
        sample, plain = field(digits, ("box",), seed), field(digits, (), seed)
        assert sample.image.shape == plain.image.shape and sample.text == plain.text
        dark, before = (s.image < np.median(s.image) - 40 for s in (sample, plain))
        found += max(long_dark_run(dark, 0), long_dark_run(dark, 1)) > \
            max(long_dark_run(before, 0), long_dark_run(before, 1)) + 0.3
    assert found >= 4  # most fields show a side of the box (some boxes fall outside the crop)


def test_printed_labels_stay_outside_the_text(digits):
    for seed in range(6):
        sample, plain = field(digits, ("printed",), seed), field(digits, (), seed)
        assert sample.text == plain.text and sample.raw == plain.raw  # a label is never read
        dark = (background(sample) < 140).sum()
        assert dark > 15 and dark > 3 * (background(plain) < 140).sum(), seed  # letters away from the digits


def test_continental_ones_and_sevens_get_their_strokes_and_nothing_else_changes(digits):
    images, labels = digits
    picked = np.flatnonzero(np.isin(labels, (1, 7, 4)))[:60]
    x, y = images[picked], labels[picked]
    styled = fields.continental(x, y, 1.0, np.random.default_rng(0))
    added = (styled.astype(int) - x) > 60
    assert np.array_equal(styled[y == 4], x[y == 4])  # only 1s and 7s
    assert np.array_equal(fields.continental(x, y, 0.0, np.random.default_rng(0)), x)
    for image, new, label in zip(x[y != 4], added[y != 4], y[y != 4]):
        rows = np.flatnonzero((image > 100).any(1))
        assert 3 <= new.sum() <= 80, label  # a stroke, not a blot
        ys = np.flatnonzero(new.any(1))
        middle = (rows[0] + rows[-1]) / 2
        if label == 1:  # the up-stroke hangs from the top
            assert ys.mean() < middle
        else:  # the cross-bar is about half-way down
            assert abs(ys.mean() - middle) < 0.3 * (rows[-1] - rows[0])


def test_uneven_writing_varies_the_digits_sizes_and_baselines(digits):
    def spread(only):
        sizes, bottoms = [], []
        for seed in range(40):
            boxes = field(digits, only, seed=seed).boxes[0]
            heights = np.array([h for *_, h in boxes])
            feet = np.array([y + h for _, y, _, h in boxes])
            sizes.append(heights.max() / heights.min())
            bottoms.append((feet.max() - feet.min()) / np.median(heights))
        return np.mean(sizes), np.mean(bottoms)

    even, uneven = spread(()), spread(("uneven",))
    assert uneven[0] > even[0] + 0.15, (even, uneven)  # sizes differ more ...
    assert uneven[1] > 2 * even[1], (even, uneven)  # ... and the digits stand further off one baseline
    sample = field(digits, ("uneven",), seed=1)
    assert sample.nuisances == ("uneven",) and len(sample.boxes[0]) == len(sample.text)
    with pytest.raises(ConfigError, match="uneven"):
        FieldReaderConfig(uneven=1.5)
