"""read(image, checkpoint) -> Reading: the whole pipeline, with calibrated confidences and rejection.

Every candidate digit of the image (all lines, all groupings of pieces) goes to the model in one batch,
through the checkpoint's own normalisation, on the inference engine (`digitlab.engine.Recognizer`: ONNX
Runtime when installed, else PyTorch). Logits are
divided by the checkpoint's temperature (fitted on validation data at training time), so a digit's
confidence is a calibrated probability and a string's confidence is the product over its digits.
"""

from __future__ import annotations

import dataclasses
import functools
import math
import time
import warnings
from dataclasses import dataclass, field
from os import PathLike
from pathlib import Path
from typing import Any

import numpy as np
import torch

from digitlab.checkpoint import Checkpoint, load_checkpoint
from digitlab.engine import Recognizer, as_recognizer
from digitlab.read import linereader, segment
from digitlab.read.config import ReadConfig, crop_settings_differ
from digitlab.read.errors import ReadError
from digitlab.read.image import Page, load_gray, prepare
from digitlab.read.verifier import beside as verifier_beside
from digitlab.read.verifier import load_verifier, logsumexp, pair_logp, single_digit_logp, verifier_logp

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
    # Field mode (read(..., field=True)): what was written, separators and marks included, and the field
    # reader's probability of it; None when the segmenter read the image
    raw_text: str | None = None
    field_confidence: float | None = None  # of the digits (text)
    raw_confidence: float | None = None  # of the whole field as written (raw)

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
    def raw(self) -> str:
        """What was written, separators and marks included (field mode: `1.000.-` for text `1000`); the text
        when the segmenter read the image."""
        return self.text if self.raw_text is None else self.raw_text

    @property
    def confidence(self) -> float:
        """Probability that every digit is right (product of the calibrated confidences; 0 if any is '?');
        in field mode the field reader's probability of the digits read (`raw_confidence`: of the field as
        written, marks included)."""
        if self.field_confidence is not None:
            return self.field_confidence
        if not self.digits:
            return 0.0
        return math.prod(0.0 if d.rejected else d.confidence for d in self.digits)

    def to_dict(self) -> dict[str, Any]:
        return {"source": self.source, "text": self.text, "raw": self.raw, "confidence": round(self.confidence, 4),
                "size": list(self.size), "lines": [
                    {"text": t, "confidence": round(math.prod(0.0 if d.rejected else d.confidence for d in line), 4),
                     "digits": [d.to_dict() for d in line]}
                    for t, line in zip(self.line_texts, self.lines)],
                "ignored": [{"box": list(m.box), "reason": m.reason} for m in self.ignored],
                "temperature": self.temperature, "seconds": round(self.seconds, 4),
                **({"raw_confidence": round(self.raw_confidence, 4)} if self.raw_confidence is not None else {})}


def typical_logit(ckpt: Checkpoint | Recognizer, cands: list[segment.Candidate], top: np.ndarray) -> float:
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


def pair_scores(page: Page, lay: segment.Layout, cands: list[segment.Candidate], pairs: np.ndarray,
                model: Recognizer, cfg: ReadConfig) -> tuple[np.ndarray, np.ndarray]:
    """Each candidate's score when read as two merged digits (-inf where it is narrower than
    cfg.pair_min_width heights or the verifier finds it less than cfg.pair_min likely a pair), and
    log p(a, b) (N, 10, 10): the verifier's pairs (log-probabilities from pair_logp), weighed with the
    classifier's reading of the crop's left and right halves (p_left(a) p_right(b) to the power
    cfg.pair_halves), since the verifier sees a pair squeezed into 20x20 pixels and the classifier
    reads each digit at full size. Score: pair_weight * log p(a pair) + log p(best a, b | a pair) +
    the prior of two digits - pair_penalty."""
    h = page.text_height
    mass = logsumexp(pairs.reshape(len(cands), -1))  # log p(two merged digits), any two
    wide = np.array([c.box[2] >= cfg.pair_min_width * max(h, c.box[3]) for c in cands])
    likely = np.flatnonzero(wide & (mass > np.log(cfg.pair_min)))
    pairs = pairs.copy()
    if cfg.pair_halves and likely.size:
        halves = np.stack([segment.crop(page, lay, lay.pieces_of(cands[k]), cands[k].box, half)
                           for k in likely for half in (0, 1)])
        logits = torch.from_numpy(model.logits(halves))
        side = (logits / model.temperature).log_softmax(1).double().numpy().reshape(len(likely), 2, -1)
        pairs[likely] += cfg.pair_halves * (side[:, 0, :, None] + side[:, 1, None, :])
    given = pairs.reshape(len(cands), -1) - logsumexp(pairs.reshape(len(cands), -1))[:, None]
    score = np.full(len(cands), -np.inf)
    for k in likely:
        score[k] = cfg.pair_weight * mass[k] + given[k].max() + segment.pair_prior(cands[k], cfg, h) - cfg.pair_penalty
    return score, pairs


