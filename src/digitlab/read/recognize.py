"""read(image, checkpoint) -> Reading: the whole pipeline, with calibrated confidences and rejection.

Every candidate digit of the image (all lines, all groupings of pieces) goes to the model in one batch,
through the checkpoint's own normalisation (``to_model_input`` inside ``predict_logits``). Logits are
divided by the checkpoint's temperature (fitted on validation data at training time), so a digit's
confidence is a calibrated probability and a string's confidence is the product over its digits.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass, field
from os import PathLike
from pathlib import Path
from typing import Any

import numpy as np
import torch

from digitlab.read import segment
from digitlab.read.config import ReadConfig
from digitlab.read.image import Page, load_gray, prepare
from digitlab.read.verifier import load_verifier, single_digit_logp, verifier_logp
from digitlab.train.checkpoint import Checkpoint, load_checkpoint
from digitlab.train.evaluate import predict_logits

REJECTED = "?"


@dataclass(frozen=True)
class DigitReading:
    text: str  # the class name, or '?' when rejected
    best: str  # the most probable class, even when rejected
    confidence: float  # calibrated probability of `best`
    probabilities: tuple[float, ...]  # calibrated, one per class of the checkpoint
    box: tuple[int, int, int, int]  # (x, y, w, h) in the original image
    line: int  # 0-based line number, top to bottom
    rejected: str | None = None  # why the digit is '?', else None
    crop: np.ndarray | None = field(default=None, repr=False, compare=False)  # (28, 28) uint8 the model saw

    def to_dict(self) -> dict[str, Any]:
        return {"text": self.text, "best": self.best, "confidence": round(self.confidence, 4),
                "box": list(self.box), "line": self.line, "rejected": self.rejected,
                "probabilities": [round(p, 4) for p in self.probabilities]}


@dataclass(frozen=True)
class Ignored:
    """Ink that was not read as a digit (a speck, a comma, a dash, an underline, a ruling line)."""

    box: tuple[int, int, int, int]  # original image coordinates
    reason: str


@dataclass
class Reading:
    source: str
    size: tuple[int, int]  # (width, height) of the image, EXIF orientation applied
    lines: list[list[DigitReading]]  # top to bottom, each left to right
    ignored: list[Ignored]
    temperature: float
    seconds: float
    page: Page | None = field(default=None, repr=False)  # the processed image, for panels and debugging

    @property
    def digits(self) -> list[DigitReading]:
        return [d for line in self.lines for d in line]

    @property
    def line_texts(self) -> list[str]:
        return ["".join(d.text for d in line) for line in self.lines]

    @property
    def text(self) -> str:
        """The lines' strings joined by a space ('' when no digit was found)."""
        return " ".join(self.line_texts)

    @property
    def confidence(self) -> float:
        """Probability that every digit is right (product of the calibrated confidences; 0 if any is '?')."""
        if not self.digits:
            return 0.0
        return math.prod(0.0 if d.rejected else d.confidence for d in self.digits)

    def to_dict(self) -> dict[str, Any]:
        return {"source": self.source, "text": self.text, "confidence": round(self.confidence, 4),
                "size": list(self.size), "lines": [
                    {"text": t, "confidence": round(math.prod(0.0 if d.rejected else d.confidence for d in line), 4),
                     "digits": [d.to_dict() for d in line]}
                    for t, line in zip(self.line_texts, self.lines)],
                "ignored": [{"box": list(m.box), "reason": m.reason} for m in self.ignored],
                "temperature": self.temperature, "seconds": round(self.seconds, 4)}


def typical_logit(ckpt: Checkpoint, cands: list[segment.Candidate], top: np.ndarray) -> float:
    """The typical top logit of a real digit: the checkpoint's own (the median on its validation data,
    meta["logit_reference"]) when it has one, else an estimate from the image: the larger of the
    median over whole components (most are single digits) and the 75th percentile over all
    candidates (when the only component is two touching digits, its pieces set the level).

    Softmax saturates: half a 0 or two touching digits are often read with probability > 0.9, but their
    top logit is far below a real digit's (on MNIST test crops the median is 3x lower). Logit scales
    differ between checkpoints, so the reference must come from the checkpoint or from the image."""
    if ckpt.meta.get("logit_reference"):
        return float(ckpt.meta["logit_reference"])
    if len(top) == 0:
        return 1.0
    whole = [top[k] for k, c in enumerate(cands) if c.whole]
    level = float(np.percentile(top, 75))
    if whole:
        level = max(level, float(np.median(whole)))
    return max(level, 1e-3)


def digitness(top: np.ndarray, ref: float, cfg: ReadConfig) -> np.ndarray:
    """log-score that a crop is one well-formed digit: log sigmoid of its top logit relative to the
    image's typical one, centred on cfg.digit_logit with width cfg.digit_logit_softness."""
    z = (top / ref - cfg.digit_logit) / cfg.digit_logit_softness
    return -np.logaddexp(0.0, -z)


