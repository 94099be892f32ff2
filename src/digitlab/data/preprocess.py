"""The image pipeline: any digit image -> 28x28 uint8 the MNIST way -> model input.

Every dataset that is not already 28x28 MNIST-style (Tibetan JPEGs, USPS, sklearn digits)
and every image given to the predictor goes through ``mnist_style``; training and
inference both turn uint8 images into model input with ``to_model_input`` alone.
"""

from __future__ import annotations

from dataclasses import dataclass
from os import PathLike
from pathlib import Path

import numpy as np
import torch
from PIL import Image, ImageOps

from digitlab.errors import DatasetError

CANVAS = 28  # output side, pixels
BOX = 20  # the digit is scaled to fit a BOX x BOX square, as in MNIST
INK_THRESHOLD = 32  # 0..255: brighter pixels count as ink when finding the bounding box
MIN_CONTRAST = 24  # 0..255: ink must be this much brighter than the background, or the image is blank
BORDER = 0.05  # fraction of each side read as the background for polarity detection
NOISE_FLOOR = 0.15  # fraction of the ink contrast clipped away as background noise (JPEG, paper grain)


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


def load_image(src: str | PathLike | Image.Image | np.ndarray) -> np.ndarray:
    """One digit image (file of any format/size, PIL image or array; either polarity) -> (28, 28) uint8."""
    name = str(src) if isinstance(src, (str, PathLike)) else f"<{type(src).__name__} image>"
    gray = _read_gray(src, name)
    try:
        return mnist_style(_white_on_black(gray))
    except DatasetError as e:
        raise DatasetError(f"{name}: {e}") from None


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


def _white_on_black(gray: np.ndarray) -> np.ndarray:
    """Invert a light-background image, then stretch so the background (and faint noise) is 0, the brightest ink 255."""
    h, w = gray.shape
    bh, bw = max(1, round(BORDER * h)), max(1, round(BORDER * w))
    border = np.concatenate([gray[:bh].ravel(), gray[-bh:].ravel(), gray[:, :bw].ravel(), gray[:, -bw:].ravel()])
    bg = float(np.median(border))
    g = gray.astype(np.float64)
    if bg > 127:
        g, bg = 255.0 - g, 255.0 - bg
    hi = g.max()
    if hi - bg < MIN_CONTRAST:
        raise DatasetError(f"blank image ({h}x{w}): ink is at most {hi - bg:.0f} levels above the background")
    lo = bg + NOISE_FLOOR * (hi - bg)
    return np.clip((g - lo) * (255.0 / (hi - lo)), 0, 255).round().astype(np.uint8)
