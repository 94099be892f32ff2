"""From an image file to a clean binary ink mask: loading, polarity, flat-fielding, a stroke-width
top-hat, binarization, deskew, ruling-line and form-box removal, slant correction.

Everything here is numpy + OpenCV; no model is involved. The result (``Page``) keeps the geometry
that maps its pixels back to the original image, so boxes can be reported in the user's coordinates.
"""

from __future__ import annotations

import functools
import io
import math
import re
import warnings
from dataclasses import dataclass
from os import PathLike
from pathlib import Path

import cv2
import numpy as np
from PIL import Image, ImageOps

from digitlab.data.preprocess import array_gray, ink_is_dark, pil_gray, shrink_to
from digitlab.errors import DatasetError
from digitlab.read.config import ReadConfig
from digitlab.read.errors import ReadError


@dataclass
class Page:
    """One image ready for segmentation; ink, mask and lines share the corrected ("work") geometry."""

    source: str
    size: tuple[int, int]  # (width, height) of the original image, EXIF orientation applied
    ink: np.ndarray  # (H, W) float32 in [0, 1]: fraction of the paper's light the ink absorbs
    mask: np.ndarray  # (H, W) uint8 0/1: ink after ruling lines and boxes were removed
    ruling: np.ndarray  # (H, W) uint8 0/1: the removed ruling lines and box sides
    to_work: np.ndarray  # (3, 3) homography: original pixel coordinates -> work coordinates
    dark_ink: bool  # True: dark ink on light paper (False: light on dark, inverted)
    text_height: float  # px in work coordinates: median height of the ink components
    stroke_width: float  # px in work coordinates
    skew: float  # degrees of rotation removed
    slant: float  # dx/dy of the shear removed
    binarization: str

    def to_original(self, box: tuple[float, float, float, float]) -> tuple[int, int, int, int]:
        """(x, y, w, h) in work coordinates -> the enclosing (x, y, w, h) in the original image."""
        return _map_box(box, self.from_work, self.size)

    @functools.cached_property
    def from_work(self) -> np.ndarray:
        """(3, 3) homography: work coordinates -> original pixel coordinates."""
        return np.linalg.inv(self.to_work)

    def to_work_box(self, box: tuple[float, float, float, float]) -> tuple[int, int, int, int]:
        """(x, y, w, h) in the original image -> the enclosing (x, y, w, h) in work coordinates."""
        return _map_box(box, self.to_work, self.mask.shape[::-1])


def _map_box(box: tuple[float, float, float, float], m: np.ndarray, size: tuple[int, int]) -> tuple[int, int, int, int]:
    """The box enclosing the image of `box` under the 3x3 matrix m, clipped to size (w, h)."""
    x, y, w, h = box
    corners = np.float64([[x, y, 1], [x + w, y, 1], [x + w, y + h, 1], [x, y + h, 1]]) @ m.T
    corners = corners[:, :2] / corners[:, 2:]
    x0, y0 = (max(0, int(v)) for v in np.floor(corners.min(0)))
    x1, y1 = np.ceil(corners.max(0))
    x1, y1 = min(size[0], int(x1)), min(size[1], int(y1))
    return x0, y0, max(0, x1 - x0), max(0, y1 - y0)


# --- loading --------------------------------------------------------------------------------------

def load_gray(src: str | PathLike | bytes | Image.Image | np.ndarray,
              cfg: ReadConfig) -> tuple[np.ndarray, float, str]:
    """Any image -> (uint8 grayscale, decoded/original scale, name): a file, an encoded file's bytes (an
    upload), a PIL image or an array. EXIF orientation applied; images over cfg.max_pixels are refused
    before they are decoded (a decompression bomb costs nothing)."""
    if isinstance(src, np.ndarray):
        name = f"<array {src.shape}>"
        _check_pixels(src.shape[0] * src.shape[1] if src.ndim >= 2 else 0, name, cfg)
        return _checked_array_gray(src, name), 1.0, name
    if isinstance(src, Image.Image):
        name = f"<{src.mode} image {src.size[0]}x{src.size[1]}>"
        _check_pixels(src.size[0] * src.size[1], name, cfg)
        return pil_gray(ImageOps.exif_transpose(src)), 1.0, name
    img, scale = open_image(src, cfg, gray=True)
    return pil_gray(img), scale, UPLOAD if isinstance(src, bytes) else str(src)


UPLOAD = "<uploaded image>"  # the name of an image given as its file's bytes