def rejection(cand: segment.Candidate, crop: np.ndarray, confidence: float, top: float, ref: float, h: float,
              cfg: ReadConfig) -> str | None:
    """Why a chosen candidate is reported as '?', or None to report its class."""
    width = cand.box[2] / max(h, cand.box[3])  # (a broken digit makes h an underestimate)
    if width > cfg.reject_width and top < cfg.digit_logit * ref:
        return f"{width:.1f} heights wide and unlike a digit: touching digits that could not be split"
    fill = _fill(crop)
    if fill > cfg.max_fill:
        return f"a blot, not a digit: ink fills {100 * fill:.0f}% of its box"
    if top < cfg.reject_logit * ref:
        return f"does not look like a digit (top logit {top:.1f} < {cfg.reject_logit:.2f} x {ref:.1f})"
    if confidence < cfg.reject_below:
        return f"low confidence {confidence:.2f} < {cfg.reject_below:.2f}"
    return None


def _fill(crop: np.ndarray) -> float:
    """Fraction of a normalised crop's bounding box that is ink: strokes leave most of a digit's box
    empty. A thin box (a 1 is one stroke) does not count: 0."""
    ink = crop > 127
    rows, cols = np.flatnonzero(ink.any(1)), np.flatnonzero(ink.any(0))
    if rows.size == 0:
        return 0.0
    h, w = rows[-1] - rows[0] + 1, cols[-1] - cols[0] + 1
    return float(ink.sum() / (h * w)) if min(h, w) >= 10 else 0.0


def as_checkpoint(checkpoint: str | PathLike | Checkpoint) -> Checkpoint:
    return checkpoint if isinstance(checkpoint, Checkpoint) else load_checkpoint(Path(checkpoint))


def read(image: Any, checkpoint: str | PathLike | Checkpoint, config: ReadConfig | None = None,
         verifier: str | PathLike | Checkpoint | None = None) -> Reading:
    """Read every digit string in an image: a file path (PNG, JPEG, BMP, TIFF, WebP, ...), a PIL image
    or an array, a photo or a scan, dark ink on light paper or the reverse. verifier: a checkpoint made
    by `digitlab train-verifier` (digitlab.read.verifier), which tells whole digits from merged pairs
    and parts of digits; without one, the classifier's scores alone choose the segmentation."""
    started = time.perf_counter()
    cfg = config or ReadConfig()
    ckpt = as_checkpoint(checkpoint)
    checker = load_verifier(verifier) if verifier is not None else None
    gray, scale, name = load_gray(image, cfg)
    page = prepare(gray, cfg, scale, name)
    return recognize(page, ckpt, cfg, started, checker)


def recognize(page: Page, ckpt: Checkpoint, cfg: ReadConfig, started: float | None = None,
              verifier: Checkpoint | None = None) -> Reading:
    """Segment a prepared page, score every candidate digit in one model call (and one verifier call),
    pick each line's best reading, and reject what is not convincingly a digit."""
    started = time.perf_counter() if started is None else started
    h = page.text_height
    lay = segment.layout(page, cfg)
    cands = segment.candidates(lay, cfg, h)
    temperature = float(ckpt.meta.get("temperature", 1.0))
    classes = ckpt.classes
    if cands:
        crops = np.stack([segment.crop(page, lay, lay.lines[c.line].pieces[c.first:c.last + 1], c.box)
                          for c in cands])
        logits = predict_logits(ckpt.model, torch.from_numpy(crops), ckpt.normalization, cfg.batch_size)
        probs = (logits / temperature).softmax(1).numpy().astype(np.float64)
        top = logits.max(1).values.numpy().astype(np.float64)
    else:
        crops, probs, top = np.zeros((0, 28, 28), np.uint8), np.zeros((0, len(classes))), np.zeros(0)
    ref = typical_logit(ckpt, cands, top)
    looks = digitness(top, ref, cfg)
    single = np.zeros(len(cands))  # log p(one whole digit), from the verifier
    if verifier is not None and len(cands):
        single = single_digit_logp(verifier_logp(verifier, crops, cfg.batch_size))
    score = np.log(np.maximum(probs.max(1), 1e-12)) + looks + cfg.verifier_weight * single if len(cands) \
        else np.zeros(0)

    lines: list[list[DigitReading]] = []
    ignored = [Ignored(page.to_original(m.box), m.reason) for m in lay.marks]
    by_line: dict[int, list[int]] = {}
    for c, cand in enumerate(cands):
        by_line.setdefault(cand.line, []).append(c)
    for k, line in enumerate(lay.lines):
        idx = by_line.get(k, [])
        chosen, skipped = segment.best_path(line, [cands[c] for c in idx], score[idx], cfg)
        digits = []
        for local in chosen:
            c = idx[local]
            p = probs[c]
            best = int(p.argmax())
            reason = rejection(cands[c], crops[c], float(p[best]), float(top[c]), ref, h, cfg)
            digits.append(DigitReading(text=REJECTED if reason else classes[best], best=classes[best],
                                       confidence=float(p[best]), probabilities=tuple(float(q) for q in p),
                                       box=page.to_original(cands[c].box), line=len(lines), rejected=reason,
                                       crop=crops[c]))
        ignored += [Ignored(page.to_original(line.pieces[i].box), "mark (dash, comma or stray stroke)")
                    for i in skipped]
        if digits:
            lines.append(digits)
    return Reading(source=page.source, size=page.size, lines=lines, ignored=ignored, temperature=temperature,
                   seconds=time.perf_counter() - started, page=page)
