"""Synthetic digit-string images with known labels, built from MNIST *test* digits only.

The models are trained on MNIST train, so every digit drawn here is one the model has never seen.
A sample is 1..N lines of 1..10 digits rendered like ink on paper, then put through the nuisances of
real photos and scans. Two fixed variants:

- ``EASY``: one clean-ish line with spacing variation (no touching digits, plain paper, PNG).
- ``HARD``: all the nuisances at moderate strength: several lines, touching and overlapping pairs,
  slant, skew, stroke width and scale variation, paper texture, light gradients, ruling lines or form
  boxes, specks, noise, blur, JPEG artefacts, mild perspective and some light-on-dark images.

Everything is drawn from one ``numpy.random.Generator``, so (variant, seed, index) fixes an image.
"""

from __future__ import annotations

import csv
from dataclasses import dataclass, field
from pathlib import Path

import cv2
import numpy as np


@dataclass(frozen=True)
class SynthSpec:
    name: str
    lines: tuple[int, int]  # lines per image, inclusive range
    digits: tuple[int, int]  # digits per line, inclusive range
    height: tuple[float, float]  # pixels: a digit's 20x20 MNIST box becomes height x height
    size_jitter: float  # relative, each digit's height varies by up to +-this
    gap: tuple[float, float]  # space between neighbouring digits' boxes, fraction of the height
    touch: float  # probability that a neighbouring pair touches: the right digit slides left until its
    # strokes meet the left one's by a pixel (at most 0.3 heights past the box edge: no tucking under)
    overlap: float  # probability that a neighbouring pair overlaps: as touching, then 0.1 heights further
    slant: float  # max |shear| (dx per dy) of the handwriting, per image; +-0.05 more per digit
    skew: float  # degrees, max |rotation| of the whole text
    stroke: tuple[float, float]  # change of the stroke width in MNIST pixels (MNIST strokes are ~2-3 wide)
    texture: float  # gray levels, amplitude of the paper's blotchy texture and grain
    gradient: float  # max fraction of light lost across the image (0.5: one side half as bright)
    ruling: float  # probability of ruled notebook lines under the digits
    boxes: float  # probability of a form's boxes: one printed box around each digit
    specks: int  # up to this many dark specks
    noise: tuple[float, float]  # gray levels, std of the Gaussian sensor noise
    blur: tuple[float, float]  # pixels, sigma of the Gaussian defocus
    jpeg: tuple[int, int] | None  # JPEG quality range; None: lossless
    perspective: float  # fraction of the image side each corner moves by at most
    invert: float  # probability of light ink on a dark background (chalkboard, negative scan)


EASY = SynthSpec(name="easy", lines=(1, 1), digits=(1, 10), height=(28, 64), size_jitter=0.05, gap=(0.1, 0.6),
                 touch=0.0, overlap=0.0, slant=0.0, skew=0.0, stroke=(0.0, 0.0), texture=3.0, gradient=0.0,
                 ruling=0.0, boxes=0.0, specks=0, noise=(0.0, 3.0), blur=(0.0, 0.0), jpeg=None,
                 perspective=0.0, invert=0.0)
HARD = SynthSpec(name="hard", lines=(1, 3), digits=(1, 10), height=(24, 72), size_jitter=0.15, gap=(-0.05, 0.5),
                 touch=0.10, overlap=0.05, slant=0.25, skew=3.0, stroke=(-0.5, 1.0), texture=10.0, gradient=0.5,
                 ruling=0.25, boxes=0.10, specks=6, noise=(2.0, 8.0), blur=(0.0, 1.0), jpeg=(40, 90),
                 perspective=0.03, invert=0.10)
VARIANTS = {s.name: s for s in (EASY, HARD)}


Box = tuple[int, int, int, int]  # (x, y, w, h) in pixels


