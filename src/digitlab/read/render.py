"""Pictures of a Reading: the image with boxes and predictions, and the original | processed | crops panel."""

from __future__ import annotations

from os import PathLike
from pathlib import Path
from typing import Any

import cv2
import numpy as np
from PIL import Image, ImageOps

from digitlab.read.config import ReadConfig
from digitlab.read.image import load_gray, open_image
from digitlab.read.recognize import Reading

GREEN, RED, GRAY, BLUE = (0, 160, 0), (220, 0, 0), (150, 150, 150), (40, 90, 220)  # RGB
FONT = cv2.FONT_HERSHEY_SIMPLEX
TITLE_SCALE, CROP_SCALE = 0.5, 0.42  # font scales of the panel's titles and of its crops' labels
GAP = 4  # px between a box and its label


def load_rgb(src: Any, cfg: ReadConfig | None = None) -> np.ndarray:
    """The image as the user sees it (EXIF applied) in RGB, for drawing on; gray images are converted."""
    cfg = cfg or ReadConfig()
    if isinstance(src, np.ndarray) and src.ndim == 3 and src.shape[2] == 3 and src.dtype == np.uint8:
        return src.copy()
    if isinstance(src, (str, PathLike, bytes)):
        img, _ = open_image(src, cfg)
        return np.asarray(img.convert("RGB")).copy()
    if isinstance(src, Image.Image):
        return np.asarray(ImageOps.exif_transpose(src).convert("RGB")).copy()
    gray, _, _ = load_gray(src, cfg)
    return cv2.cvtColor(gray, cv2.COLOR_GRAY2RGB)


def annotate(reading: Reading, image: Any) -> np.ndarray:
    """RGB copy of the image with a box around each digit and its prediction above it (below it at the
    top edge; red '?' when rejected), every label inside the picture; ignored marks get a thin gray box."""
    rgb = load_rgb(image)
    if rgb.shape[1::-1] != tuple(reading.size):
        rgb = cv2.resize(rgb, tuple(reading.size), interpolation=cv2.INTER_AREA)
    for m in reading.ignored:
        x, y, w, h = m.box
        cv2.rectangle(rgb, (x, y), (x + w - 1, y + h - 1), GRAY, 1)
    height, width = rgb.shape[:2]
    for d in reading.digits:
        x, y, w, h = d.box
        color = RED if d.rejected else GREEN
        scale, thick = label_font(h)
        cv2.rectangle(rgb, (x, y), (x + w - 1, y + h - 1), color, thick)
        (tw, th), base = cv2.getTextSize(d.text, FONT, scale, thick)
        if tw > width - 2 or th + base > height - 2:  # a label larger than the picture: smaller type
            scale *= min((width - 2) / tw, (height - 2) / (th + base))
            (tw, th), base = cv2.getTextSize(d.text, FONT, scale, thick)
        cv2.putText(rgb, d.text, label_origin(d.box, (tw, th, base), (width, height), thick), FONT, scale, color,
                    thick, cv2.LINE_AA)
    return rgb


def label_font(box_height: int) -> tuple[float, int]:
    """(font scale, line thickness) of the label and box of a digit box this tall."""
    return max(0.4, box_height / 50), max(1, round(box_height / 40))


