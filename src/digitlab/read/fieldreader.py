"""The field reader: one number in the crop that holds it (a cheque amount, a table cell, a form field), read
from the grey image itself by a CNN + BiLSTM trained with CTC.

The segmenter reads a page by binarizing it and cutting its ink into digits with tuned thresholds; in a
field the ink it finds includes a security background's wavy lines, a cell's ruling lines and the dark
band of a page edge, each read as digits or rejected. The field reader has no thresholds: it sees the
whole field, scaled to LINE_HEIGHT pixels high and brought to ink-bright contrast (``field_image``), and
emits what was written, separators and marks included (classes: the digits, then ``MARKS``). It learns
from fields drawn by ``digitlab.read.fields`` with every nuisance at random (domain randomisation), from
training digits only (MNIST *train*, or a training run's own, so that another script gets its own
reader); the benchmarks draw theirs from test digits.

    digitlab train-field-reader --out runs/field-reader --data-dir ../shared/datasets
    digitlab read cheque.png --field                     # the bundled one, when the package has it
    digitlab read cell.png --field --field-reader runs/field-reader
"""

from __future__ import annotations

import dataclasses
import json
import math
import time
from collections.abc import Callable
from dataclasses import dataclass
from os import PathLike
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import torch
from tqdm.auto import tqdm

from digitlab.atomic import write_text
from digitlab.calibrate import calibration_gap
from digitlab.checkpoint import Checkpoint, load_checkpoint, save_checkpoint
from digitlab.data.preprocess import ink_is_dark
from digitlab.errors import ConfigError
from digitlab.models import create_model
from digitlab.models.linereader import HEIGHTS, LINE_HEIGHT, STRIDE
from digitlab.read import fields
from digitlab.read.config import FieldReaderConfig
from digitlab.read.errors import ReadError
from digitlab.read.linereader import (
    CTCLoss,
    LineBatches,
    LineImage,
    Lines,
    decode,
    evaluate_lines,
    greedy,
    pack_lines,
    read_lines,
    sequence_logp,
    unpack_lines,
)

ROLE = "field-reader"  # meta["role"] of a field reader checkpoint
MARKS = ".,'-=/$*#"  # the classes after the digits: what fields.py writes around a number
MAX_WIDTH = 1024  # pixels: a field image is cut to this width (32 high: a field 32 times wider than high)
FIELDS = "fields.npz"  # a field reader run's drawn training and validation fields
LATIN = ("mnist", "usps", "digits")  # datasets of Western Arabic digits: their 1s and 7s may be written the
# continental way (FieldReaderConfig.continental)


def classes_of(digit_classes: list[str]) -> list[str]:
    """A field reader's classes: its script's ten digits, then the marks."""
    return [*digit_classes, *MARKS]