@dataclass(frozen=True)
class Sample:
    image: np.ndarray  # (H, W) uint8 grayscale
    lines: tuple[str, ...]  # the digit string of each line, top to bottom
    indices: tuple[tuple[int, ...], ...]  # per line, the index of each digit in the images given
    jpeg: bytes | None  # the JPEG file when the variant compresses; image is its decoded pixels
    boxes: tuple[tuple[Box, ...], ...] = ()  # per line, each digit's box in the image (after the camera)
    nuisances: tuple[str, ...] = ()  # which of "boxes", "ruling", "touching", "overlapping", "inverted" it has
    # (digitlab.read.fields: which of fields.NUISANCES)
    raw: tuple[str, ...] = ()  # per line, what was written with separators and marks (fields); () when = lines
    # (H, W) int16, only when asked for: which digit drew each pixel's ink (k + 1 for the k-th digit, lines
    # in order; 0 for paper); where two digits overlap, the one whose ink is stronger there
    owner: np.ndarray | None = field(default=None, repr=False, compare=False)

    @property
    def text(self) -> str:
        return " ".join(self.lines)


def make_sample(digits: np.ndarray, labels: np.ndarray, spec: SynthSpec, rng: np.random.Generator,
                owners: bool = False) -> Sample:
    """One image. digits: MNIST test images (N, 28, 28) uint8 white-on-black; labels (N,). owners: also
    return Sample.owner (draws nothing more from rng, so the image is the same either way)."""
    h = rng.uniform(*spec.height)
    boxes = rng.random() < spec.boxes
    ruling = not boxes and rng.random() < spec.ruling
    slant = rng.uniform(-spec.slant, spec.slant)
    lines, texts, baselines, indices, glyph_boxes = [], [], [], [], []
    nuisances = ["boxes"] if boxes else ["ruling"] if ruling else []
    for _ in range(rng.integers(spec.lines[0], spec.lines[1] + 1)):
        n = int(rng.integers(spec.digits[0], spec.digits[1] + 1))
        picks = rng.integers(0, len(digits), n)
        ink, box_spans, digit_boxes, owner = _line(digits[picks], h, slant, spec, rng, boxed=boxes, pairs=nuisances)
        first = sum(len(t) for t in texts)
        lines.append((ink, box_spans, np.where(owner > 0, owner + first, 0).astype(np.int16)))
        glyph_boxes.append(digit_boxes)
        texts.append("".join(str(int(labels[i])) for i in picks))
        indices.append(tuple(int(i) for i in picks))

    # Stack the lines with a random indent, baselines 1.4-1.9 heights apart
    pad = rng.uniform(0.3, 1.2, 4) * h
    width = int(max(ink.shape[1] for ink, _, _ in lines) + h + pad[0] + pad[1])
    step = rng.uniform(1.4, 1.9) * h
    height = int(pad[2] + pad[3] + step * (len(lines) - 1) + 1.6 * h)
    canvas = np.zeros((height, width), np.float32)
    owner_canvas = np.zeros((height, width), np.int16)
    frames = []  # (x0, x1, top, bottom) of each box
    corners = []  # per line, each digit's box corners on the canvas
    for k, (ink, box_spans, owner) in enumerate(lines):
        top = int(pad[2] + k * step)
        left = int(pad[0] + rng.uniform(0, 0.5) * h)
        corners.append([np.float64([[left + x, top + y], [left + x + w, top + y], [left + x + w, top + y + gh],
                                    [left + x, top + y + gh]]) for x, y, w, gh in glyph_boxes[k]])
        ih, iw = ink.shape
        region = canvas[top:top + ih, left:left + iw]
        mine = owner[: region.shape[0], : region.shape[1]]
        taken = owner_canvas[top:top + ih, left:left + iw]
        taken[mine > 0] = mine[mine > 0]
        np.maximum(region, ink[: region.shape[0], : region.shape[1]], out=region)
        baselines.append(top + int(1.25 * h))
        frames += [(left + a, left + b, top + int(0.1 * h), top + int(1.45 * h)) for a, b in box_spans]

    paper = _paper(canvas.shape, spec, rng)
    ink_level = rng.uniform(0, 80)
    opacity = rng.uniform(0.85, 1.0)
    img = paper * (1 - opacity * canvas) + ink_level * opacity * canvas
    if ruling:
        # Notebook lines: lighter than the ink, the digits sit on them, they run the whole width
        tone = rng.uniform(0.25, 0.6)
        thick = int(rng.integers(1, 3))
        first = baselines[0] % max(1, int(step))
        for y in range(int(first + rng.uniform(-0.05, 0.05) * h), height, max(1, int(step))):
            img[y:y + thick] = np.minimum(img[y:y + thick], paper[y:y + thick] * (1 - tone))
    if boxes:
        tone = rng.uniform(0.4, 0.8)
        color = float(np.median(paper) * (1 - tone))
        img = np.ascontiguousarray(img)
        for x0, x1, y0, y1 in frames:
            cv2.rectangle(img, (int(x0), int(y0)), (int(x1), int(y1)), color, int(rng.integers(1, 3)))
    for _ in range(rng.integers(0, spec.specks + 1)):
        r = rng.uniform(0.6, 0.04 * h + 0.6)
        cy, cx = rng.uniform(0, height), rng.uniform(0, width)
        cv2.circle(img, (int(cx), int(cy)), int(round(r)), float(ink_level), -1)
    img, m = _camera(img, spec, rng)
    owner = cv2.warpPerspective(owner_canvas, m, img.shape[::-1], flags=cv2.INTER_NEAREST) if owners else None
    placed = tuple(tuple(_map_corners(c, m, img.shape) for c in line) for line in corners)
    if rng.random() < spec.invert:
        img = 255 - img
        nuisances.append("inverted")
    jpeg = None
    if spec.jpeg:
        quality = int(rng.integers(spec.jpeg[0], spec.jpeg[1] + 1))
        jpeg = cv2.imencode(".jpg", img, [cv2.IMWRITE_JPEG_QUALITY, quality])[1].tobytes()
        img = cv2.imdecode(np.frombuffer(jpeg, np.uint8), cv2.IMREAD_GRAYSCALE)
    return Sample(image=img, lines=tuple(texts), indices=tuple(indices), jpeg=jpeg, boxes=placed,
                  nuisances=tuple(dict.fromkeys(nuisances)), owner=owner)