def open_image(path: str | PathLike | bytes, cfg: ReadConfig, gray: bool = False) -> tuple[Image.Image, float]:
    """Decode an image file (or an encoded file's bytes), EXIF orientation applied -> (PIL image,
    decoded/original scale).

    The pixel limit is checked on the header, before anything is decoded. gray=True lets big JPEGs
    decode straight to grayscale at a reduced scale when the pipeline would shrink them anyway."""
    if isinstance(path, bytes):
        if not path:
            raise ReadError(f"{UPLOAD}: empty (0 bytes)")
        source, path = io.BytesIO(path), UPLOAD
    else:
        source = path = Path(path)
        if not path.is_file():
            raise ReadError(f"{path}: no such image file")
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            with Image.open(source) as img:
                w, h = img.size
                _check_pixels(w * h, str(path), cfg)
                scale = 1.0
                if gray and img.format == "JPEG":
                    shrink = min(1.0, math.sqrt(cfg.work_pixels / (w * h)))
                    img.draft("L", (math.ceil(w * shrink), math.ceil(h * shrink)))
                    scale = img.size[0] / w
                img.load()
                return ImageOps.exif_transpose(img), scale
    except ReadError:
        raise
    except (Image.DecompressionBombError, Image.DecompressionBombWarning) as e:
        # PIL refuses at open, before we see the size; its message carries the declared pixel count
        found = re.search(r"\((\d+) pixels\)", str(e))
        size = f"{int(found.group(1)) / 1e6:.1f} megapixels" if found else "the declared size"
        raise ReadError(f"{path}: {size} is over the limit of {cfg.max_pixels / 1e6:g} (ReadConfig.max_pixels; "
                        f"refused before decoding: a possible decompression bomb)") from None
    except Image.UnidentifiedImageError:
        raise ReadError(f"{path}: not an image file (or a format PIL cannot read)") from None
    except Exception as e:  # noqa: BLE001 - decoders raise many types; all mean "unreadable"
        first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        raise ReadError(f"{path}: truncated or corrupt image ({first})") from None


def _check_pixels(pixels: int, name: str, cfg: ReadConfig) -> None:
    if pixels > cfg.max_pixels:
        raise ReadError(f"{name}: {pixels / 1e6:.1f} megapixels is over the limit of {cfg.max_pixels / 1e6:g} "
                        f"(ReadConfig.max_pixels; refused before decoding)")
    if pixels == 0:
        raise ReadError(f"{name}: empty image")



def _checked_array_gray(a: np.ndarray, name: str) -> np.ndarray:
    try:
        return array_gray(a, name)
    except DatasetError as e:
        raise ReadError(str(e)) from None


# --- the pipeline ---------------------------------------------------------------------------------

