"""Synthetic fields: one handwritten number in the crop that holds it, with what real documents put around it.

``digitlab.read.synth`` draws pages of digit strings on plain or ruled paper. Real fields hold more:
a cheque's courtesy amount sits on a printed security background of fine wavy lines, is written small
with a ballpoint, has thousands separators and a trailing ``.-``; a register's row number sits in a
table cell between ruling lines, next to the dark band of the page edge or the binding, in faint ink,
with a full stop after it. Each of those is a named nuisance here (``NUISANCES``), drawn at random per
image with the chance its variant gives (``CHEQUE``, ``CELL``), or forced on one by one
(``make_field(..., only={...})``) for tests and pictures (docs/reading-fields.md).

A field's label is its digits (``Sample.text``); ``Sample.raw`` keeps what was written as written,
separators and marks included (``1.000.-``). Everything is drawn from one ``numpy.random.Generator``:
(variant, seed, index) fixes an image. The digits come from the arrays given: the benchmarks pass
MNIST *test* digits (never seen by the models), training passes training digits.
"""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np

from digitlab.read.synth import Sample, _digit, _touching_offset

NUISANCES: dict[str, str] = {
    "guilloche": "a printed security background of fine wavy lines (cheques)",
    "hatching": "fine printed parallel lines across the field",
    "tint": "tinted, patterned paper: a darker, uneven background",
    "small": "small digits at low resolution: 20-40 px high",
    "separators": "thousands separators between digit groups (. , ' ): in raw, not in text",
    "trailing": "a mark after the amount (- = .- ,- /-): in raw, not in text",
    "currency": "a currency sign or fill mark before the amount ($ * #): in raw, not in text",
    "fullstop": "a full stop after the number (register row numbers): in raw, not in text",
    "touching": "neighbouring digits that touch (zeros run together)",
    "rules": "a table's ruling lines: vertical ones through or beside the digits, horizontal ones above and below",
    "band": "a dark band at one side: the page edge or the binding",
    "underline": "a stroke under the number",
    "strike": "a stroke through the number",
    "stamp": "part of an ink stamp over the field",
    "neighbours": "pieces of the writing in the cells around, cut off by the crop's edge",
    "bleed": "writing on the other side of the page showing through: faint, blurred, mirrored",
    "spots": "dirt, foxing and ink specks on old paper",
    "thin": "thin ballpoint strokes",
    "faint": "faint ink: light, low-contrast strokes (pencil, faded iron-gall ink)",
    "scan": "scanner artefacts: low resolution, hard thresholding, streaks",
    "photo": "phone-camera artefacts: uneven light, blur, noise, JPEG",
    "box": "the printed border of the amount box, cut by the crop or close around the number",
    "printed": "printed words beside the number (a form's label: Valor, Pay, EUR, R$), to be ignored",
    "uneven": "uneven writing: digits of different sizes, each off the baseline, the line rising or falling",
}

SEPARATORS = (".", ",", "'")
TRAILING = ("-", "=", ".-", ",-", "/-", ".--")
CURRENCY = ("$", "*", "#")


@dataclass(frozen=True)
class FieldSpec:
    name: str
    digits: tuple[int, int]  # digits per field, inclusive range
    height: tuple[float, float]  # pixels, a digit's 20x20 MNIST box (without "small")
    chances: tuple[tuple[str, float], ...]  # (nuisance, probability per image); the others never happen

    def chance(self, name: str) -> float:
        return dict(self.chances).get(name, 0.0)


CHEQUE = FieldSpec(name="cheque", digits=(3, 7), height=(24, 44), chances=(
    ("guilloche", 0.7), ("hatching", 0.25), ("tint", 0.6), ("small", 0.8), ("separators", 0.5), ("trailing", 0.5),
    ("currency", 0.15), ("touching", 0.3), ("underline", 0.1), ("stamp", 0.05), ("thin", 0.5), ("faint", 0.25),
    ("scan", 0.4), ("photo", 0.3), ("box", 0.3), ("printed", 0.25)))
CELL = FieldSpec(name="cell", digits=(1, 3), height=(24, 48), chances=(
    ("rules", 0.9), ("band", 0.5), ("fullstop", 0.4), ("underline", 0.2), ("strike", 0.08), ("tint", 0.4),
    ("small", 0.5), ("touching", 0.1), ("faint", 0.5), ("thin", 0.2), ("stamp", 0.03), ("scan", 0.6),
    ("photo", 0.15), ("neighbours", 0.4), ("bleed", 0.25), ("spots", 0.3)))
VARIANTS = {s.name: s for s in (CHEQUE, CELL)}