def _map_corners(corners: np.ndarray, m: np.ndarray, shape: tuple[int, int]) -> Box:
    """The (x, y, w, h) box enclosing 4 canvas points after the camera's homography m, clipped to the image."""
    p = np.c_[corners, np.ones(4)] @ m.T
    p = p[:, :2] / p[:, 2:]
    x0, y0 = np.floor(p.min(0)).clip(0)
    x1, y1 = np.ceil(p.max(0)).clip(0, [shape[1], shape[0]])
    return int(x0), int(y0), int(max(0, x1 - x0)), int(max(0, y1 - y0))


def _digit(img28: np.ndarray, h: float, slant: float, stroke: float) -> np.ndarray:
    """One MNIST digit as float ink in [0, 1], scaled so its 20x20 box is h x h, slanted, cropped to its ink."""
    s = h / 20
    big = cv2.resize(img28.astype(np.float32) / 255, None, fx=s, fy=s, interpolation=cv2.INTER_CUBIC)
    big = np.clip(big, 0, 1)
    r = stroke * s / 2  # each side of the stroke moves by half the change
    if abs(r) >= 0.5:
        k = cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (2 * int(abs(r)) + 1,) * 2)
        big = cv2.dilate(big, k) if r > 0 else cv2.erode(big, k)
    if slant:
        bh, bw = big.shape
        extra = int(np.ceil(abs(slant) * bh))
        # x' = x + slant * (bottom - y): the bottom stays put, the top leans right for slant > 0
        m = np.float32([[1, -slant, slant * bh + (extra if slant < 0 else 0)], [0, 1, 0]])
        big = cv2.warpAffine(big, m, (bw + extra, bh), flags=cv2.INTER_LINEAR)
    rows, cols = np.flatnonzero(big.max(1) > 0.2), np.flatnonzero(big.max(0) > 0.2)
    if rows.size == 0:
        return np.zeros((1, 1), np.float32)
    return big[rows[0]:rows[-1] + 1, cols[0]:cols[-1] + 1]


