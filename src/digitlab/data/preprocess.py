"""The image pipeline: any digit image -> 28x28 uint8 the MNIST way -> model input.

``digit_input`` is the one path from pixels to the 28x28 image a model sees: one polarity detector
(``ink_is_dark``), one contrast rule (``ink_contrast``) and one geometry (``mnist_style``), with the
thresholds below. ``predict`` (through ``load_image``/``read_digit``), the datasets that are not already
28x28 MNIST-style (Tibetan JPEGs, USPS, sklearn digits) and the reader's crops all go through it; a
caller that already knows the polarity, or has already flattened the ink, says so instead of having a
rule of its own. Training and inference both turn uint8 images into model input with
``to_model_input`` alone.
"""

from __future__ import annotations

from dataclasses import dataclass
from os import PathLike
from pathlib import Path

import cv2
import numpy as np
import torch
from PIL import Image, ImageOps

from digitlab.errors import DatasetError

CANVAS = 28  # output side, pixels
BOX = 20  # the digit is scaled to fit a BOX x BOX square, as in MNIST
INK_THRESHOLD = 32  # 0..255 after the contrast rule: brighter pixels are ink (bounding box, digit count)
MIN_CONTRAST = 24  # 0..255: ink must be this much brighter than the background, or the image is blank
BORDER = 0.05  # fraction of each side read as the background
NOISE_SIGMAS = 3.0  # the border's noise (grain, JPEG) up to this many robust std (1.4826 MAD) goes to 0 ...
NOISE_FLOOR = 0.15  # ... but never more than this fraction of the ink contrast
CORE_PERCENTILE = 90  # this percentile of the ink's pixels is its core, full ink (255) as in MNIST's strokes
# Several digits, a cheap screen (count_digits): the ink falls into groups side by side (more than
# DIGIT_GAP x the ink's height apart), and at least two groups hold a stroke DIGIT_HEIGHT x as tall as the
# tallest one and DIGIT_MASS x the ink of the heaviest group, or one group is more than DIGIT_WIDE x as
# wide as tall (touching digits, a ruling line through them). A 5 whose bar floats, a 4 in two strokes, a
# speck or a stray line stay one digit: none of the 10,000 MNIST test digits is screened, as they are or
# 4x. MNIST digits side by side 4 px apart (0.2 of their height) are screened in 99% of 500 strings of
# two and of three, 3 px apart in 23% and 7%. What the screen flags, predict has the reader count: of
# Kannada-MNIST's 10,000 test digits 142 are flagged and the bundled
# reader counts several in 92.
DIGIT_GAP = 0.15
DIGIT_HEIGHT = 0.6
DIGIT_MASS = 0.2
DIGIT_WIDE = 2.5  # a group wider than this x its height holds two digits at least (MNIST test: at most 2.05)


@dataclass(frozen=True)
class Normalization:
    """Per-pixel mean and std on the [0, 1] pixel scale, computed on a training split."""

    mean: float
    std: float


def to_unit(images: torch.Tensor) -> torch.Tensor:
    """uint8 (N, H, W), (N, 1, H, W) or one (H, W) image -> float32 (N, 1, H, W) in [0, 1]."""
    if images.dtype != torch.uint8:
        raise ValueError(f"to_unit expects uint8 images, got {images.dtype} (already scaled?)")
    if images.dim() == 2:
        images = images[None, None]
    elif images.dim() == 3:
        images = images[:, None]
    elif images.dim() != 4 or images.shape[1] != 1:
        raise ValueError(f"to_unit expects (N, H, W) or (N, 1, H, W) images, got shape {tuple(images.shape)}")
    return images.to(torch.float32).div_(255.0)


def normalize(x01: torch.Tensor, norm: Normalization) -> torch.Tensor:
    return (x01 - norm.mean) / norm.std


def to_model_input(images_uint8: torch.Tensor, norm: Normalization) -> torch.Tensor:
    """THE preprocessing shared by training, evaluation and prediction: uint8 -> normalised (N, 1, H, W)."""
    return normalize(to_unit(images_uint8), norm)