def make_field(digits: np.ndarray, labels: np.ndarray, spec: FieldSpec, rng: np.random.Generator,
               only: set[str] | frozenset[str] | None = None) -> Sample:
    """One field image. digits: (N, 28, 28) uint8 white-on-black digit images, labels (N,). only: exactly
    these nuisances (tests, pictures) instead of the spec's chances."""
    if only is not None:
        unknown = set(only) - set(NUISANCES)
        if unknown:
            raise ValueError(f"unknown nuisances {sorted(unknown)}; known: {', '.join(NUISANCES)}")
        on = set(only)
    else:
        on = {name for name, p in spec.chances if rng.random() < p}
    n = int(rng.integers(spec.digits[0], spec.digits[1] + 1))
    picks = rng.integers(0, len(digits), n)
    text = "".join(str(int(labels[i])) for i in picks)
    tokens = _tokens(text, on, rng)
    raw = "".join(tokens)

    h = rng.uniform(20, 40) if "small" in on else rng.uniform(*spec.height)
    stroke = rng.uniform(-0.6, -0.3) if "thin" in on else rng.uniform(-0.3, 0.8)
    ink, boxes = _ink_line(tokens, digits[picks], h, stroke, "touching" in on, "thin" in on, rng, "uneven" in on)

    # The crop around the number: margins as a form's field or a table's cell leaves them
    ih, iw = ink.shape
    left, right = (int(rng.uniform(0.2, 1.2) * h) for _ in range(2))
    top, bottom = int(rng.uniform(0.1, 0.5) * h), int(rng.uniform(0.1, 0.5) * h)
    label, label_at = (_printed(h, rng), ("left", "top", "bottom")[int(rng.integers(3))]) if "printed" in on \
        else (None, "")
    if label_at == "left":  # room for the label before the number
        left += label.shape[1] + int(rng.uniform(0.1, 0.5) * h)
    elif label_at == "top":  # room above or below, where the crop's edge may cut the label
        top += int(label.shape[0] * rng.uniform(0.5, 1.1))
    elif label_at == "bottom":
        bottom += int(label.shape[0] * rng.uniform(0.5, 1.1))
    band = int(rng.uniform(0.1, 0.3) * (iw + left + right)) if "band" in on else 0
    band_left = bool(rng.random() < 0.5)
    canvas = np.zeros((ih + top + bottom, iw + left + right + band), np.float32)
    x0 = left + (band if band_left else 0)
    canvas[top:top + ih, x0:x0 + iw] = ink
    boxes = tuple((x + x0, y + top, w, bh) for x, y, w, bh in boxes)
    hh, ww = canvas.shape

    paper = _paper((hh, ww), "tint" in on, rng)
    img = paper.copy()
    if "guilloche" in on:
        img = np.minimum(img, paper * (1 - _guilloche((hh, ww), rng)))
    if "hatching" in on:
        img = np.minimum(img, paper * (1 - _hatching((hh, ww), rng)))
    if "rules" in on:
        img = np.minimum(img, paper * (1 - _rules((hh, ww), (x0, x0 + iw), top, top + ih, h, rng)))
    if "bleed" in on:
        img = np.minimum(img, paper * (1 - _bleed((hh, ww), digits, h, rng)))
    if "spots" in on:
        img = np.minimum(img, paper * (1 - _spots((hh, ww), h, rng)))
    if "box" in on:
        img = np.minimum(img, paper * (1 - _box((hh, ww), (x0, top, x0 + iw, top + ih), rng)))
    if label is not None:
        img = np.minimum(img, paper * (1 - _place(label, (hh, ww), label_at, (x0, top, x0 + iw, top + ih), rng)))
    if band:
        img = _band(img, band, band_left, rng)

    faint = "faint" in on
    paper_level = float(np.median(paper))
    drawn = rng.uniform(0.55, 0.85) if faint else rng.uniform(0, 80)  # faint: a share; else a pen's ink level
    opacity = rng.uniform(0.5, 0.8) if faint else rng.uniform(0.85, 1.0)
    if faint:  # its core that share of the darkest level beneath the number (the paper, or the print under
        # it): lighter than a pen's ink, yet darker than what it is written on, so still legible
        under = min(paper_level, float(np.percentile(img[top:top + ih, x0:x0 + iw], 1)))
        ink_level = max(0.0, (under * drawn - paper_level * (1 - opacity)) / opacity)
    else:
        ink_level = drawn
    strokes = canvas.copy()
    width = max(1, int(round(h / 12 + stroke * h / 40)))
    if "underline" in on:
        _wavy(strokes, (x0 - 0.1 * h, top + ih + 0.1 * h), (x0 + iw + 0.1 * h, top + ih + 0.05 * h), width, rng)
    if "strike" in on:
        _wavy(strokes, (x0 - 0.1 * h, top + ih * rng.uniform(0.3, 0.7)),
              (x0 + iw + 0.1 * h, top + ih * rng.uniform(0.3, 0.7)), width, rng)
    if "neighbours" in on:
        _neighbours(strokes, digits, h, stroke, rng)
    img = img * (1 - opacity * strokes) + ink_level * opacity * strokes
    if "stamp" in on:
        img = np.minimum(img, 255 - (255 - rng.uniform(60, 150)) * _stamp((hh, ww), h, rng))

    jpeg = None
    if "scan" in on:  # a bilevel scan's threshold sits between the paper and the ink's core
        img = _scan(img, rng, paper_ink=(paper_level, paper_level * (1 - opacity) + ink_level * opacity))
    if "photo" in on:
        img, jpeg = _photo(img, rng)
    else:
        img = img + rng.normal(0, rng.uniform(0.5, 3.0), img.shape).astype(np.float32)
    img = np.clip(img, 0, 255).round().astype(np.uint8)
    if jpeg is not None:
        img = cv2.imdecode(np.frombuffer(jpeg, np.uint8), cv2.IMREAD_GRAYSCALE)
    return Sample(image=img, lines=(text,), indices=(tuple(int(i) for i in picks),), jpeg=jpeg, boxes=(boxes,),
                  nuisances=tuple(name for name in NUISANCES if name in on), raw=(raw,))