def field_image(gray: np.ndarray, height: int = LINE_HEIGHT, dark_ink: bool | None = None) -> np.ndarray:
    """A field of either polarity (H, W) uint8 -> (height, W') uint8, ink bright on dark: scaled to
    height - 2 pixels high (aspect kept; at most MAX_WIDTH * height / LINE_HEIGHT wide), its median level
    (the paper) at 0 and its 99.5th percentile at 255, padded by STRIDE columns each side. dark_ink: the
    polarity when known, else ink_is_dark's."""
    if gray.ndim != 2 or min(gray.shape) < 2:
        raise ReadError(f"a field image must be 2-D and at least 2x2 pixels, got shape {gray.shape}")
    g = gray.astype(np.float32)
    if ink_is_dark(gray) if dark_ink is None else dark_ink:
        g = 255 - g
    h, w = g.shape
    inner = height - 2
    width = int(min(MAX_WIDTH * height // LINE_HEIGHT - 2 * STRIDE, max(2 * STRIDE, round(w * inner / h))))
    small = cv2.resize(g, (width, inner), interpolation=cv2.INTER_AREA if h > inner else cv2.INTER_LINEAR)
    lo, hi = np.percentile(small, [50, 99.5])
    small = np.clip((small - lo) / max(hi - lo, 16.0), 0, 1)
    out = np.zeros((height, width + 2 * STRIDE), np.float32)
    out[1:1 + inner, STRIDE:STRIDE + width] = small
    return (out * 255).round().astype(np.uint8)


# --- training data ----------------------------------------------------------------------------------

def make_fields(digits: np.ndarray, labels: np.ndarray, n: int, seed: int, fcfg: FieldReaderConfig,
                progress: bool = False, latin: bool = False) -> Lines:
    """(field image, class indices of what was written) for n fields drawn from `digits` (labels 0-9).
    Each block of fields draws from a fresh copy of a random part of the digits: other hands than the
    dataset's, distorted by fcfg.augment (slant, shear, elastic strokes) and, for Latin digits (latin),
    with fcfg.continental of the 1s and 7s written the continental way (fields.continental); fcfg.uneven of
    the fields with nuisances are written unevenly (fields' "uneven")."""
    from digitlab.data.augment import parse_augment

    rng = np.random.default_rng(seed)
    augment = parse_augment(fcfg.augment)
    styles = fcfg.continental if latin else 0.0
    generator = torch.Generator().manual_seed(seed)
    out = []
    index = {c: 10 + k for k, c in enumerate(MARKS)}
    pool, pool_labels = digits, labels
    for k in tqdm(range(n), desc="drawing fields", unit="field", disable=not progress, leave=False):
        if (augment.enabled or styles) and k % _BLOCK == 0:
            picks = rng.choice(len(digits), min(len(digits), 8 * _BLOCK), replace=False)
            pool, pool_labels = digits[picks], labels[picks]
            if styles:
                pool = fields.continental(pool, pool_labels, styles, rng)
            if augment.enabled:
                x = torch.from_numpy(pool).float().div(255)[:, None]
                pool = (augment(x, generator)[:, 0] * 255).round().clamp(0, 255).to(torch.uint8).numpy()
        u = rng.random()
        if u < fcfg.plain_share:
            sample = fields.make_field(pool, pool_labels, fields.CHEQUE if rng.random() < 0.5 else fields.CELL, rng,
                                       only=set())
        else:
            spec = fields.CHEQUE if u < fcfg.plain_share + fcfg.cheque_share else fields.CELL
            if fcfg.uneven:
                spec = dataclasses.replace(spec, chances=(*spec.chances, ("uneven", fcfg.uneven)))
            sample = fields.make_field(pool, pool_labels, spec, rng)
        out.append((field_image(sample.image, fcfg.height, dark_ink=True),  # as fields.py writes them
                    [int(c) if c.isdigit() else index[c] for c in sample.raw[0]]))
    return out


_BLOCK = 500  # fields drawn from one distorted copy of (8 x this many) digits


# --- reading ------------------------------------------------------------------------------------------

@dataclass(frozen=True)
class FieldReading:
    text: str  # the digits
    raw: str  # as written: digits, separators and marks
    confidence: float  # probability that `text` is right: of these digits, whatever marks stand between them
    raw_confidence: float  # probability of `raw` as written (CTC, all alignments)
    chars: tuple[tuple[str, float, tuple[int, int, int, int]], ...]  # (char, its best frame's probability,
    # its box (x0, y0, x1, y1) in the field image's pixels: the ink around where its frames are)
    seconds: float


def read_fields(images: list[np.ndarray], reader: Checkpoint, backend: str | None = None) -> list[FieldReading]:
    """Read gray field images (H, W) uint8 of either polarity with a field reader checkpoint, its network on
    `backend` (None: ONNX Runtime when installed, else PyTorch). A field that ink_is_dark judges light ink
    is read both ways round, and the surer reading kept."""
    started = time.perf_counter()
    dark = [ink_is_dark(g) for g in images]
    out = _read(images, dark, reader, backend)
    # A field judged light ink on dark paper is read the other way too, and the reading the reader is surer
    # of wins: a dense printed pattern can pass for the paper and turn the polarity detector round
    again = [k for k, d in enumerate(dark) if not d]
    for k, other in zip(again, _read([images[k] for k in again], [True] * len(again), reader, backend)):
        if other.confidence > out[k].confidence:
            out[k] = other
    each = (time.perf_counter() - started) / max(1, len(images))
    return [dataclasses.replace(r, seconds=each) for r in out]


def _read(images: list[np.ndarray], dark: list[bool], reader: Checkpoint, backend: str | None) -> list[FieldReading]:
    """read_fields with each field's polarity given."""
    if not images:
        return []
    height = int(reader.meta.get("line_height", LINE_HEIGHT))
    lines = [field_image(g, height, d) for g, d in zip(images, dark)]
    logps = read_lines(reader, [LineImage(image=li, scale=1.0, x0=0, y0=0.0) for li in lines], backend)
    temperature = float(reader.meta.get("temperature", 1.0))
    if temperature != 1.0:
        logps = [(logp / temperature).log_softmax(1) for logp in logps]
    classes = reader.classes
    out = []
    for gray, li, logp in zip(images, lines, logps):
        best = decode(logp, classes)
        probs = logp.exp().numpy()
        scale = gray.shape[0] / (height - 2)
        # each char's window: the BiLSTM's CTC output tells the order of the chars, not where each one
        # is (it may peak at the very first frame for a char further right), so the number's ink is
        # shared out in reading order, a digit getting about three times a mark's width
        n_digits = len(classes) - len(MARKS)
        weights = np.array([1.0 if c < n_digits else 0.35 for c in best.labels])
        ink = without_lines(li)
        left, right = number_columns(ink)
        cuts = left + (right - left) * np.concatenate([[0.0], np.cumsum(weights) / max(weights.sum(), 1e-9)])
        chars = []
        for k, (c, (s, e)) in enumerate(zip(best.labels, best.frames)):
            x0, y0, x1, y1 = ink_box(ink, int(cuts[k]), int(math.ceil(cuts[k + 1])))
            chars.append((classes[c], float(probs[s:e, c].max()),
                          (max(0, int((x0 - STRIDE) * scale)), max(0, int((y0 - 1) * scale)),
                           min(gray.shape[1], int(math.ceil((x1 - STRIDE) * scale))),
                           min(gray.shape[0], int(math.ceil((y1 - 1) * scale))))))
        digits = [c for c in best.labels if c < n_digits]
        out.append(FieldReading(text="".join(classes[c] for c in digits), raw=best.text,
                                confidence=digits_probability(logp, digits),
                                raw_confidence=float(math.exp(best.logp)), chars=tuple(chars), seconds=0.0))
    return out


def without_lines(image: np.ndarray) -> np.ndarray:
    """A field image (ink bright) as float ink with what runs along or across nearly the whole field taken
    away (a ruling line, a band: bright in 90% of a row or a column): nobody's ink."""
    g = image.astype(np.float32)
    g = np.clip(g - np.percentile(g, 10, axis=1, keepdims=True), 0, None)
    return np.clip(g - np.percentile(g, 10, axis=0, keepdims=True), 0, None)


def number_columns(ink: np.ndarray) -> tuple[int, int]:
    """The columns [x0, x1) of the number in `ink` (without_lines): from the first to the last column with a
    tenth of the busiest column's ink; all of it when there is none."""
    profile = ink.sum(0)
    if profile.max() <= 0:
        return 0, ink.shape[1]
    columns = np.flatnonzero(profile >= 0.1 * profile.max())
    return int(columns[0]), int(columns[-1]) + 1


def ink_box(ink: np.ndarray, x0: int, x1: int) -> tuple[int, int, int, int]:
    """The box (x0, y0, x1, y1) of the ink between columns x0 and x1 of `ink` (without_lines): the rows,
    then the columns, with a tenth of the busiest one's ink, joined across gaps of up to 3, around the
    busiest. The window itself when it holds no ink."""
    x0, x1 = max(0, x0), min(ink.shape[1], max(x0 + 1, x1))
    window = ink[:, x0:x1]
    if window.max() <= 0:
        return x0, 0, x1, ink.shape[0]
    ya, yb = _busiest_run(window.sum(1))
    xa, xb = _busiest_run(window[ya:yb].sum(0))
    return x0 + xa, ya, x0 + xb, yb


def _busiest_run(profile: np.ndarray) -> tuple[int, int]:
    rows = np.flatnonzero(profile >= 0.1 * profile.max())
    peak = int(profile.argmax())
    run = next(r for r in np.split(rows, np.flatnonzero(np.diff(rows) > 4) + 1) if r[0] <= peak <= r[-1])
    return int(run[0]), int(run[-1]) + 1


def digits_probability(logp: torch.Tensor, digits: list[int]) -> float:
    """P(the digits read are `digits`) under CTC, the marks counted as nothing: each frame's mark classes
    and blank merged into one blank, then the probability of the digit sequence (all alignments)."""
    tail = len(MARKS) + 1  # the marks and the blank, last
    merged = torch.cat([logp[:, :-tail], logp[:, -tail:].logsumexp(1, keepdim=True)], 1)
    if not digits:
        return float(merged[:, -1].sum().exp())
    return float(np.exp(sequence_logp(merged, [digits])[0]))


# --- calibration ------------------------------------------------------------------------------------

TEMPERATURES = np.geomspace(0.4, 4.0, 41)


def fit_temperature(model: torch.nn.Module, lines: Lines) -> dict[str, float]:
    """The temperature T that makes a field's confidence (the probability of the digits it reads, from the
    log-probabilities divided by T) honest on held-out fields: the T of least log loss of "digits read
    exactly" over TEMPERATURES. T does not change what is read, only how sure it says it is. Returns T and
    the expected calibration error (10 bins) before and after."""
    logps = read_lines(Checkpoint(model.eval(), {}), [LineImage(image=img, scale=1.0, x0=0, y0=0.0)
                                                       for img, _ in lines])
    n_digits = logps[0].shape[1] - 1 - len(MARKS) if logps else 10
    read = [[c for c in greedy(logp.numpy())[0] if c < n_digits] for logp in logps]
    exact = np.array([r == [c for c in t if c < n_digits] for r, (_, t) in zip(read, lines)], float)

    def confidences(t: float) -> np.ndarray:
        return np.array([digits_probability((logp / t).log_softmax(1), r) for logp, r in zip(logps, read)])

    def log_loss(p: np.ndarray) -> float:
        p = np.clip(p, 1e-6, 1 - 1e-6)
        return float(-(exact * np.log(p) + (1 - exact) * np.log(1 - p)).mean())

    scaled = [confidences(t) for t in TEMPERATURES]
    k = int(np.argmin([log_loss(p) for p in scaled]))
    return {"temperature": float(TEMPERATURES[k]), "ece_before": calibration_gap(confidences(1.0), exact, 10),
            "ece_after": calibration_gap(scaled[k], exact, 10)}


# --- training -----------------------------------------------------------------------------------------

def train_field_reader(fcfg: FieldReaderConfig | None, out_dir: str | Path, data_dir: str | PathLike | None = None,
                       *, resume: bool = False, progress: bool = True, log: Callable[[str], None] = print,
                       ) -> dict[str, Any]:
    """Draw labelled fields from training digits, train the field reader through the one training loop
    and save it to the run folder out_dir (role "field-reader"); return its metrics. resume=True continues
    an interrupted run with its saved config and fields."""
    from digitlab.data import get_spec
    from digitlab.read.helperrun import drawn_data, open_helper_run
    from digitlab.train import TrainConfig
    from digitlab.train.loop import train_loop

    started = time.perf_counter()
    fcfg, out, start = open_helper_run(fcfg, out_dir, resume, FieldReaderConfig, load_field_reader)
    log(f"field reader config: {fcfg.to_dict()}")

    def draw(digits: np.ndarray, labels: np.ndarray, dataset: str) -> dict[str, np.ndarray]:
        latin = dataset in LATIN
        return {**pack_lines(make_fields(digits, labels, fcfg.images, fcfg.seed, fcfg, progress, latin), "train"),
                **pack_lines(make_fields(digits, labels, fcfg.val_images, fcfg.seed + 10_000, fcfg, latin=latin),
                             "val")}

    arrays, dataset = drawn_data(fcfg, out, data_dir, resume, FIELDS, draw, "fields", log, start)
    train, val = unpack_lines(arrays, "train"), unpack_lines(arrays, "val")
    log(f"{len(train)} training fields, {len(val)} validation fields, {time.perf_counter() - started:.0f} s")
    classes = classes_of(list(get_spec(dataset).classes))
    meta = {"model": "line-reader", "model_args": {"num_classes": len(classes), "width": fcfg.width,
                                                   "hidden": fcfg.hidden, "height": fcfg.height},
            "role": ROLE, "dataset": dataset, "classes": classes, "line_height": fcfg.height, "stride": STRIDE,
            "config": fcfg.to_dict()}
    tcfg = TrainConfig(model="line-reader", epochs=fcfg.epochs, batch_size=fcfg.batch_size, optimizer="adam",
                       lr=fcfg.lr, schedule="onecycle", warmup=0.15, clip_grad=5.0, keep="last", seed=fcfg.seed,
                       threads=fcfg.threads)
    torch.manual_seed(fcfg.seed)
    model = create_model("line-reader", num_classes=len(classes), width=fcfg.width, hidden=fcfg.hidden,
                         height=fcfg.height)
    if start is not None:
        model.load_state_dict(start.model.state_dict())
    result = train_loop(model, LineBatches(train, fcfg.batch_size), CTCLoss(train), tcfg, out=out, resume=resume,
                        meta=meta, validate=lambda m: evaluate_lines(m, val), progress=progress, log=log,
                        desc="field reader")
    if result.diverged:
        raise ConfigError(f"the field reader's {result.diverged}")
    history = [{"epoch": r["epoch"], "loss": r["train_loss"], "val_field_accuracy": r["val_accuracy"],
                "seconds": r["seconds"]} for r in result.history]
    calibration = fit_temperature(model, val)
    log(f"field confidence: temperature {calibration['temperature']:.3f}, expected calibration error on the "
        f"validation fields {calibration['ece_before']:.3f} -> {calibration['ece_after']:.3f}")
    metrics = {"val_field_accuracy": history[-1]["val_field_accuracy"], "history": history, **calibration,
               "train_fields": len(train), "val_fields": len(val), "seconds": time.perf_counter() - started}
    if start is not None:  # which weights it started from, wherever fcfg.init pointed at the time
        metrics["init_weights_sha256"] = start.meta["weights_sha256"]
    save_checkpoint(out, model.eval(), {**meta, "temperature": calibration["temperature"], "metrics": metrics})
    write_text(out / "summary.json", json.dumps({"role": ROLE, "dataset": dataset, **metrics}, indent=2))
    log(f"field reader saved to {out}: validation fields read exactly (raw, marks included) "
        f"{metrics['val_field_accuracy']:.4f}, {metrics['seconds']:.0f} s")
    return metrics


def load_field_reader(path: str | PathLike | Checkpoint) -> Checkpoint:
    """A field reader checkpoint (or one already loaded); anything else fails with a ReadError."""
    ckpt = path if isinstance(path, Checkpoint) else load_checkpoint(Path(path))
    if ckpt.meta.get("role") != ROLE:
        raise ReadError(f"{path}: not a field reader checkpoint (make one with `digitlab train-field-reader`)")
    height = ckpt.meta.get("line_height")
    if height not in HEIGHTS or ckpt.meta.get("stride") != STRIDE \
            or ckpt.meta["model_args"].get("height", LINE_HEIGHT) != height:
        raise ReadError(f"{path}: this field reader learnt images {height} pixels high, {ckpt.meta.get('stride')} "
                        f"per output frame, which this version does not make ({', '.join(map(str, HEIGHTS))} high, "
                        f"{STRIDE} per frame); train one for it with `digitlab train-field-reader`")
    return ckpt


def beside(model: str | PathLike) -> Path | None:
    """The field reader kept in a model's run folder (RUN/field-reader); None when there is none."""
    folder = Path(model) / "field-reader"
    return folder if folder.is_dir() else None