def _line(imgs: np.ndarray, h: float, slant: float, spec: SynthSpec, rng: np.random.Generator, boxed: bool,
          pairs: list[str] | None = None) -> tuple[np.ndarray, list[tuple[float, float]], list[Box], np.ndarray]:
    """A line of digits sitting on a common baseline: float ink (about 1.6h tall), each comb box's x span,
    each digit's (x, y, w, h) box in the line and the owner of each pixel's ink (int16, k + 1 for the
    k-th digit). Touching and overlapping pairs are noted in `pairs`."""
    glyphs = []
    for img in imgs:
        hd = h * (1 + rng.uniform(-spec.size_jitter, spec.size_jitter))
        stroke = rng.uniform(*spec.stroke)
        glyphs.append(_digit(img, hd, slant + rng.uniform(-0.05, 0.05) * (spec.slant > 0), stroke))
    height = int(1.6 * h) + 2
    baseline = int(1.25 * h)
    width = int(sum(g.shape[1] for g in glyphs) + len(glyphs) * (h * max(spec.gap[1], 0.5) + 2 * h)) + 4
    line = np.zeros((height, width), np.float32)
    owner = np.zeros((height, width), np.int16)
    x = 0.0
    spans, placed = [], []
    for k, g in enumerate(glyphs):
        gh, gw = g.shape
        bottom = int(np.clip(baseline + rng.uniform(-0.05, 0.05) * h, gh, height))
        top = bottom - gh
        if k == 0:
            xi = int(0.5 * h)
        else:
            mode = rng.random()
            if boxed:  # each digit in its own box: room for the box's padding on both sides
                xi = int(x + rng.uniform(0.5, 0.8) * h)
            elif mode < spec.touch + spec.overlap:
                depth = 1.0 if mode < spec.touch else 0.1 * h
                if pairs is not None:
                    pairs.append("touching" if mode < spec.touch else "overlapping")
                xi = _touching_offset(line, g, top, x, depth, h)
            else:
                xi = int(round(x + rng.uniform(*spec.gap) * h))
        xi = max(0, xi)
        region = line[top:bottom, xi:xi + gw]
        g = g[:, : region.shape[1]]
        owner[top:bottom, xi:xi + gw][(g > 0.3) & (g >= region)] = k + 1
        np.maximum(region, g, out=region)
        placed.append((xi, top, min(gw, region.shape[1]), gh))
        if boxed:
            spans.append((xi - 0.2 * h, xi + gw + 0.2 * h))
        x = max(x, xi + gw)
    cols = np.flatnonzero(line.max(0) > 0)
    end = cols[-1] + 2 if cols.size else 2
    return line[:, :end], spans, placed, owner[:, :end]


def _touching_offset(line: np.ndarray, g: np.ndarray, top: int, right: float, depth: float, h: float) -> int:
    """x for glyph g, slid left from just after the line's ink until its strokes meet that ink and
    then `depth` pixels further; it never slides more than 0.3 h past the box edge (+ depth), so a
    narrow digit cannot tuck under its neighbour's overhang."""
    gh, gw = g.shape
    band = line[top:top + gh, : int(right) + 1] > 0.3
    mine = g > 0.3
    rows = band.any(1) & mine.any(1)
    if not rows.any():
        return int(right)
    right_edge = band.shape[1] - 1 - np.argmax(band[:, ::-1], 1)  # rightmost ink per row
    left_edge = np.argmax(mine, 1)  # leftmost ink per row of the glyph
    contact = int(np.max(right_edge[rows] - left_edge[rows]) + 1)
    return int(max(contact, right - 0.3 * h) - depth)