def label_origin(box: tuple[int, int, int, int], text: tuple[int, int, int], size: tuple[int, int],
                 thick: int = 1) -> tuple[int, int]:
    """Where cv2.putText draws a box's label (its baseline's left end), given the text's (width, height,
    baseline), the picture's (width, height) and the box's line thickness: centred above the box, else
    below it, else inside its top; shifted sideways and up or down as far as it takes to lie wholly
    inside the picture."""
    x, y, w, h = box
    tw, th, base = text
    width, height = size
    if y - GAP - th >= 0:
        ty = y - GAP
    elif y + h + GAP + th + base < height:
        ty = y + h + GAP + th
    else:
        ty = y + thick + GAP + th
    ty = min(max(ty, th), height - 1 - base)
    tx = min(max(x + (w - tw) // 2, 0), max(0, width - tw))
    return tx, ty


def panel(reading: Reading, image: Any, height: int = 320) -> np.ndarray:
    """original | processed (the binary ink the segmenter saw, with its boxes) | normalised 28x28 crops
    with their predictions and confidences, side by side, as in the published figures."""
    original = _fit_height(annotate(reading, image), height)
    parts = [_titled(original, "original")]
    page = reading.page
    if page is not None:
        processed = cv2.cvtColor(((1 - page.mask) * 255).astype(np.uint8), cv2.COLOR_GRAY2RGB)
        processed[page.ruling > 0] = (255, 200, 200)  # removed ruling lines, faintly
        for d in reading.digits:
            x, y, w, h = page.to_work_box(d.box)
            cv2.rectangle(processed, (x, y), (x + w - 1, y + h - 1), RED if d.rejected else BLUE, 1)
        parts.append(_titled(_fit_height(processed, height), "processed"))
    parts.append(_titled(_crop_grid(reading, height), "normalised crops"))
    h = max(p.shape[0] for p in parts)
    gap = np.full((h, 8, 3), 255, np.uint8)
    row = []
    for p in parts:
        row += [np.pad(p, ((0, h - p.shape[0]), (0, 0), (0, 0)), constant_values=255), gap]
    return np.hstack(row[:-1])


def save_png(rgb: np.ndarray, path: str | PathLike) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(rgb).save(path)
    return path


def _fit_height(rgb: np.ndarray, height: int) -> np.ndarray:
    h, w = rgb.shape[:2]
    f = height / h
    interp = cv2.INTER_AREA if f < 1 else cv2.INTER_NEAREST
    return cv2.resize(rgb, (max(1, round(w * f)), height), interpolation=interp)


def _titled(rgb: np.ndarray, title: str) -> np.ndarray:
    """The part with its title above it, widened with white to the title's width where it is narrower."""
    (tw, _), _ = cv2.getTextSize(title, FONT, TITLE_SCALE, 1)
    if rgb.shape[1] < tw + 4:
        rgb = np.pad(rgb, ((0, 0), (0, tw + 4 - rgb.shape[1]), (0, 0)), constant_values=255)
    bar = np.full((22, rgb.shape[1], 3), 255, np.uint8)
    cv2.putText(bar, title, (2, 16), FONT, TITLE_SCALE, (0, 0, 0), 1, cv2.LINE_AA)
    return np.vstack([bar, rgb])


def _crop_grid(reading: Reading, height: int) -> np.ndarray:
    """Each crop at 3x with 'digit confidence' under it, in reading order, in as many rows as fit; the
    cells are as wide as their widest label."""
    digits = reading.digits
    if not digits:
        out = np.full((height, 160, 3), 255, np.uint8)
        cv2.putText(out, "no digits", (8, 30), FONT, 0.6, RED, 1, cv2.LINE_AA)
        return out
    labels = [f"{d.best} {d.confidence:.2f}" if not d.rejected else f"? ({d.best} {d.confidence:.2f})"
              for d in digits]
    cell_w = max(84, *(cv2.getTextSize(label, FONT, CROP_SCALE, 1)[0][0] + 4 for label in labels))
    cell_h = 84 + 20
    rows = max(1, height // cell_h)
    cols = (len(digits) + rows - 1) // rows
    out = np.full((rows * cell_h, cols * (cell_w + 4), 3), 255, np.uint8)
    for k, (d, label) in enumerate(zip(digits, labels)):
        r, c = k // cols, k % cols
        y, x = r * cell_h, c * (cell_w + 4)
        crop = d.crop if d.crop is not None else np.zeros((28, 28), np.uint8)
        big = cv2.resize(crop, (84, 84), interpolation=cv2.INTER_NEAREST)
        out[y:y + 84, x:x + 84] = big[:, :, None]
        cv2.putText(out, label, (x + 2, y + 98), FONT, CROP_SCALE, RED if d.rejected else (0, 0, 0), 1, cv2.LINE_AA)
    return out