def prepare(gray: np.ndarray, cfg: ReadConfig, scale: float = 1.0, source: str = "<image>") -> Page:
    """Grayscale (decoded at `scale` of the original size) -> a Page ready for segmentation."""
    oh, ow = gray.shape
    size = (round(ow / scale), round(oh / scale))
    if oh * ow > cfg.work_pixels:
        f = math.sqrt(cfg.work_pixels / (oh * ow))
        gray = cv2.resize(gray, (max(1, round(ow * f)), max(1, round(oh * f))), interpolation=cv2.INTER_AREA)
    # Big writing costs time and tells the classifier nothing more (it sees 20 px): a look at a small
    # copy measures the text, and the image is halved (Gaussian pyramid) while the text stays at
    # least text_target px tall
    dark, h0 = survey(gray, cfg)
    while h0 >= 2 * cfg.text_target and min(gray.shape) >= 2 * cfg.min_text_height:
        gray, h0 = cv2.pyrDown(gray), h0 / 2
    to_work = np.diag([gray.shape[1] / size[0], gray.shape[0] / size[1], 1.0])
    if min(gray.shape) >= cfg.denoise_min_side:
        gray = cv2.medianBlur(gray, 3)

    g = (255 - gray if dark else gray).astype(np.float32)
    ink, mask = binarize(flatten(g, cfg.background_kernel), cfg)

    # Straighten the text lines first: ruling lines are found as straight horizontal runs
    skew = estimate_skew(mask, cfg.max_skew, cfg.skew_step, cfg.min_gain)
    if skew:
        m = _rotation(ink.shape, skew)
        ink = _warp(ink, m)
        mask = otsu(ink, cfg.min_contrast, cfg.hysteresis)
        to_work = m @ to_work

    sw = stroke_width(mask)
    ruling = remove_long_lines(mask, cfg, sw) | remove_frames(mask, cfg.min_text_height)
    h = text_height(mask & (1 - ruling), cfg.min_text_height)
    lines, boxes = remove_lines(mask, cfg, h, ruling), remove_boxes(mask, cfg, h, sw)
    # Boxes that touch their digits and each other make components taller than the text, which then
    # sets h too high to find their sides: measured again without what was found, h shrinks. Only
    # where boxes were found, and not where long lines or whole frames were found before h: digits
    # strung on ruling lines fall apart without them (a line too short for remove_long_lines in a
    # small image, found by remove_lines, once took a 64 px string down to h = 14)
    for _ in range(0 if ruling.any() else 2):
        if not boxes.any():
            break
        again = text_height(mask & (1 - (lines | boxes)), cfg.min_text_height)
        if again > cfg.box_remeasure * h:
            break
        h, lines, boxes = again, remove_lines(mask, cfg, again, ruling), remove_boxes(mask, cfg, again, sw)
    ruling |= lines | boxes
    if cfg.binarization == "sauvola":
        mask = sauvola(ink, max(3, round(cfg.sauvola_window * h)), cfg.sauvola_k, cfg.min_contrast)
    mask = repair_crossings(mask, ruling, h * cfg.line_max_thickness)

    # Writing that leans much more (or less) than MNIST's digits is sheared back to their lean: the
    # model knows that lean, and near-vertical cut paths separate such digits; smaller departures are
    # left alone (the estimate is noisy on a few digits, and MNIST's own lean varies)
    slant = stroke_slant(mask, cfg.max_slant) - cfg.slant_target if cfg.max_slant > 0 else 0.0
    slant = slant if abs(slant) >= cfg.slant_min else 0.0
    if slant:
        m = _shear(mask.shape, slant)
        ink, mask, ruling = _warp(ink, m), _warp(mask, m, nearest=True), _warp(ruling, m, nearest=True)
        to_work = m @ to_work
    return Page(source=source, size=size, ink=ink, mask=mask, ruling=ruling, to_work=to_work, dark_ink=dark,
                text_height=h, stroke_width=sw, skew=skew, slant=slant, binarization=cfg.binarization)


def survey(gray: np.ndarray, cfg: ReadConfig) -> tuple[bool, float]:
    """(dark ink?, text height in px of `gray`) measured on a copy halved down to at most 512 px long."""
    small, f = gray, 1.0
    while max(small.shape) > 512:
        small, f = cv2.pyrDown(small), f / 2
    dark = ink_is_dark(small)  # digitlab's one polarity detector, also predict's and the datasets'
    _, mask = binarize(flatten((255 - small if dark else small).astype(np.float32), cfg.background_kernel), cfg)
    mask &= 1 - remove_frames(mask, max(2, round(cfg.min_text_height * f)))  # boxes are not text
    return dark, text_height(mask, max(2, round(cfg.min_text_height * f))) / f


def flatten(g: np.ndarray, kernel: float) -> np.ndarray:
    """Ink-bright float image -> ink strength in [0, 1] with the background (uneven light, shadows) removed.

    The background is an opening (ink is thinner than the kernel) of a shrunken copy, smoothed. Ink is
    then measured as the fraction of the paper's light it absorbs, which a light gradient scales away."""
    h, w = g.shape
    small = shrink_to(g, 96)
    k = max(3, int(kernel * min(small.shape)) | 1)
    se = cv2.getStructuringElement(cv2.MORPH_RECT, (k, k))
    bg = cv2.morphologyEx(small, cv2.MORPH_OPEN, se, borderType=cv2.BORDER_REPLICATE)
    bg = cv2.GaussianBlur(bg, (0, 0), k / 2)
    bg = cv2.resize(bg, (w, h), interpolation=cv2.INTER_LINEAR)
    paper = np.maximum(255.0 - bg, 16.0)  # the paper's brightness (dark ink), or 255 minus the board's
    return np.clip((g - bg) / paper, 0.0, 1.0)


def binarize(ink: np.ndarray, cfg: ReadConfig) -> tuple[np.ndarray, np.ndarray]:
    """Flat-fielded ink -> (the ink of strokes only, its Otsu mask). A first mask measures the stroke
    width that strokes_only needs (cfg.stroke_scale 0: the ink as it is)."""
    mask = otsu(ink, cfg.min_contrast, cfg.hysteresis)
    if cfg.stroke_scale > 0:
        ink = strokes_only(ink, cfg.stroke_scale * stroke_width(mask))
        mask = otsu(ink, cfg.min_contrast, cfg.hysteresis)
    return ink, mask