def mnist_style(gray: np.ndarray) -> np.ndarray:
    """White-on-black uint8 (H, W) of any size -> (28, 28) uint8, as MNIST was made.

    Crop to the ink bounding box, scale (antialiased, aspect kept) to fit 20x20, paste into
    28x28 so that the centre of mass lands on pixel (14, 14) (real MNIST: 13.99, 14.00).
    """
    a = np.asarray(gray)
    if a.ndim != 2 or a.dtype != np.uint8:
        raise DatasetError(f"mnist_style expects a 2-D uint8 image, got {a.dtype} of shape {a.shape}")
    ink = a > INK_THRESHOLD
    rows, cols = np.flatnonzero(ink.any(1)), np.flatnonzero(ink.any(0))
    if rows.size == 0:
        raise DatasetError(f"blank image ({a.shape[0]}x{a.shape[1]}): no pixel brighter than {INK_THRESHOLD}")
    crop = a[rows[0] : rows[-1] + 1, cols[0] : cols[-1] + 1]
    h, w = crop.shape
    s = BOX / max(h, w)
    nh, nw = max(1, round(h * s)), max(1, round(w * s))
    # Lanczos antialiases when shrinking; bilinear avoids ringing when enlarging (8x8 digits, USPS)
    resample = Image.Resampling.LANCZOS if s < 1 else Image.Resampling.BILINEAR
    patch = np.asarray(Image.fromarray(crop).resize((nw, nh), resample))
    mass = patch.astype(np.float64)
    total = mass.sum()
    if total == 0:  # everything faded away when shrinking a few isolated pixels
        cy, cx = (nh - 1) / 2, (nw - 1) / 2
    else:
        cy = (mass.sum(1) @ np.arange(nh)) / total
        cx = (mass.sum(0) @ np.arange(nw)) / total
    centre = CANVAS // 2
    y0 = min(max(round(centre - cy), 0), CANVAS - nh)
    x0 = min(max(round(centre - cx), 0), CANVAS - nw)
    out = np.zeros((CANVAS, CANVAS), np.uint8)
    out[y0 : y0 + nh, x0 : x0 + nw] = patch
    return out


def digit_input(gray: np.ndarray, dark_ink: bool | None = None, flat: bool = False) -> np.ndarray:
    """THE way pixels become a model's 28x28 uint8 input: any (H, W) uint8 gray image of one digit ->
    white on black (the polarity from ink_is_dark unless dark_ink says it), its contrast by ink_contrast
    (background and noise at 0, the ink's core at 255), a large digit brought near the box (near_box),
    then mnist_style.

    flat=True: the caller has already brought the ink to the contrast rule's scale, background 0 (the
    reader's crops, made by ink_contrast from its flattened page) or keeps a dataset's own pixel values
    (TibetanMNIST, USPS, sklearn digits, like MNIST's); only the polarity and mnist_style are applied."""
    if flat:
        return mnist_style(255 - gray if (ink_is_dark(gray) if dark_ink is None else dark_ink) else gray)
    return mnist_style(near_box(white_on_black(gray, dark_ink)))


def load_image(src: str | PathLike | Image.Image | np.ndarray) -> np.ndarray:
    """One digit image (file of any format/size, PIL image or array; either polarity) -> (28, 28) uint8."""
    return read_digit(src)[0]


def read_digit(src: str | PathLike | Image.Image | np.ndarray) -> tuple[np.ndarray, int]:
    """An image meant to hold one digit -> (its (28, 28) uint8 model input, the number of digits it seems
    to hold: count_digits of the same white-on-black image)."""
    name = str(src) if isinstance(src, (str, PathLike)) else f"<{type(src).__name__} image>"
    gray = _read_gray(src, name)
    try:
        white = white_on_black(gray)
        return mnist_style(near_box(white)), count_digits(white)  # = digit_input(gray), white made once
    except DatasetError as e:
        raise DatasetError(f"{name}: {e}") from None