def _paper(shape: tuple[int, int], spec: SynthSpec, rng: np.random.Generator) -> np.ndarray:
    """Paper brightness (H, W) float: base tone, blotchy texture, grain and a light gradient."""
    hh, ww = shape
    base = rng.uniform(185, 245)
    coarse = rng.normal(0, 1, (max(2, hh // 24), max(2, ww // 24))).astype(np.float32)
    blotches = cv2.resize(coarse, (ww, hh), interpolation=cv2.INTER_CUBIC)
    grain = rng.normal(0, 0.4, shape).astype(np.float32)
    paper = base + spec.texture * (blotches + grain)
    if spec.gradient:
        drop = rng.uniform(0, spec.gradient)
        angle = rng.uniform(0, 2 * np.pi)
        yy, xx = np.mgrid[0:hh, 0:ww].astype(np.float32)
        ramp = np.cos(angle) * xx / ww + np.sin(angle) * yy / hh
        ramp = (ramp - ramp.min()) / max(1e-6, float(ramp.max() - ramp.min()))
        paper = paper * (1 - drop * ramp)
    return paper


def _camera(img: np.ndarray, spec: SynthSpec, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """Skew, mild perspective, defocus and sensor noise -> (uint8 image, 3x3 homography applied)."""
    hh, ww = img.shape
    m = np.eye(3)
    if spec.skew or spec.perspective:
        src = np.float32([[0, 0], [ww, 0], [ww, hh], [0, hh]])
        jitter = rng.uniform(-spec.perspective, spec.perspective, (4, 2)) * np.float32([ww, hh]) \
            if spec.perspective else np.zeros((4, 2))
        angle = np.deg2rad(rng.uniform(-spec.skew, spec.skew))
        c, s = np.cos(angle), np.sin(angle)
        centre = np.float32([ww / 2, hh / 2])
        dst = (src - centre) @ np.float32([[c, s], [-s, c]]) + centre + jitter.astype(np.float32)
        m = cv2.getPerspectiveTransform(src, dst.astype(np.float32))
        img = cv2.warpPerspective(img, m, (ww, hh), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE)
    sigma = rng.uniform(*spec.blur)
    if sigma > 0.3:
        img = cv2.GaussianBlur(img, (0, 0), sigma)
    img = img + rng.normal(0, rng.uniform(*spec.noise), img.shape).astype(np.float32)
    return np.clip(img, 0, 255).round().astype(np.uint8), m


def line_ink(glyphs: list[np.ndarray], height: float = 48.0, gaps: list[float | None] | None = None,
             margin: float = 0.8) -> np.ndarray:
    """One line of digits as float ink in [0, 1] (0: paper). glyphs: MNIST 28x28 uint8 images;
    gaps[i]: the space before digit i + 1 in text heights, or None to make that pair touch (the right
    digit slides left until its strokes meet the left one's); margin: in text heights, all round."""
    gaps = list(gaps) if gaps is not None else [0.3] * (len(glyphs) - 1)
    inks = [_digit(g, height, 0.0, 0.0) for g in glyphs]
    line_h = int(1.6 * height) + 2
    baseline = int(1.25 * height)
    line = np.zeros((line_h, int(sum(g.shape[1] for g in inks) + height * (len(inks) + 2))), np.float32)
    x = 0.0
    for k, g in enumerate(inks):
        gh, gw = g.shape
        top = baseline - gh
        if k == 0:
            xi = int(0.3 * height)
        elif gaps[k - 1] is None:
            xi = _touching_offset(line, g, top, x, 1.0, height)
        else:
            xi = int(round(x + gaps[k - 1] * height))
        region = line[top:baseline, xi:xi + gw]
        np.maximum(region, g[:, : region.shape[1]], out=region)
        x = max(x, xi + gw)
    return np.pad(line[:, : int(x) + 2], int(margin * height))


def render(glyphs: list[np.ndarray], height: float = 48.0, gaps: list[float | None] | None = None,
           margin: float = 0.8, paper: float = 235.0, ink: float = 25.0) -> np.ndarray:
    """line_ink drawn dark on plain paper (uint8), for tests and examples."""
    canvas = line_ink(glyphs, height, gaps, margin)
    return np.clip(paper - (paper - ink) * canvas, 0, 255).round().astype(np.uint8)


def load_test_digits(data_dir: str | Path | None = None) -> tuple[np.ndarray, np.ndarray]:
    """MNIST *test* images (10000, 28, 28) uint8 and labels: the only digits the benchmark draws from,
    since the models are trained on MNIST train."""
    from digitlab.data import load_dataset

    test = load_dataset("mnist", "test", data_dir=data_dir)
    return test.images.numpy(), test.labels.numpy()


def run_digits(run: str | Path, part: str = "test", data_dir: str | Path | None = None,
               ) -> tuple[np.ndarray, np.ndarray]:
    """The digits of one part ("train", "val" or "test") of a training run's split (RUN/config.json and
    RUN/splits.npz), as its model saw them: uint8 (N, 28, 28) white on black, labels (N,)."""
    import json

    from digitlab.data import load_dataset
    from digitlab.errors import ConfigError

    run = Path(run)
    try:
        cfg = json.loads((run / "config.json").read_text())
        indices = np.load(run / "splits.npz")[part]
    except (OSError, KeyError, ValueError) as e:
        raise ConfigError(f"{run}: not a training run with a {part} split (config.json, splits.npz): {e}") from e
    split = cfg.get("train_split", "train")
    if part == "test" and cfg.get("test_split"):  # else a 3-way split of the train split
        split = cfg["test_split"]
    data = load_dataset(cfg["dataset"], split, data_dir=data_dir if data_dir is not None else cfg.get("data_dir"))
    return data.images.numpy()[indices], data.labels.numpy()[indices]


def held_out_digits(run: str | Path, data_dir: str | Path | None = None) -> tuple[np.ndarray, np.ndarray]:
    """A training run's test digits: images its model neither trained on nor was selected on, in its own
    script, so that strings drawn from them measure reading with that model (TibetanMNIST has no
    official test split: a run's 3-way split holds one out)."""
    return run_digits(run, "test", data_dir)


def training_digits(run: str | Path = "", data_dir: str | Path | None = None) -> tuple[str, np.ndarray, np.ndarray]:
    """(dataset, digits (N, 28, 28) uint8, labels) that the reader's own models (the verifier, the line
    reader) learn from: a training run's own training digits (so that a TibetanMNIST or Kannada-MNIST
    model gets helpers of its script), else MNIST train."""
    import json

    from digitlab.data import load_dataset

    if run:
        digits, labels = run_digits(run, "train", data_dir)
        return json.loads((Path(run) / "config.json").read_text())["dataset"], digits, labels
    train = load_dataset("mnist", "train", data_dir=data_dir)
    return "mnist", train.images.numpy(), train.labels.numpy()


def generate(digits: np.ndarray, labels: np.ndarray, spec: SynthSpec, n: int, seed: int,
             owners: bool = False) -> list[Sample]:
    rng = np.random.default_rng(seed)
    return [make_sample(digits, labels, spec, rng, owners) for _ in range(n)]


def write_benchmark(folder: str | Path, digits: np.ndarray, labels: np.ndarray, spec: SynthSpec, n: int,
                    seed: int) -> Path:
    """Write n images and labels.csv (filename,string; lines separated by a space) into folder."""
    return write_samples(folder, generate(digits, labels, spec, n, seed), spec.name, seed)


def write_samples(folder: str | Path, samples: list[Sample], name: str, seed: int) -> Path:
    """Write the samples' images (JPEG when they were compressed, else PNG) and labels.csv (filename,string;
    lines separated by a space) into folder, for `digitlab eval-read`."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    rows = []
    for i, sample in enumerate(samples):
        file = f"{name}-{seed}-{i:04d}{'.jpg' if sample.jpeg else '.png'}"
        if sample.jpeg:
            (folder / file).write_bytes(sample.jpeg)
        else:
            cv2.imwrite(str(folder / file), sample.image)
        rows.append((file, sample.text))
    with open(folder / "labels.csv", "w", newline="") as f:
        csv.writer(f).writerows([("filename", "string"), *rows])
    return folder / "labels.csv"