def strokes_only(ink: np.ndarray, width: float) -> np.ndarray:
    """The ink of strokes up to about `width` px wide (a morphological top-hat): what stands out from its
    surroundings within that distance. Broader shading (the blots of a textured paper, a shadow) that
    flatten's paper-wide background left behind is taken away; strokes keep their full strength.

    The opening's element is an octagon `width` px across, a square grown by a diamond: both are fast
    (separable, and repeated 3x3 steps), where a disk costs time with the square of its size."""
    side = max(1, round(width / (1 + math.sqrt(2)))) | 1  # odd: erosion and dilation stay centred
    steps = max(0, round((width - side) / 2))
    square = cv2.getStructuringElement(cv2.MORPH_RECT, (side, side))
    cross = cv2.getStructuringElement(cv2.MORPH_CROSS, (3, 3))
    rep = cv2.BORDER_REPLICATE
    low = cv2.erode(cv2.erode(ink, square, borderType=rep), cross, iterations=steps, borderType=rep)
    return ink - cv2.dilate(cv2.dilate(low, cross, iterations=steps, borderType=rep), square, borderType=rep)


def otsu(ink: np.ndarray, min_contrast: float, hysteresis: float) -> np.ndarray:
    """Global Otsu threshold on the flat-fielded ink, never below min_contrast (a blank page stays blank),
    with hysteresis: fainter pixels (down to `hysteresis` times the threshold) count as ink when they
    are connected to ink above it, which keeps the light parts of a stroke without admitting noise."""
    u8 = (ink * 255).astype(np.uint8)
    t, _ = cv2.threshold(u8, 0, 1, cv2.THRESH_BINARY + cv2.THRESH_OTSU)
    t = max(t, min_contrast * 255)
    strong = u8 > t
    return _grow(strong, u8 > max(hysteresis * t, min_contrast * 255))


def _grow(strong: np.ndarray, weak: np.ndarray) -> np.ndarray:
    """uint8 mask of the connected components of `weak` that contain a `strong` pixel."""
    n, labels = cv2.connectedComponents(weak.astype(np.uint8), connectivity=8)
    keep = (np.bincount(labels[strong], minlength=n) > 0).astype(np.uint8)
    keep[0] = 0
    return keep[labels]


def sauvola(ink: np.ndarray, window: int, k: float, min_contrast: float) -> np.ndarray:
    """Sauvola's local threshold T = m (1 + k (s / R - 1)) on the paper's brightness (1 - ink), R = 0.5.

    Means and variances come from box filters, so the cost does not depend on the window."""
    d = 1.0 - ink
    win = (window | 1, window | 1)
    m = cv2.boxFilter(d, cv2.CV_32F, win, borderType=cv2.BORDER_REFLECT)
    m2 = cv2.boxFilter(d * d, cv2.CV_32F, win, borderType=cv2.BORDER_REFLECT)
    s = np.sqrt(np.maximum(m2 - m * m, 0))
    t = m * (1 + k * (s / 0.5 - 1))
    return ((d < t) & (ink > min_contrast)).astype(np.uint8)


def stroke_width(mask: np.ndarray) -> float:
    """Typical stroke width in px: across a stroke of width w the distance to the paper averages ~w/4 + 1/2."""
    if not mask.any():
        return 1.0
    dist = cv2.distanceTransform(mask, cv2.DIST_L2, 3)
    return max(1.0, 4 * (float(dist[mask > 0].mean()) - 0.5))


def components(mask: np.ndarray) -> tuple[int, np.ndarray, np.ndarray]:
    """cv2.connectedComponentsWithStats (8-connected) -> (n, int32 labels, stats), run on the ink's
    bounding box only: on a page that is mostly paper, many times faster, with the same labels and
    stats (row 0, the background, spans the whole image)."""
    x, y, w, h = cv2.boundingRect(mask)
    labels = np.zeros(mask.shape, np.int32)
    if w == 0:
        return 1, labels, np.array([[0, 0, mask.shape[1], mask.shape[0], mask.size]], np.int32)
    n, inside, stats, _ = cv2.connectedComponentsWithStats(mask[y:y + h, x:x + w], connectivity=8, ltype=cv2.CV_32S)
    labels[y:y + h, x:x + w] = inside
    stats[1:, cv2.CC_STAT_LEFT] += x
    stats[1:, cv2.CC_STAT_TOP] += y
    stats[0] = 0, 0, mask.shape[1], mask.shape[0], mask.size - stats[1:, cv2.CC_STAT_AREA].sum()
    return n, labels, stats