def near_box(white: np.ndarray) -> np.ndarray:
    """A white-on-black image whose ink is k >= 2 times the BOX size, shrunk by that whole factor k
    (Lanczos) first, as the reader halves a page towards its text height: the final resample in
    mnist_style then starts from near the MNIST grid. MNIST test digits saved 4x larger (bicubic) are read
    as evaluation reads them 99.92% of the time with it, 99.89% without (median logit change 0.08
    against 0.12)."""
    ink = white > INK_THRESHOLD
    rows, cols = np.flatnonzero(ink.any(1)), np.flatnonzero(ink.any(0))
    if rows.size == 0:
        return white  # (mnist_style says it is blank)
    k = max(rows[-1] - rows[0] + 1, cols[-1] - cols[0] + 1) // BOX
    if k < 2:
        return white
    h, w = white.shape
    return np.asarray(Image.fromarray(white).resize((max(1, w // k), max(1, h // k)), Image.Resampling.LANCZOS))


def _read_gray(src, name: str) -> np.ndarray:
    if isinstance(src, np.ndarray):
        return array_gray(src, name)
    if isinstance(src, Image.Image):
        return pil_gray(ImageOps.exif_transpose(src))
    path = Path(src)
    if not path.is_file():
        raise DatasetError(f"{path}: no such image file")
    try:
        with Image.open(path) as img:
            img.load()
            return pil_gray(ImageOps.exif_transpose(img))
    except Exception as e:  # noqa: BLE001 - PIL decoders raise many types; all mean "unreadable"
        what = "not an image file" if isinstance(e, Image.UnidentifiedImageError) else f"unreadable image ({e})"
        raise DatasetError(f"{path}: {what}".replace("\n", " ")) from None


def array_gray(a: np.ndarray, name: str) -> np.ndarray:
    """(H, W) gray or (H, W, 3|4) colour array of any numeric type -> (H, W) uint8."""
    if a.ndim == 3 and a.shape[2] in (3, 4):
        return pil_gray(Image.fromarray(np.clip(a, 0, 255).astype(np.uint8)))
    if a.ndim != 2:
        raise DatasetError(f"{name}: expected an (H, W) or (H, W, 3|4) array, got shape {a.shape}")
    if a.dtype == np.uint8:
        return a
    a = a.astype(np.float64)
    if a.max(initial=0) <= 1.0:  # [0, 1] floats or bools
        a = a * 255.0
    return np.clip(a, 0, 255).round().astype(np.uint8)


def pil_gray(img: Image.Image) -> np.ndarray:
    """A PIL image of any mode (16-bit and float included) -> (H, W) uint8 gray."""
    if img.mode in ("I", "F") or img.mode.startswith("I;16"):  # 16-bit / float: stretch to 8 bits
        a = np.asarray(img, dtype=np.float64)
        lo, hi = a.min(), a.max()
        return np.zeros(a.shape, np.uint8) if hi == lo else ((a - lo) * (255.0 / (hi - lo))).round().astype(np.uint8)
    if img.mode in ("RGBA", "LA", "PA") or "transparency" in img.info:
        # Flatten onto the background that contrasts with the strokes (dark ink on transparent -> white)
        rgba = img.convert("RGBA")
        lum = np.asarray(rgba.convert("L"), dtype=np.float64)
        alpha = np.asarray(rgba.getchannel("A"), dtype=np.float64) / 255.0
        opaque = alpha > 0.5
        bg = 0.0 if opaque.any() and np.median(lum[opaque]) > 127 else 255.0
        return (lum * alpha + bg * (1.0 - alpha)).round().astype(np.uint8)
    return np.asarray(img.convert("L"))


def white_on_black(gray: np.ndarray, dark_ink: bool | None = None) -> np.ndarray:
    """(H, W) uint8 gray of either polarity -> uint8 white ink on black by the one polarity detector and
    the one contrast rule. The background is the border's median; its noise (NOISE_SIGMAS times the
    border's robust spread, which ink touching the border hardly moves; at most NOISE_FLOOR of the
    contrast) is clipped to 0; the ink's core is taken from the pixels above INK_THRESHOLD of the
    contrast. A clean image (an MNIST digit as it is or enlarged) keeps its background at 0 and its
    ink, brightened only as far as its core lies below 255."""
    if dark_ink is None:
        dark_ink = ink_is_dark(gray)
    g = (255 - gray if dark_ink else gray).astype(np.float32)
    h, w = g.shape
    bh, bw = max(1, round(BORDER * h)), max(1, round(BORDER * w))
    border = np.concatenate([g[:bh].ravel(), g[-bh:].ravel(), g[:, :bw].ravel(), g[:, -bw:].ravel()])
    bg, hi = float(np.median(border)), float(g.max())
    if hi - bg < MIN_CONTRAST:
        raise DatasetError(f"blank image ({h}x{w}): ink is at most {hi - bg:.0f} levels above the background")
    noise = NOISE_SIGMAS * 1.4826 * float(np.median(np.abs(border - bg)))
    lo = bg + min(noise, NOISE_FLOOR * (hi - bg))
    ink = g - lo > (INK_THRESHOLD / 255) * (hi - lo)
    return (ink_contrast(g, lo, ink) * 255).round().astype(np.uint8)


def ink_contrast(g: np.ndarray, background: float, ink: np.ndarray) -> np.ndarray:
    """THE contrast rule: float gray (ink bright) -> [0, 1], `background` at 0 and the ink's core, the
    CORE_PERCENTILE-th percentile of the pixels `ink` (bool, g's shape) marks, at 1; g's float dtype kept.
    white_on_black gives it the border's background and its own binarization; the reader gives it its
    flattened page (background 0) and a digit's binarized pixels."""
    core = percentile(g[ink], CORE_PERCENTILE) if ink.any() else float(g.max())
    return np.clip((g - background) / max(core - background, 1e-3), 0, 1)


def ink_is_dark(gray: np.ndarray) -> bool:
    """THE polarity detector, of single digits and of the reader's pages alike: True for dark ink on light
    paper. Ink is sparse, so after removing the smooth background the few ink pixels form a long tail on
    one side: negative skewness means dark ink. (Right for all 10,000 MNIST test digits as they are,
    inverted and 4x, and for every sklearn digit.)"""
    small = shrink_to(gray, 256).astype(np.float32)
    h, w = small.shape
    coarse = cv2.resize(small, (max(1, w // 8), max(1, h // 8)), interpolation=cv2.INTER_AREA)
    hp = small - cv2.resize(cv2.GaussianBlur(coarse, (0, 0), 2), (w, h), interpolation=cv2.INTER_LINEAR)
    d = hp - hp.mean()
    std = d.std()
    if std < 1e-3:
        return True  # blank: either answer reads nothing
    skew = float((d * d * d).mean() / std**3)  # (d**3 takes numpy's pow: 4 ms on 256x256, this 0.04)
    if abs(skew) > 0.2:
        return skew < 0
    # Almost symmetric (ink covering about half the image): fall back on the border being paper
    border = np.concatenate([small[0], small[-1], small[:, 0], small[:, -1]])
    return float(np.median(border)) > float(np.median(small))


def count_digits(white: np.ndarray) -> int:
    """How many digits a white-on-black uint8 image seems to hold (0 for no ink): its ink (> INK_THRESHOLD)
    as connected components, merged into groups that overlap or lie within DIGIT_GAP x the ink's height
    of each other left to right; a group is a digit when its tallest component is DIGIT_HEIGHT x the
    tallest of all and its ink (the sum of its pixels) DIGIT_MASS x the heaviest group's, and two at
    least when it is more than DIGIT_WIDE x as wide as that component is tall (digits that touch, or a
    ruling line that joins them). A cheap screen: `predict` asks the reader for the count when it says 2+."""
    n, labels, stats, _ = cv2.connectedComponentsWithStats((white > INK_THRESHOLD).astype(np.uint8), connectivity=8)
    if n < 2:
        return 0
    mass = np.bincount(labels.ravel(), weights=white.ravel(), minlength=n)[1:]
    stats = stats[1:]
    height = (stats[:, 1] + stats[:, 3]).max() - stats[:, 1].min()
    groups: list[list[float]] = []  # [left edge, right edge, mass, tallest component]
    for k in np.argsort(stats[:, 0], kind="stable"):
        x, _, w, h, _ = stats[k]
        if groups and x <= groups[-1][1] + DIGIT_GAP * height:
            g = groups[-1]
            g[1], g[2], g[3] = max(g[1], x + w), g[2] + mass[k], max(g[3], h)
        else:
            groups.append([x, x + w, mass[k], h])
    tallest, heaviest = max(g[3] for g in groups), max(g[2] for g in groups)
    digits = [g for g in groups if g[3] >= DIGIT_HEIGHT * tallest and g[2] >= DIGIT_MASS * heaviest]
    return sum(2 if g[1] - g[0] > DIGIT_WIDE * g[3] else 1 for g in digits)


def percentile(x: np.ndarray, q: float) -> float:
    """np.percentile(x, q) (its default, linear interpolation: the same value) for a 1-D array, by a
    partial sort: some 30 times faster on the few hundred pixels of a digit."""
    v = q / 100 * (x.size - 1)
    lo = int(v)
    if lo + 1 >= x.size:
        return float(x.max())
    t = v - lo
    part = np.partition(x, [lo, lo + 1])
    a, b = part[lo], part[lo + 1]
    return float(a + (b - a) * t if t < 0.5 else b - (b - a) * (1 - t))


def shrink_to(a: np.ndarray, side: int) -> np.ndarray:
    """Shrink (area averaging) so the short side is at most `side` px."""
    h, w = a.shape
    f = side / min(h, w)
    if f >= 1:
        return a
    return cv2.resize(a, (max(1, round(w * f)), max(1, round(h * f))), interpolation=cv2.INTER_AREA)