def pair_readings(cand: segment.Candidate, joint: np.ndarray, crop: np.ndarray, page: Page,
                  classes: list[str], line: int, cfg: ReadConfig) -> list[DigitReading]:
    """The two digits of a candidate read as a merged pair: joint (10, 10) holds the probabilities of
    each pair (left a, right b), from pair_scores. Each digit gets its marginal probabilities and the
    pair's confidence; the box is split in two halves (the digits overlap: no column parts them)."""
    joint = joint / max(joint.sum(), 1e-12)
    a, b = np.unravel_index(int(joint.argmax()), joint.shape)
    confidence = float(joint[a, b])
    x, y, w, hh = cand.box
    out = []
    halves = ((a, joint.sum(1), (x, y, w // 2, hh)), (b, joint.sum(0), (x + w // 2, y, w - w // 2, hh)))
    for best, marginal, box in halves:
        reason = f"low confidence {confidence:.2f} < {cfg.reject_below:.2f} (a merged pair)" \
            if confidence < cfg.reject_below else None
        out.append(DigitReading(text=REJECTED if reason else classes[best], best=classes[best], confidence=confidence,
                                probabilities=tuple(float(q) for q in marginal), box=page.to_original(box), line=line,
                                rejected=reason, crop=crop))
    return out


def with_verifier_classes(probs: np.ndarray, vlogp: np.ndarray, single: np.ndarray, weight: float) -> np.ndarray:
    """The classifier's class probabilities (N, C) times the verifier's own reading of the crop as one
    of the ten digits (vlogp: verifier_logp's output, single = log p(one whole digit)) to the power `weight`,
    renormalised. The verifier learnt digits from the segmenter's own crops (cut strokes, a neighbour's
    stroke, box residue), which the classifier never saw."""
    logp = np.log(np.maximum(probs, 1e-12)) + weight * (vlogp[:, :10] - single[:, None])
    logp -= logp.max(1, keepdims=True)
    odds = np.exp(logp)
    return odds / odds.sum(1, keepdims=True)


def peaks(text: linereader.LineText, logp: torch.Tensor) -> np.ndarray:
    """(n, C) class probabilities of each digit the line reader read: those of the frame where its label
    peaks, blank left out."""
    probs = logp.exp().double().numpy()
    rows = [probs[span[0] + int(probs[span[0]:span[1], label].argmax()), :-1]
            for label, span in zip(text.labels, text.frames)]
    out = np.array(rows).reshape(len(rows), probs.shape[1] - 1)
    return out / np.maximum(out.sum(1, keepdims=True), 1e-12)


def line_digits(text: linereader.LineText, logp: torch.Tensor, li: linereader.LineImage, page: Page,
                lay: segment.Layout, k: int, classes: list[str], line_no: int, cfg: ReadConfig) -> list[DigitReading]:
    """The line reader's digits of line k, with their peaks' probabilities; each box is the line's ink
    under the digit's frames."""
    out = []
    for label, span, p in zip(text.labels, text.frames, peaks(text, logp)):
        confidence = float(p[label])
        box = linereader.frame_box(li, span, page, lay, k)
        reason = f"low confidence {confidence:.2f} < {cfg.reject_below:.2f} (the line reader's)" \
            if confidence < cfg.reject_below else None
        out.append(DigitReading(text=REJECTED if reason else classes[label], best=classes[label],
                                confidence=confidence, probabilities=tuple(float(q) for q in p),
                                box=page.to_original(box), line=line_no, rejected=reason,
                                crop=segment.crop(page, lay, lay.lines[k].pieces, box)))
    return out


def arbitrate(digits: list[DigitReading], li: linereader.LineImage, logp: torch.Tensor, page: Page,
              lay: segment.Layout, k: int, classes: list[str], cfg: ReadConfig) -> list[DigitReading]:
    """Line k as the segmenter read it (digits), or as the line reader reads it (logp: its (T, C+1)
    log-probabilities for the line image li): the line reader's string when it finds it cfg.line_margin
    nats more likely than the segmenter's (log p under CTC; cfg.line_margin_count when the two find
    different numbers of digits); where the two agree on every digit the segmenter did not reject and
    the line reader's string is at least cfg.line_accept likely, the segmenter's rejected digits take the
    line reader's reading. (Multiplying the two readings' class probabilities digit by digit, where both
    find as many digits, did worse on the tuning seeds.)"""
    text = linereader.decode(logp, classes)
    if not text.labels:
        return digits
    index = {c: i for i, c in enumerate(classes)}
    mine = [index[d.best] for d in digits]
    theirs = list(text.labels)
    agree = len(theirs) == len(mine) and all(d.rejected or a == b for d, a, b in zip(digits, mine, theirs))
    if agree and any(d.rejected for d in digits) and math.exp(text.logp) >= cfg.line_accept:
        read = line_digits(text, logp, li, page, lay, k, classes, digits[0].line, cfg)
        return [r if d.rejected and not r.rejected else d for d, r in zip(digits, read)]
    margin = cfg.line_margin if len(theirs) == len(mine) else cfg.line_margin_count
    if theirs != mine and text.logp - linereader.sequence_logp(logp, [mine])[0] > margin:
        return line_digits(text, logp, li, page, lay, k, classes, digits[0].line, cfg)
    return digits


def without_unread_lines(lines: list[list[DigitReading]], ignored: list[Ignored],
                         ) -> tuple[list[list[DigitReading]], list[Ignored]]:
    """Lines of nothing but rejected crops, where other lines read, moved to the ignored ink (the lines
    left renumbered): digits seldom all fail together, dark blots of paper texture and box remains do."""
    unread = [all(d.rejected for d in line) for line in lines]
    if all(unread):
        return lines, ignored
    kept = [[dataclasses.replace(d, line=k) for d in line]
            for k, line in enumerate(line for line, out in zip(lines, unread) if not out)]
    dropped = [Ignored(d.box, "a line of nothing but unreadable marks, beside lines that read")
               for line, out in zip(lines, unread) if out for d in line]
    return kept, ignored + dropped


@functools.cache
def _bundled() -> tuple[Checkpoint, Checkpoint, Checkpoint]:
    from digitlab.pretrained import bundled

    folder = bundled()
    return (load_checkpoint(folder), load_verifier(verifier_beside(folder)),
            linereader.load_line_reader(linereader.beside(folder)))


def bundled_reader(verifier: str | PathLike | Checkpoint | None = None,
                   line_reader: str | PathLike | Checkpoint | None = None,
                   ) -> tuple[Checkpoint, str | PathLike | Checkpoint, str | PathLike | Checkpoint]:
    """The bundled MNIST classifier (loaded once per process) with the given verifier and line reader,
    else the bundled ones."""
    model, checker, second = _bundled()
    return model, verifier if verifier is not None else checker, line_reader if line_reader is not None else second


def read(image: Any, checkpoint: str | PathLike | Checkpoint | None = None, config: ReadConfig | None = None,
         verifier: str | PathLike | Checkpoint | None = None,
         line_reader: str | PathLike | Checkpoint | None = None, *, backend: str | None = None,
         field: bool = False, field_reader: str | PathLike | Checkpoint | None = None) -> Reading:
    """Read every digit string in an image: a file path (PNG, JPEG, BMP, TIFF, WebP, ...), a PIL image
    or an array, a photo or a scan, dark ink on light paper or the reverse. checkpoint: the classifier;
    None for the bundled MNIST reader (digitlab.pretrained), whose verifier and line reader then serve
    where none is given. verifier: a checkpoint made by `digitlab train-verifier`
    (digitlab.read.verifier), which tells whole digits from merged pairs and parts of digits; without
    one, the classifier's scores alone choose the segmentation. line_reader: a checkpoint made by
    `digitlab train-line-reader` (digitlab.read.linereader), a second opinion on each line that reads
    touching and overlapping digits no cut parts. The classifier may also be a `digitlab.engine.Recognizer`
    (an .onnx file too, through one); backend: "onnxruntime", "torch", or None: ONNX Runtime when it is
    installed, else PyTorch (a Recognizer given keeps its own).

    field=True: the image holds one number in its field (a cheque amount, a table cell, a form field),
    read whole by a field reader (`digitlab train-field-reader`, digitlab.read.fieldreader): `field_reader`,
    else the one in the classifier's run folder (RUN/field-reader); ruling lines, margins, page edges and
    printed backgrounds are the field reader's to ignore, and Reading.raw keeps separators and marks."""
    started = time.perf_counter()
    if field:
        return read_field(image, field_reader if field_reader is not None else checkpoint, config, started,
                          backend=backend)
    if checkpoint is None:
        _, verifier, line_reader = bundled_reader(verifier, line_reader)
    cfg = config or ReadConfig()
    ckpt = as_recognizer(checkpoint, backend)
    checker = load_verifier(verifier) if verifier is not None else None
    second = linereader.load_line_reader(line_reader) if line_reader is not None else None
    for note in helper_notes(ckpt, cfg, checker, second):
        warnings.warn(note, ReadWarning, stacklevel=2)
    gray, scale, name = load_gray(image, cfg)
    page = prepare(gray, cfg, scale, name)
    return recognize(page, ckpt, cfg, started, checker, second)


class ReadWarning(UserWarning):
    """A reader's helper that is used with a caveat, or not used: shown once per message."""


def helper_notes(ckpt: Checkpoint | Recognizer, cfg: ReadConfig, verifier: Checkpoint | None,
                 line_reader: Checkpoint | None) -> list[str]:
    """One line per way the verifier or line reader does not fit this reading: learnt from another
    dataset's digits than the classifier's (a line reader is then not used; a verifier only weighs
    candidates as one digit or not), or from crops made with other reading settings."""
    notes = []
    dataset = ckpt.meta.get("dataset")
    for what, helper, effect in (("verifier", verifier, "it only weighs whether a crop is one digit"),
                                 ("line reader", line_reader, "it is not used")):
        if helper is None:
            continue
        if helper.meta.get("dataset") != dataset:
            notes.append(f"the {what} learnt {helper.meta.get('dataset')} digits, the model {dataset}: {effect}")
        differ = crop_settings_differ(helper.meta.get("read_config") or {}, cfg)
        if differ:
            notes.append(f"the {what} learnt crops made with other reading settings ({', '.join(differ[:4])}"
                         + (f" and {len(differ) - 4} more" if len(differ) > 4 else "") + "): it may read worse")
    return notes


def recognize(page: Page, ckpt: Recognizer, cfg: ReadConfig, started: float | None = None,
              verifier: Checkpoint | None = None, line_reader: Checkpoint | None = None) -> Reading:
    """Segment a prepared page, score every candidate digit in one model call (and one verifier call),
    pick each line's best reading, and reject what is not convincingly a digit; with a line reader of the
    model's dataset, read every line once more (one call) and let arbitrate settle each line."""
    started = time.perf_counter() if started is None else started
    h = page.text_height
    lay = segment.layout(page, cfg)
    cands = segment.candidates(lay, cfg, h)
    temperature = ckpt.temperature
    classes = ckpt.classes
    if cands:
        crops = np.stack([segment.crop(page, lay, lay.pieces_of(c), c.box)
                          for c in cands])
        logits = torch.from_numpy(ckpt.logits(crops))
        probs = (logits / temperature).softmax(1).numpy().astype(np.float64)
        top = logits.max(1).values.numpy().astype(np.float64)
    else:
        crops, probs, top = np.zeros((0, 28, 28), np.uint8), np.zeros((0, len(classes))), np.zeros(0)
    ref = typical_logit(ckpt, cands, top)
    looks = digitness(top, ref, cfg)
    single = np.zeros(len(cands))  # log p(one whole digit), from the verifier
    pairs = None  # log p(two merged digits a, b) (N, 10, 10), from a verifier that reads pairs
    if verifier is not None and len(cands):
        vlogp = verifier_logp(verifier, crops, cfg.batch_size)
        single = single_digit_logp(vlogp)
        if verifier.meta.get("dataset") == ckpt.meta.get("dataset"):  # the same classes
            pairs = pair_logp(vlogp)
            if cfg.verifier_classes:
                probs = with_verifier_classes(probs, vlogp, single, cfg.verifier_classes)
    score = np.log(np.maximum(probs.max(1), 1e-12)) + looks + cfg.verifier_weight * single if len(cands) \
        else np.zeros(0)
    pair_score = None
    if pairs is not None and cfg.pair_weight:
        pair_score, pairs = pair_scores(page, lay, cands, pairs, ckpt, cfg)

    second: dict[int, tuple[linereader.LineImage, torch.Tensor]] = {}
    if line_reader is not None and line_reader.meta.get("dataset") == ckpt.meta.get("dataset"):
        images = {k: li for k in range(len(lay.lines)) if (li := linereader.line_image(page, lay, k)) is not None}
        logps = linereader.read_lines(line_reader, list(images.values()), ckpt.backend)  # all lines in one call
        second = {k: (li, logp) for (k, li), logp in zip(images.items(), logps)}

    lines: list[list[DigitReading]] = []
    ignored = [Ignored(page.to_original(m.box), m.reason) for m in lay.marks]
    by_line: dict[int, list[int]] = {}
    for c, cand in enumerate(cands):
        by_line.setdefault(cand.line, []).append(c)
    for k, line in enumerate(lay.lines):
        idx = by_line.get(k, [])
        chosen, skipped = segment.best_path(line, [cands[c] for c in idx], score[idx], cfg,
                                            pair_score[idx] if pair_score is not None else None)
        digits = []
        for local, two in chosen:
            c = idx[local]
            if two:
                digits += pair_readings(cands[c], np.exp(pairs[c]), crops[c], page, classes, len(lines), cfg)
                continue
            p = probs[c]
            best = int(p.argmax())
            reason = rejection(cands[c], crops[c], float(p[best]), float(top[c]), ref, h, cfg)
            digits.append(DigitReading(text=REJECTED if reason else classes[best], best=classes[best],
                                       confidence=float(p[best]), probabilities=tuple(float(q) for q in p),
                                       box=page.to_original(cands[c].box), line=len(lines), rejected=reason,
                                       crop=crops[c]))
        ignored += [Ignored(page.to_original(line.pieces[i].box), "mark (dash, comma or stray stroke)")
                    for i in skipped]
        if digits and k in second:
            digits = arbitrate(digits, *second[k], page, lay, k, classes, cfg)
        if digits:
            lines.append(digits)
    if not cfg.keep_unread_lines:
        lines, ignored = without_unread_lines(lines, ignored)
    return Reading(source=page.source, size=page.size, lines=lines, ignored=ignored, temperature=temperature,
                   seconds=time.perf_counter() - started, page=page)


def read_field(image: Any, reader: str | PathLike | Checkpoint | None, config: ReadConfig | None = None,
               started: float | None = None, *, backend: str | None = None) -> Reading:
    """read(image, field=True): the one number of a field image, by a field reader checkpoint or the one
    beside a classifier's run folder, its network on `backend` (None: ONNX Runtime when installed). Each
    digit's box is the ink of its share of the number (fieldreader.ink_box)."""
    from digitlab.read import fieldreader

    started = time.perf_counter() if started is None else started
    ckpt = field_reader_of(reader)
    cfg = config or ReadConfig()
    gray, scale, name = load_gray(image, cfg)
    result = fieldreader.read_fields([gray], ckpt, backend)[0]
    h = gray.shape[0]
    digits = [DigitReading(text=ch, best=ch, confidence=p, probabilities=(), line=0,
                           box=tuple(int(round(v / scale)) for v in (x0, y0, x1 - x0, y1 - y0)))
              for ch, p, (x0, y0, x1, y1) in result.chars if ch not in fieldreader.MARKS]
    return Reading(source=name, size=(int(round(gray.shape[1] / scale)), int(round(h / scale))),
                   lines=[digits] if digits else [], ignored=[], temperature=1.0,
                   seconds=time.perf_counter() - started, raw_text=result.raw, field_confidence=result.confidence,
                   raw_confidence=result.raw_confidence)


def field_reader_of(reader: str | PathLike | Checkpoint | None) -> Checkpoint:
    """The field reader meant by `reader`: a field reader checkpoint or its folder, the one beside a
    classifier's run folder (RUN/field-reader), or for None the bundled set's; a ReadError says how to get
    one when there is none."""
    from digitlab.read import fieldreader

    if isinstance(reader, Checkpoint) and reader.meta.get("role") == fieldreader.ROLE:
        return reader
    found = None
    if reader is not None and not isinstance(reader, Checkpoint):
        path = Path(reader)
        found = path if (path / "model.json").is_file() and _role(path) == fieldreader.ROLE \
            else fieldreader.beside(path)
    if found is None and reader is None:
        from digitlab.pretrained import bundled

        found = fieldreader.beside(bundled())
    if found is None:
        raise ReadError(f"no field reader{f' in {reader}' if reader is not None else ''}: train one with "
                        f"`digitlab train-field-reader --out RUN/field-reader` and pass it (--field-reader)")
    return _load_field_reader(str(found))


def _role(folder: Path) -> str | None:
    import json

    try:
        return json.loads((folder / "model.json").read_text()).get("role")
    except (OSError, ValueError):
        return None


@functools.lru_cache(maxsize=4)
def _load_field_reader(path: str) -> Checkpoint:
    from digitlab.read import fieldreader

    return fieldreader.load_field_reader(path)