def text_height(mask: np.ndarray, min_height: int) -> float:
    """Area-weighted median height of the ink components: big digits outvote specks and noise."""
    n, _, stats = components(mask)
    if n <= 1:
        return float(min_height)
    hs, ws, areas = stats[1:, cv2.CC_STAT_HEIGHT], stats[1:, cv2.CC_STAT_WIDTH], stats[1:, cv2.CC_STAT_AREA]
    keep = (hs >= min_height / 2) & (ws < 4 * np.maximum(hs, min_height))  # no leftover lines
    # A grid of boxes whose sides binarize into dashes is one component round the digits: what holds
    # two or more of the others is no digit, and no text at all
    x, y = stats[1:, cv2.CC_STAT_LEFT], stats[1:, cv2.CC_STAT_TOP]
    cx, cy = x + ws / 2, y + hs / 2
    k = np.flatnonzero(keep)
    inside = (cx[None, k] > x[k, None]) & (cx[None, k] < (x + ws)[k, None]) \
        & (cy[None, k] > y[k, None]) & (cy[None, k] < (y + hs)[k, None])
    np.fill_diagonal(inside, False)
    container = np.zeros_like(keep)
    container[k] = inside.sum(1) >= 2
    keep &= ~container
    # Thin tall sticks may be the sides of form boxes (found only once h is known): they vote only
    # when little else does (a string of 1s)
    sticks = hs > 5 * ws
    if areas[keep & ~sticks].sum() > 0.3 * areas[keep].sum():
        keep &= ~sticks
    big = (areas >= (min_height / 2) ** 2 / 4) & ~container  # ignore specks when judging how much ink voted
    if not keep.any() or areas[keep].sum() < 0.5 * areas[big].sum():
        # Most of the ink is in components too wide to be digits (digits strung on a ruling line that
        # was not removed), or none is of a digit's size (nothing but single-pixel specks): measure the
        # text lines' bands in the row profile instead
        return max(float(min_height), _band_height(mask))
    hs, areas = hs[keep], areas[keep].astype(np.float64)
    order = np.argsort(hs)
    cum = np.cumsum(areas[order])
    return float(max(min_height, hs[order][np.searchsorted(cum, cum[-1] / 2)]))


def _band_height(mask: np.ndarray) -> float:
    """Typical height of the bands of rows that hold text, ignoring rows crossed by long lines."""
    rows = mask.sum(1).astype(np.float64)
    lines = rows > 0.5 * mask.shape[1]
    rows[lines] = 0  # a ruling line is a spike of a few rows, not text
    rows = np.convolve(rows, np.ones(3) / 3, mode="same")
    on = rows > 0.15 * rows.max(initial=0)
    edges = np.flatnonzero(np.diff(np.r_[0, on.astype(np.int8), 0]))
    spans = [(a, b) for a, b in zip(edges[::2], edges[1::2])]
    if not spans:
        return 0.0
    masses = [rows[a:b].sum() for a, b in spans]
    heights = [b - a for (a, b), m in zip(spans, masses) if m >= 0.3 * max(masses)]
    return float(np.median(heights))


# --- geometry -------------------------------------------------------------------------------------

def _sharpness(coords: np.ndarray) -> np.ndarray:
    """Per row of (K, N) coordinates, the sum of squares of the histogram of their integer-rounded
    values: high when ink piles up in few bins. All rows' histograms come from one bincount."""
    c = np.round(coords).astype(np.int64)
    c -= c.min(1, keepdims=True)
    span = int(c.max()) + 1
    hist = np.bincount((c + span * np.arange(len(c))[:, None]).ravel(), minlength=span * len(c))
    hist = hist.reshape(len(c), span).astype(np.float64)
    return (hist * hist).sum(1)


def _ink_points(mask: np.ndarray, limit: int = 40_000) -> tuple[np.ndarray, np.ndarray]:
    ys, xs = np.nonzero(mask)
    if ys.size > limit:  # a regular subsample keeps the profile's shape
        step = ys.size // limit + 1
        ys, xs = ys[::step], xs[::step]
    return ys.astype(np.float64), xs.astype(np.float64)