def continental(digits: np.ndarray, labels: np.ndarray, share: float, rng: np.random.Generator) -> np.ndarray:
    """A copy of (N, 28, 28) white-on-black Latin digits in which about `share` of the 1s get the long
    up-stroke and of the 7s the cross-bar that much of Europe and Latin America writes (MNIST's American
    writers rarely do): other hands than the dataset's, for training a reader of real documents."""
    out = digits.copy()
    for i in np.flatnonzero(((labels == 1) | (labels == 7)) & (rng.random(len(labels)) < share)):
        ink = out[i] > 100
        rows = np.flatnonzero(ink.any(1))
        if rows.size < 8:
            continue
        r0, r1 = int(rows[0]), int(rows[-1])
        width = int(np.clip(round(float(ink[(r0 + r1) // 2:r1 + 1].sum(1).mean())) - 1, 1, 2))  # a pen's
        if labels[i] == 1:  # the up-stroke: from the top, down to the left
            xt = float(np.flatnonzero(ink[r0:r0 + 3].any(0)).mean())
            p, q = (xt, r0 + 0.5), (xt - rng.uniform(5, 9), r0 + rng.uniform(4, 8))
        else:  # the cross-bar through the stem, a little below the middle
            y = int(r0 + rng.uniform(0.45, 0.6) * (r1 - r0))
            xs = np.flatnonzero(ink[y])
            if xs.size == 0:
                continue
            xm, half = float(xs.mean()), rng.uniform(3.5, 6)
            p, q = (xm - half, y + rng.uniform(-1, 1)), (xm + half, y + rng.uniform(-1, 1))
        stroke = np.zeros((28, 28), np.uint8)
        cv2.line(stroke, (int(round(p[0] * 4)), int(round(p[1] * 4))), (int(round(q[0] * 4)), int(round(q[1] * 4))),
                 255, width, cv2.LINE_AA, shift=2)
        np.maximum(out[i], stroke, out=out[i])
    return out


def generate_fields(digits: np.ndarray, labels: np.ndarray, spec: FieldSpec, n: int, seed: int) -> list[Sample]:
    rng = np.random.default_rng(seed)
    return [make_field(digits, labels, spec, rng) for _ in range(n)]


def _tokens(text: str, on: set[str], rng: np.random.Generator) -> list[str]:
    """What is written, one token per glyph: the digits, with separators, a sign before and a mark after
    as the nuisances ask."""
    tokens = list(text)
    if "separators" in on and len(text) >= 4:
        sep = SEPARATORS[int(rng.integers(len(SEPARATORS)))]
        grouped: list[str] = []
        for k, d in enumerate(text):
            if k and (len(text) - k) % 3 == 0:
                grouped.append(sep)
            grouped.append(d)
        tokens = grouped
    if "currency" in on:
        tokens.insert(0, CURRENCY[int(rng.integers(len(CURRENCY)))])
    if "trailing" in on:
        tokens += list(TRAILING[int(rng.integers(len(TRAILING)))])
    elif "fullstop" in on:
        tokens.append(".")
    return tokens


def _ink_line(tokens: list[str], imgs: np.ndarray, h: float, stroke: float, touching: bool, thin: bool,
              rng: np.random.Generator, uneven: bool = False) -> tuple[np.ndarray, list[tuple[int, int, int, int]]]:
    """The tokens written on one baseline as float ink (about 1.4 h tall; 2 h when uneven) and each digit's
    (x, y, w, h). thin: a ballpoint's narrow strokes, the soft edges of each (MNIST's pen) cut away. uneven:
    each digit 0.75-1.25 times the size and up to 0.3 h off the baseline, which may slope."""
    slant = rng.uniform(-0.2, 0.2)
    cut = rng.uniform(0.45, 0.7) if thin else 0.0
    sizes = (0.75, 1.25) if uneven else (0.9, 1.1)
    glyphs, k = [], 0
    for t in tokens:
        if t.isdigit():
            g = _digit(imgs[k], h * rng.uniform(*sizes), slant + rng.uniform(-0.05, 0.05), stroke)
            glyphs.append((t, np.clip((g - cut) / (1 - cut), 0, 1) if cut else g))
            k += 1
        else:
            glyphs.append((t, _mark(t, h, stroke, rng)))
    room = 0.3 * h if uneven else 0.0  # above and below the baseline, for digits off it
    height = max(int(1.4 * h + 2 * room) + 4, max(g.shape[0] for _, g in glyphs))  # a tall digit fits too
    baseline = int(1.2 * h + room)
    slope = rng.uniform(-0.08, 0.08) if uneven else 0.0  # of h per token: a line written uphill or down
    line = np.zeros((height, int(sum(g.shape[1] for _, g in glyphs) + (len(glyphs) + 1) * h)), np.float32)
    x, boxes = 0.0, []
    for i, (t, g) in enumerate(glyphs):
        gh, gw = g.shape
        if t.isdigit():
            off = np.clip(rng.uniform(-0.15, 0.15) + slope * (i - len(glyphs) / 2), -0.3, 0.3) if uneven \
                else rng.uniform(-0.04, 0.04)
            bottom = int(np.clip(baseline + off * h, gh, height))
        else:  # marks sit where they are written: a dot on the line, a dash at mid-height
            bottom = int(np.clip(baseline + (slope * (i - len(glyphs) / 2) - _MARK_RAISE.get(t, 0.0)) * h, gh, height))
        top = bottom - gh
        prev_digit = i > 0 and glyphs[i - 1][0].isdigit()
        if i == 0:
            xi = 1
        elif touching and t.isdigit() and prev_digit and rng.random() < 0.5:
            xi = _touching_offset(line, g, top, x, 1.0, h)
        else:
            xi = int(round(x + rng.uniform(0.05, 0.35) * h))
        xi = max(0, xi)
        region = line[top:bottom, xi:xi + gw]
        np.maximum(region, g[:, : region.shape[1]], out=region)
        if t.isdigit():
            boxes.append((xi, top, min(gw, region.shape[1]), gh))
        x = max(x, xi + gw)
    return line[:, : int(x) + 2], boxes


_MARK_RAISE = {"-": 0.45, "=": 0.4, "/": 0.0, "'": 0.75, "$": -0.05, "*": 0.35, "#": 0.0}


def _mark(ch: str, h: float, stroke: float, rng: np.random.Generator) -> np.ndarray:
    """A handwritten separator or sign as float ink, cropped to its strokes."""
    width = max(1, int(round(h / 10 + stroke * h / 40)))
    size = int(h) + 2 * width + 2
    canvas = np.zeros((size, size), np.float32)

    def stroke_(p, q):
        cv2.line(canvas, (int(p[0] * h) + width, int(p[1] * h) + width), (int(q[0] * h) + width,
                 int(q[1] * h) + width), 1.0, width, cv2.LINE_AA)

    j = lambda: rng.uniform(-0.04, 0.04)  # noqa: E731 - a hand's wobble
    if ch == ".":
        cv2.circle(canvas, (width + 2, size - width - 2), max(1, int(width * rng.uniform(0.7, 1.2))), 1.0, -1,
                   cv2.LINE_AA)
    elif ch == ",":
        stroke_((0.12, 0.82 + j()), (0.05, 1.0))
    elif ch == "'":
        stroke_((0.1, 0.0), (0.05, 0.22 + j()))
    elif ch == "-":
        stroke_((0.0, 0.5 + j()), (rng.uniform(0.3, 0.6), 0.5 + j()))
    elif ch == "=":
        w = rng.uniform(0.3, 0.6)
        stroke_((0.0, 0.4 + j()), (w, 0.4 + j()))
        stroke_((0.0, 0.62 + j()), (w, 0.62 + j()))
    elif ch == "/":
        stroke_((0.45, 0.1), (0.05, 1.0))
    elif ch == "$":
        u8 = np.zeros((size, size), np.uint8)
        cv2.putText(u8, "$", (width, size - width - 2), cv2.FONT_HERSHEY_SCRIPT_SIMPLEX, h / 30, 255, width,
                    cv2.LINE_AA)
        canvas = u8.astype(np.float32) / 255
    elif ch == "*":
        for a in (0.0, 60.0, 120.0):
            c, s = np.cos(np.deg2rad(a)) * 0.2, np.sin(np.deg2rad(a)) * 0.2
            stroke_((0.25 - c, 0.3 - s), (0.25 + c, 0.3 + s))
    elif ch == "#":
        stroke_((0.15, 0.15), (0.1, 0.85))
        stroke_((0.4, 0.15), (0.35, 0.85))
        stroke_((0.0, 0.4), (0.5, 0.4))
        stroke_((0.0, 0.62), (0.5, 0.62))
    rows, cols = np.flatnonzero(canvas.max(1) > 0.2), np.flatnonzero(canvas.max(0) > 0.2)
    if rows.size == 0:
        return np.zeros((1, 1), np.float32)
    return canvas[rows[0]:rows[-1] + 1, cols[0]:cols[-1] + 1]


def _paper(shape: tuple[int, int], tint: bool, rng: np.random.Generator) -> np.ndarray:
    """Paper brightness: white-ish, or a tinted paper's darker, blotchy grey."""
    hh, ww = shape
    base = rng.uniform(140, 210) if tint else rng.uniform(200, 248)
    amplitude = rng.uniform(4, 14) if tint else rng.uniform(1, 5)
    coarse = rng.normal(0, 1, (max(2, hh // 12), max(2, ww // 12))).astype(np.float32)
    return base + amplitude * cv2.resize(coarse, (ww, hh), interpolation=cv2.INTER_CUBIC) \
        + rng.normal(0, 0.5, shape).astype(np.float32)


def _guilloche(shape: tuple[int, int], rng: np.random.Generator) -> np.ndarray:
    """Darkness (0..1) of a printed pattern of fine wavy lines: one or two families of sinusoids."""
    hh, ww = shape
    out = np.zeros(shape, np.float32)
    xs = np.arange(ww, dtype=np.float32)
    for _ in range(int(rng.integers(1, 3))):
        spacing = rng.uniform(2.5, 7.0)
        amp, wavelength, phase = rng.uniform(1, 0.4 * hh), rng.uniform(20, 120), rng.uniform(0, 2 * np.pi)
        tone = rng.uniform(0.15, 0.5)
        layer = np.zeros(shape, np.float32)
        for y0 in np.arange(-amp - spacing, hh + amp + spacing, spacing):
            ys = y0 + amp * np.sin(2 * np.pi * xs / wavelength + phase + 0.15 * y0)
            points = np.stack([xs, ys], 1).round().astype(np.int32)[None]
            cv2.polylines(layer, points, False, 1.0, 1, cv2.LINE_AA)
        out = np.maximum(out, tone * layer)
    return out


def _hatching(shape: tuple[int, int], rng: np.random.Generator) -> np.ndarray:
    """Darkness (0..1) of fine parallel printed lines at one angle."""
    hh, ww = shape
    layer = np.zeros(shape, np.float32)
    spacing, angle = rng.uniform(3, 8), rng.uniform(20, 160)
    dx, dy = np.cos(np.deg2rad(angle)), np.sin(np.deg2rad(angle))
    reach = hh + ww
    for off in np.arange(-reach, reach, spacing):
        cx, cy = ww / 2 + off * dy, hh / 2 - off * dx
        cv2.line(layer, (int(cx - reach * dx), int(cy - reach * dy)), (int(cx + reach * dx), int(cy + reach * dy)),
                 1.0, 1, cv2.LINE_AA)
    return rng.uniform(0.15, 0.45) * layer


def _rules(shape: tuple[int, int], ink_x: tuple[int, int], top: int, bottom: int, h: float,
           rng: np.random.Generator) -> np.ndarray:
    """Darkness (0..1) of a table's ruling lines: the cell's horizontal borders, a vertical border beside
    the number and often one through it (a column line the number was written across)."""
    hh, ww = shape
    layer = np.zeros(shape, np.float32)
    thick = int(rng.integers(1, 4))
    for y in (int(rng.uniform(0, max(1, top))), int(rng.uniform(min(bottom, hh - 1), hh))):
        if rng.random() < 0.8:
            cv2.line(layer, (0, y), (ww, y + int(rng.integers(-2, 3))), 1.0, thick, cv2.LINE_AA)
    verticals = []
    if rng.random() < 0.8:  # beside: in the margin left or right of the number
        verticals.append(int(rng.uniform(0, max(1, ink_x[0]))) if rng.random() < 0.5
                         else int(rng.uniform(min(ink_x[1], ww - 1), ww)))
    if rng.random() < 0.6:  # through the number
        verticals.append(int(rng.uniform(*ink_x)))
    for x in verticals:
        cv2.line(layer, (x, 0), (x + int(rng.integers(-2, 3)), hh), 1.0, thick, cv2.LINE_AA)
    return rng.uniform(0.4, 0.85) * layer


def _box(shape: tuple[int, int], ink: tuple[int, int, int, int], rng: np.random.Generator) -> np.ndarray:
    """Darkness (0..1) of a printed box around the number (x0, y0, x1, y1): each side somewhere between
    the ink and the crop's edge or just beyond it (then cut off), sometimes touching the writing."""
    hh, ww = shape
    x0, y0, x1, y1 = ink
    layer = np.zeros(shape, np.float32)
    left, right = int(rng.uniform(-0.1 * x0 - 3, x0 + 2)), int(rng.uniform(x1 - 2, ww + 0.1 * (ww - x1) + 3))
    top, bottom = int(rng.uniform(-0.3 * y0 - 2, y0 + 2)), int(rng.uniform(y1 - 2, hh + 0.3 * (hh - y1) + 2))
    thick = int(rng.integers(1, 3))
    if rng.random() < 0.3:  # a double rule, as some cheques print it
        cv2.rectangle(layer, (left + 3, top + 3), (right - 3, bottom - 3), 1.0, 1, cv2.LINE_AA)
    cv2.rectangle(layer, (left, top), (right, bottom), 1.0, thick, cv2.LINE_AA)
    return rng.uniform(0.35, 0.9) * layer


_LABELS = ("Valor", "VALOR", "R$", "Pay", "EUR", "Betrag", "Montant", "Fr.", "Kr.", "Rs.", "Amount", "Importe",
           "Nr.", "No.", "Total", "Som", "USD", "Bedrag", "Summa")
_FONTS = (cv2.FONT_HERSHEY_SIMPLEX, cv2.FONT_HERSHEY_DUPLEX, cv2.FONT_HERSHEY_COMPLEX, cv2.FONT_HERSHEY_TRIPLEX,
          cv2.FONT_HERSHEY_PLAIN)


def _printed(h: float, rng: np.random.Generator) -> np.ndarray:
    """Darkness (0..1) of a printed label, cropped to its letters: a form's or a cheque's word for the
    amount or the number, in a printer's font, about half a digit high."""
    text = _LABELS[int(rng.integers(len(_LABELS)))]
    font = _FONTS[int(rng.integers(len(_FONTS)))] | (cv2.FONT_ITALIC if rng.random() < 0.2 else 0)
    scale = rng.uniform(0.35, 0.7) * h / 22
    thick = max(1, int(round(scale * rng.uniform(1.0, 2.2))))
    (w, th), base = cv2.getTextSize(text, font, scale, thick)
    u8 = np.zeros((th + base + 2 * thick + 2, w + 2 * thick + 2), np.uint8)
    cv2.putText(u8, text, (thick + 1, th + thick + 1), font, scale, 255, thick, cv2.LINE_AA)
    return rng.uniform(0.5, 0.95) * u8.astype(np.float32) / 255


def _place(label: np.ndarray, shape: tuple[int, int], at: str, ink: tuple[int, int, int, int],
           rng: np.random.Generator) -> np.ndarray:
    """A layer of `shape` holding the label: before the number (left, room made for it), or in the margin
    above or below it, where the crop's edge may cut it."""
    hh, ww = shape
    lh, lw = label.shape
    x0, y0, x1, y1 = ink
    if at == "left":
        x, y = int(rng.uniform(0, max(1, x0 - lw))), int(rng.uniform(y0, max(y0 + 1, y1 - lh)))
    else:  # just clear of the writing, or touching it
        x = int(rng.uniform(-0.3 * lw, max(1, ww - 0.7 * lw)))
        gap = int(rng.uniform(-0.1, 0.3) * lh)
        y = y0 - lh - gap if at == "top" else y1 + gap
    layer = np.zeros(shape, np.float32)
    ya, xa, yb, xb = max(0, y), max(0, x), min(hh, y + lh), min(ww, x + lw)
    if yb > ya and xb > xa:
        layer[ya:yb, xa:xb] = label[ya - y:yb - y, xa - x:xb - x]
    return layer


def _band(img: np.ndarray, band: int, left: bool, rng: np.random.Generator) -> np.ndarray:
    """A dark band at one side with a soft edge: the page edge, the binding's shadow or the scanner lid."""
    hh, ww = img.shape
    level = rng.uniform(10, 90)
    soft = rng.uniform(1, 0.5 * band + 1)
    x = np.arange(ww, dtype=np.float32)
    edge = band + rng.uniform(-2, 2, hh).cumsum().clip(-0.2 * band, 0.2 * band)[:, None]  # a wavering edge
    dist = (edge - x[None]) if left else (x[None] - (ww - edge))
    cover = np.clip(0.5 + dist / (2 * soft), 0, 1)
    return img * (1 - cover) + level * cover


def _wavy(canvas: np.ndarray, p: tuple[float, float], q: tuple[float, float], width: int,
          rng: np.random.Generator) -> None:
    """A handwritten stroke from p to q drawn into canvas (float ink), with a slight wave."""
    n = 12
    t = np.linspace(0, 1, n)
    xs = p[0] + (q[0] - p[0]) * t
    ys = p[1] + (q[1] - p[1]) * t + rng.uniform(0.5, 2.0) * np.sin(2 * np.pi * t * rng.uniform(0.5, 1.5))
    points = np.stack([xs, ys], 1).round().astype(np.int32)[None]
    cv2.polylines(canvas, points, False, 1.0, width, cv2.LINE_AA)


def _neighbours(canvas: np.ndarray, digits: np.ndarray, h: float, stroke: float, rng: np.random.Generator) -> None:
    """Pieces of the writing in the cells above, below or beside drawn into canvas (float ink): whole
    digits placed so that the crop's edge cuts most of each away."""
    hh, ww = canvas.shape
    for _ in range(int(rng.integers(1, 4))):
        g = _digit(digits[int(rng.integers(len(digits)))], h * rng.uniform(0.8, 1.2), rng.uniform(-0.2, 0.2), stroke)
        gh, gw = g.shape
        side = int(rng.integers(4)) if rng.random() < 0.3 else int(rng.integers(2))  # mostly above or below
        shown = rng.uniform(0.15, 0.5)  # the share of the digit inside the crop
        if side == 0:  # above: its lower part hangs in
            y, x = int(shown * gh) - gh, int(rng.uniform(-0.2 * gw, ww - 0.8 * gw))
        elif side == 1:  # below: its top reaches up
            y, x = hh - int(shown * gh), int(rng.uniform(-0.2 * gw, ww - 0.8 * gw))
        elif side == 2:  # left
            y, x = int(rng.uniform(-0.2 * gh, hh - 0.8 * gh)), int(shown * gw) - gw
        else:  # right
            y, x = int(rng.uniform(-0.2 * gh, hh - 0.8 * gh)), ww - int(shown * gw)
        y0, x0, y1, x1 = max(0, y), max(0, x), min(hh, y + gh), min(ww, x + gw)
        if y1 > y0 and x1 > x0:
            region = canvas[y0:y1, x0:x1]
            np.maximum(region, g[y0 - y:y1 - y, x0 - x:x1 - x], out=region)


def _bleed(shape: tuple[int, int], digits: np.ndarray, h: float, rng: np.random.Generator) -> np.ndarray:
    """Darkness (0..1) of writing on the page's other side seen through the paper: a few digits, mirrored,
    blurred and faint, anywhere in the field."""
    hh, ww = shape
    layer = np.zeros(shape, np.float32)
    for _ in range(int(rng.integers(1, 5))):
        g = _digit(digits[int(rng.integers(len(digits)))], h * rng.uniform(0.7, 1.3), rng.uniform(-0.3, 0.3),
                   rng.uniform(0.0, 1.0))[:, ::-1]
        gh, gw = g.shape
        y, x = int(rng.uniform(-0.5 * gh, hh - 0.5 * gh)), int(rng.uniform(-0.5 * gw, ww - 0.5 * gw))
        y0, x0, y1, x1 = max(0, y), max(0, x), min(hh, y + gh), min(ww, x + gw)
        if y1 > y0 and x1 > x0:
            np.maximum(layer[y0:y1, x0:x1], g[y0 - y:y1 - y, x0 - x:x1 - x], out=layer[y0:y1, x0:x1])
    return rng.uniform(0.12, 0.35) * cv2.GaussianBlur(layer, (0, 0), rng.uniform(0.8, 2.0))


def _spots(shape: tuple[int, int], h: float, rng: np.random.Generator) -> np.ndarray:
    """Darkness (0..1) of specks and stains: small dark dots (dirt, spattered ink) and larger pale blots
    (foxing)."""
    hh, ww = shape
    layer = np.zeros(shape, np.float32)
    for _ in range(int(rng.integers(1, 8))):
        r = max(1, int(rng.uniform(0.02, 0.08) * h))
        centre, axes = (int(rng.uniform(0, ww)), int(rng.uniform(0, hh))), (r, max(1, int(r * rng.uniform(0.5, 1.5))))
        cv2.ellipse(layer, centre, axes, rng.uniform(0, 180), 0, 360, rng.uniform(0.4, 0.9), -1, cv2.LINE_AA)
    for _ in range(int(rng.integers(0, 3))):
        r = max(2, int(rng.uniform(0.1, 0.4) * h))
        blot = np.zeros(shape, np.float32)
        cv2.circle(blot, (int(rng.uniform(0, ww)), int(rng.uniform(0, hh))), r, rng.uniform(0.1, 0.3), -1)
        layer = np.maximum(layer, cv2.GaussianBlur(blot, (0, 0), r / 2))
    return layer


def _stamp(shape: tuple[int, int], h: float, rng: np.random.Generator) -> np.ndarray:
    """Darkness (0..1) of part of a round ink stamp: a double ring and some lettering marks, unevenly inked."""
    hh, ww = shape
    layer = np.zeros(shape, np.float32)
    r = rng.uniform(1.0, 2.5) * h
    cx, cy = int(rng.uniform(0, ww)), int(rng.uniform(-0.5 * r, hh + 0.5 * r))
    thick = int(rng.integers(1, 4))
    cv2.circle(layer, (cx, cy), int(r), 1.0, thick, cv2.LINE_AA)
    cv2.circle(layer, (cx, cy), int(0.8 * r), 1.0, max(1, thick - 1), cv2.LINE_AA)
    for _ in range(int(rng.integers(4, 12))):
        a = rng.uniform(0, 2 * np.pi)
        p = (cx + 0.9 * r * np.cos(a), cy + 0.9 * r * np.sin(a))
        cv2.line(layer, (int(p[0]), int(p[1])), (int(p[0] + rng.uniform(-4, 4)), int(p[1] + rng.uniform(-4, 4))),
                 1.0, 1, cv2.LINE_AA)
    patchy = cv2.resize(rng.uniform(0.3, 1.0, (max(2, hh // 8), max(2, ww // 8))).astype(np.float32), (ww, hh))
    return layer * patchy


def _scan(img: np.ndarray, rng: np.random.Generator, paper_ink: tuple[float, float]) -> np.ndarray:
    """A cheap scanner: lower resolution, sometimes a hard black-and-white threshold (between the levels
    of paper and ink given: set for the writing, so that a dark band or stamp does not wipe the ink out),
    a streak."""
    hh, ww = img.shape
    f = rng.uniform(0.45, 0.85)
    small = cv2.resize(img, (max(1, int(ww * f)), max(1, int(hh * f))), interpolation=cv2.INTER_AREA)
    img = cv2.resize(small, (ww, hh), interpolation=cv2.INTER_LINEAR if rng.random() < 0.5 else cv2.INTER_NEAREST)
    if rng.random() < 0.3:
        paper, ink = paper_ink
        img = np.where(img > paper - rng.uniform(0.3, 0.6) * (paper - ink), 255.0, 0.0).astype(np.float32)
    if rng.random() < 0.3:  # a streak along the scan direction, light or dark
        x = int(rng.integers(0, ww))
        img[:, x:x + int(rng.integers(1, 3))] += rng.choice([-1, 1]) * rng.uniform(30, 90)
    return img


def _photo(img: np.ndarray, rng: np.random.Generator) -> tuple[np.ndarray, bytes]:
    """A phone camera: uneven light, defocus, sensor noise and JPEG -> (pixels, the JPEG file)."""
    hh, ww = img.shape
    yy, xx = np.mgrid[0:hh, 0:ww].astype(np.float32)
    angle = rng.uniform(0, 2 * np.pi)
    ramp = np.cos(angle) * xx / ww + np.sin(angle) * yy / hh
    ramp = (ramp - ramp.min()) / max(1e-6, float(ramp.max() - ramp.min()))
    img = img * (1 - rng.uniform(0, 0.4) * ramp)
    sigma = rng.uniform(0.3, 1.3)
    img = cv2.GaussianBlur(img, (0, 0), sigma)
    img = img + rng.normal(0, rng.uniform(2, 8), img.shape).astype(np.float32)
    u8 = np.clip(img, 0, 255).round().astype(np.uint8)
    jpeg = cv2.imencode(".jpg", u8, [cv2.IMWRITE_JPEG_QUALITY, int(rng.integers(35, 85))])[1].tobytes()
    return u8.astype(np.float32), jpeg