def estimate_skew(mask: np.ndarray, max_deg: float, step: float, min_gain: float) -> float:
    """Rotation in degrees (counter-clockwise positive) that makes the row profile sharpest, or 0."""
    ys, xs = _ink_points(mask)
    if ys.size < 50 or max_deg <= 0:
        return 0.0
    angles = np.arange(-max_deg, max_deg + step / 2, step)
    tans = np.array([math.tan(math.radians(a)) for a in angles])
    scores = _sharpness(ys[None, :] - xs[None, :] * tans[:, None])  # all angles in one pass
    best = int(np.argmax(scores))
    base = _sharpness(ys[None, :])[0]
    return float(angles[best]) if scores[best] > base * (1 + min_gain) else 0.0


def stroke_slant(mask: np.ndarray, max_slant: float) -> float:
    """The lean dx/dy of the near-vertical strokes (tops to the right: positive), from the edges'
    gradients: a stroke's direction is perpendicular to its gradient. The median over edge pixels
    whose stroke is within max_slant of vertical, weighted by gradient strength."""
    x, y, w, h = cv2.boundingRect(mask)
    if w == 0:
        return 0.0
    # Only the ink's bounding box, with room for the blur and the gradient (the same edges: beyond 5 px
    # of ink both are exactly zero)
    pad = 5
    m = mask[max(0, y - pad):y + h + pad, max(0, x - pad):x + w + pad]
    m = cv2.GaussianBlur(m.astype(np.float32), (5, 5), 1.0)
    gx = cv2.Sobel(m, cv2.CV_32F, 1, 0, ksize=3)
    gy = cv2.Sobel(m, cv2.CV_32F, 0, 1, ksize=3)
    mag = np.hypot(gx, gy)
    edge = (mag > 0.5 * mag.max(initial=0)) & (np.abs(gx) > 1e-6)
    if edge.sum() < 50:
        return 0.0
    lean = gy[edge] / gx[edge]  # the stroke's dx/dy toward the top, for near-vertical strokes
    near = np.abs(lean) <= max_slant
    if near.sum() < 30:
        return 0.0
    lean, w = lean[near], mag[edge][near]
    order = np.argsort(lean)
    cum = np.cumsum(w[order])
    return float(lean[order][np.searchsorted(cum, cum[-1] / 2)])


def _rotation(shape: tuple[int, int], degrees: float) -> np.ndarray:
    """3x3 matrix that turns text lines running along y = c + x tan(degrees) (as estimate_skew finds
    them) horizontal, translated so nothing is cut off. OpenCV's positive angle turns the image
    counter-clockwise on screen, which lifts the right end of a line that runs down to the right."""
    h, w = shape
    m = np.vstack([cv2.getRotationMatrix2D((w / 2, h / 2), degrees, 1.0), [0, 0, 1]])
    corners = np.float64([[0, 0, 1], [w, 0, 1], [w, h, 1], [0, h, 1]]) @ m.T
    m[0, 2] -= corners[:, 0].min()
    m[1, 2] -= corners[:, 1].min()
    return m


def _shear(shape: tuple[int, int], s: float) -> np.ndarray:
    """3x3 matrix x' = x + s (y - h), shifted to stay inside a widened canvas."""
    h, _ = shape
    shift = -s * h if s < 0 else 0.0
    return np.float64([[1, s, shift], [0, 1, 0], [0, 0, 1]])


def _warp(a: np.ndarray, m: np.ndarray, nearest: bool = False) -> np.ndarray:
    h, w = a.shape
    corners = np.float64([[0, 0, 1], [w, 0, 1], [w, h, 1], [0, h, 1]]) @ m.T
    out_w, out_h = int(math.ceil(corners[:, 0].max())), int(math.ceil(corners[:, 1].max()))
    flags = cv2.INTER_NEAREST if nearest else cv2.INTER_LINEAR
    return cv2.warpAffine(a, m[:2], (out_w, out_h), flags=flags, borderMode=cv2.BORDER_CONSTANT, borderValue=0)


# --- ruling lines and boxes -----------------------------------------------------------------------

def _horizontal_runs(mask: np.ndarray, length: int, max_thickness: float, gap: int,
                     min_cover: float = 0.8) -> np.ndarray:
    """Ink pixels on straight horizontal runs at least `length` long, in bands no thicker than
    max_thickness. Gaps up to `gap` px (a faint line breaks up when binarized) are bridged if ink still
    lies under min_cover of the run's length, and a line may drift by a pixel (what deskewing leaves of
    a photo's perspective)."""
    length = max(3, int(length))
    if length >= mask.shape[1] or mask.sum(1).max(initial=0) < length - 2 * gap:
        return np.zeros_like(mask)  # no row holds enough ink for such a run
    rect = cv2.getStructuringElement
    bridged = cv2.morphologyEx(mask, cv2.MORPH_CLOSE, rect(cv2.MORPH_RECT, (max(1, gap) | 1, 1)))
    slack = cv2.dilate(bridged, rect(cv2.MORPH_RECT, (1, 3)))
    runs = cv2.morphologyEx(slack, cv2.MORPH_OPEN, rect(cv2.MORPH_RECT, (length, 1)))
    if not runs.any():
        return runs
    n, labels, stats = components(runs)
    # A thick band is a filled shape (a blot, a bar of a big digit), not a printed line
    thick = stats[:, cv2.CC_STAT_AREA] / np.maximum(stats[:, cv2.CC_STAT_WIDTH], 1)
    keep = thick <= max(3.0, max_thickness + 2)  # + 2: the pixel of slack on each side
    keep[0] = False
    # A row of separate strokes (digits in adjacent boxes, the boxes' sides between them) is no line
    for i in np.flatnonzero(keep):
        x, y, w, hh = (int(v) for v in stats[i, :4])
        inked = ((labels[y:y + hh, x:x + w] == i) & (mask[y:y + hh, x:x + w] > 0)).any(0)
        keep[i] = inked.mean() >= min_cover
    # The line's own pixels, and the ink fused to them a pixel above or below (where a stroke runs
    # along the line); strokes that cross it are restored by repair_crossings
    return cv2.dilate(keep[labels].astype(np.uint8), rect(cv2.MORPH_RECT, (1, 3))) & mask


def remove_long_lines(mask: np.ndarray, cfg: ReadConfig, sw: float) -> np.ndarray:
    """Ruling lines found before the text height is known: runs across half the image and many strokes long."""
    length = max(cfg.long_line * mask.shape[1], cfg.long_line_strokes * sw)
    return _horizontal_runs(mask, length, 3 * sw, int(sw / 2))


def remove_frames(mask: np.ndarray, min_side: int) -> np.ndarray:
    """The borders of rectangular frames (form boxes, printed or drawn): components whose four edge
    bands are inked along at least 80% of their length. No digit fills its own bounding box's edges."""
    n, labels, stats = components(mask)
    out = np.zeros_like(mask)
    for i in range(1, n):
        x, y, w, hh = (int(v) for v in stats[i, :4])
        if w < min_side or hh < min_side:
            continue
        own = labels[y:y + hh, x:x + w] == i
        b = max(2, int(0.06 * min(w, hh)))
        bands = [own[:b].any(0), own[-b:].any(0), own[:, :b].any(1), own[:, -b:].any(1)]
        if min(band.mean() for band in bands) < 0.8:
            continue
        border = np.zeros_like(own)
        border[:b], border[-b:], border[:, :b], border[:, -b:] = True, True, True, True
        out[y:y + hh, x:x + w] |= (own & border).astype(np.uint8)
    return out


def remove_lines(mask: np.ndarray, cfg: ReadConfig, h: float, ruling: np.ndarray) -> np.ndarray:
    """Ruling found once the text height is known: shorter lines and underlines (straight runs over
    line_min_length text heights), and the separators of comb fields: vertical runs at least
    box_min_height tall whose two ends meet a horizontal line (this pass's or one in `ruling`)."""
    rest = mask & (1 - ruling)
    thick = cfg.line_max_thickness * h
    horiz = _horizontal_runs(rest, cfg.line_min_length * h, thick, int(cfg.line_gap * h), cfg.line_cover)
    lines = ruling | horiz
    if not lines.any():
        return horiz
    vert = _horizontal_runs(rest.T.copy(), cfg.box_min_height * h, thick, 1).T
    if vert.any():
        reach = max(2, int(0.5 * thick))
        near = cv2.dilate(lines, cv2.getStructuringElement(cv2.MORPH_RECT, (3, 2 * reach + 1)))
        n, labels, stats = components(vert)
        keep = np.zeros(n, bool)
        for i in range(1, n):
            x, y, w, hh = (int(v) for v in stats[i, :4])
            keep[i] = near[y, x:x + w].any() and near[y + hh - 1, x:x + w].any()
        horiz = horiz | keep[labels].astype(np.uint8)
    return horiz


def remove_boxes(mask: np.ndarray, cfg: ReadConfig, h: float, sw: float) -> np.ndarray:
    """The sides of printed boxes, one around each digit, that remove_frames missed (a digit touching its
    box, boxes touching each other, a box a little out of square): straight runs of ink thinner across
    than box_thickness stroke widths and at least box_side text heights long, where they meet at corners
    and at least box_min_sides vertical ones do. A digit's bars and stems are as thick as its strokes."""
    none = np.zeros_like(mask)
    if cfg.box_thickness <= 0:
        return none
    # On the whole mask: the parts of frames that remove_frames peeled off still mark the corners
    k = int(math.ceil(cfg.box_thickness * sw)) + 1  # ink runs across shorter than this are thin
    rect = cv2.getStructuringElement
    thin_x = mask & (1 - cv2.morphologyEx(mask, cv2.MORPH_OPEN, rect(cv2.MORPH_RECT, (k, 1))))
    gap = max(1, int(round(sw)))  # strokes that cross a side interrupt it
    vert = _horizontal_runs(thin_x.T.copy(), cfg.box_side * h, k, gap).T
    if not vert.any():
        return none
    thin_y = mask & (1 - cv2.morphologyEx(mask, cv2.MORPH_OPEN, rect(cv2.MORPH_RECT, (1, k))))
    horiz = _horizontal_runs(thin_y, cfg.box_side * h, k, gap)
    # A faint side binarizes into dashes: its pieces are judged together, joined across the gaps
    joined_v = cv2.morphologyEx(vert, cv2.MORPH_CLOSE, rect(cv2.MORPH_RECT, (1, 2 * gap + 1)))
    joined_h = cv2.morphologyEx(horiz, cv2.MORPH_CLOSE, rect(cv2.MORPH_RECT, (2 * gap + 1, 1)))
    # A box's sides meet at its corners: a vertical one meets thin horizontal ones at both ends (the stem
    # of a 7 meets its bar only at the top, a thin 1 nothing). A digit touching its box's top or bottom
    # makes that side thick where they join, and the thin runs lose it: one end may meet any straight
    # horizontal run up to box_joined times thicker than a side, if the other meets a thin one, in an
    # image where some side meets thin ones at both ends (a thin stroke between a ruling line and a bar
    # of a digit is no box's side)
    r = max(3, int(round(sw))) | 1
    square = np.ones((r, r), np.uint8)
    n, labels, stats = components(joined_v)
    ends = [(np.s_[y:y + r, x:x + w], np.s_[y + hh - r:y + hh, x:x + w])
            for x, y, w, hh in (stats[i, :4].astype(int) for i in range(1, n))]

    def meets(runs: np.ndarray) -> np.ndarray:  # (sides, 2): whether each side's top and bottom meet runs
        near = cv2.dilate(runs, square) > 0
        return np.array([(near[top].any(), near[bottom].any()) for top, bottom in ends], bool).reshape(-1, 2)

    thin = meets(joined_h)
    if not thin.all(1).any():
        return none
    # (the thicker runs are searched only in an image that holds a box)
    loose = meets(joined_h | _horizontal_runs(mask, cfg.box_side * h, cfg.box_joined * k, gap)) \
        if cfg.box_joined else thin
    keep = np.zeros(n, bool)
    keep[1:] = (thin[:, 0] & loose[:, 1]) | (loose[:, 0] & thin[:, 1])
    if keep.sum() < cfg.box_min_sides:
        return none
    sides = keep[labels].astype(np.uint8) & vert
    return sides | (_touching(joined_h, cv2.dilate(sides, square)) & horiz)


def _touching(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """The connected components of mask a that touch mask b."""
    n, labels = cv2.connectedComponents(a, connectivity=8)
    hit = np.bincount(labels[(b > 0) & (a > 0)], minlength=n) > 0
    hit[0] = False
    return hit[labels].astype(np.uint8)


def repair_crossings(mask: np.ndarray, ruling: np.ndarray, thickness: float) -> np.ndarray:
    """The mask without the ruling, where strokes that crossed a line are bridged again across it."""
    rest = mask & (1 - ruling)
    if not ruling.any():
        return rest
    k = cv2.getStructuringElement(cv2.MORPH_RECT, (1, max(3, int(thickness) + 3)))
    bridged = cv2.morphologyEx(rest, cv2.MORPH_CLOSE, k)
    return rest | (bridged & ruling & mask)
