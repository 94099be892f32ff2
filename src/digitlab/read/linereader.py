"""The line reader: a whole line of digits read at once (CNN + BiLSTM + CTC), no cuts needed.

The segmenter reads digit by digit, and two digits that touch or overlap so that no cut parts them
stay one candidate: the classifier reads it as one digit, or it is rejected. The line reader sees
the line's ink (``line_image``: the line's own components, scaled to LINE_HEIGHT pixels high) and
emits a string with CTC (connectionist temporal classification), so merged digits cost it nothing
special. It learns from synthetic strings drawn by ``digitlab.read.synth`` from training digits
(MNIST *train*, or a training run's own; the benchmarks draw from test digits only) that went
through the reader's own cleaning and line finding, like the verifier.

The reader uses it as a second opinion per line (``arbitrate``): the segmenter's string stands unless
the line reader finds its own reading more likely by cfg.line_margin nats, or the segmenter's string
holds a rejected digit that the line reader reads confidently.

    digitlab train-line-reader --out runs/lenet5-improved/line-reader --data-dir ../shared/datasets
    digitlab read photo.jpg --checkpoint runs/lenet5-improved   # finds RUN/line-reader and RUN/verifier
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
import torch.nn.functional as F
from torch import nn

from digitlab.atomic import write_text
from digitlab.checkpoint import Checkpoint, load_checkpoint, save_checkpoint
from digitlab.errors import ConfigError
from digitlab.models import create_model
from digitlab.models.linereader import LINE_HEIGHT, STRIDE
from digitlab.read import segment, synth
from digitlab.read.config import LineReaderConfig, ReadConfig
from digitlab.read.errors import ReadError
from digitlab.read.image import Page, load_gray, prepare

ROLE = "line-reader"  # meta["role"] of a line reader checkpoint
DIGIT_HEIGHT = 22  # pixels: a digit of the page's typical height is scaled to this
LINES = "lines.npz"  # a line reader run's drawn training and validation lines
GEOMETRY = {"line_height": LINE_HEIGHT, "digit_height": DIGIT_HEIGHT, "stride": STRIDE}  # what line_image makes


# --- line images ----------------------------------------------------------------------------------

@dataclass(frozen=True)
class LineImage:
    image: np.ndarray  # (LINE_HEIGHT, W) uint8, ink white on black
    scale: float  # line image pixels per work pixel
    x0: int  # work coordinates of the image's left column ...
    y0: float  # ... and of its top row


def line_image(page: Page, lay: segment.Layout, k: int) -> LineImage | None:
    """Line k's own ink (its components; other lines' and marks' ink masked out), anti-aliased edge kept,
    scaled so that a digit of the page's typical height is DIGIT_HEIGHT pixels high (less if the line is
    taller than LINE_HEIGHT allows), centred vertically. None for a line without ink."""
    pieces = lay.lines[k].pieces
    if not pieces:
        return None
    x0 = min(p.box[0] for p in pieces)
    y0 = min(p.box[1] for p in pieces)
    x1 = max(p.box[0] + p.box[2] for p in pieces)
    y1 = max(p.box[1] + p.box[3] for p in pieces)
    rows, cols, mine = segment.own_pixels(lay, pieces, (x0, y0, x1 - x0, y1 - y0), page.mask.shape)
    others = (lay.labels[rows, cols] > 0) & ~mine
    gray = segment.own_ink(page, rows, cols, mine, others).astype(np.float32)
    height, width = gray.shape
    scale = min(DIGIT_HEIGHT / max(page.text_height, 1.0), (LINE_HEIGHT - 2) / height)
    w = max(STRIDE * 2, int(round(width * scale)))
    h = max(1, int(round(height * scale)))
    small = cv2.resize(gray, (w, h), interpolation=cv2.INTER_AREA)
    out = np.zeros((LINE_HEIGHT, w + 2 * STRIDE), np.float32)
    top = (LINE_HEIGHT - h) // 2
    out[top:top + h, STRIDE:STRIDE + w] = small
    return LineImage(image=(out * 255).round().astype(np.uint8), scale=scale, x0=cols.start - STRIDE / scale,
                     y0=rows.start - top / scale)


def frames(width: int) -> int:
    """Output frames of a line image `width` pixels wide (the model's stride, padding dropped)."""
    return math.ceil(width / STRIDE)


def batch(images: list[np.ndarray]) -> torch.Tensor:
    """Line images of any widths (one height: LINE_HEIGHT, or a field reader's) -> (N, 1, height, W) float,
    zero padded on the right, W a multiple of STRIDE."""
    w = max(img.shape[1] for img in images)
    w += -w % STRIDE
    x = np.zeros((len(images), 1, images[0].shape[0], w), np.float32)
    for i, img in enumerate(images):
        x[i, 0, :, : img.shape[1]] = img / 255.0
    return torch.from_numpy(x)


# --- decoding ---------------------------------------------------------------------------------------

@dataclass(frozen=True)
class LineText:
    text: str  # class names joined
    labels: tuple[int, ...]  # class indices
    frames: tuple[tuple[int, int], ...]  # per label, its span of output frames [start, end)
    logp: float  # log-probability of the label sequence (all alignments)


def greedy(logp: np.ndarray) -> tuple[list[int], list[tuple[int, int]]]:
    """Best path decoding of (T, C+1) log-probabilities (blank last) -> labels and each one's frames: from
    its first frame to the frame before the next label's first (blanks after a digit belong to it)."""
    best = logp.argmax(1)
    blank = logp.shape[1] - 1
    labels, starts = [], []
    prev = blank
    for t, c in enumerate(best):
        if c != blank and c != prev:
            labels.append(int(c))
            starts.append(t)
        prev = c
    ends = starts[1:] + [len(best)]
    spans = []
    for i, (s, e) in enumerate(zip(starts, ends)):
        last = s
        while last + 1 < e and best[last + 1] == labels[i]:
            last += 1
        spans.append((s, last + 1))
    return labels, spans


def sequence_logp(logp: torch.Tensor, sequences: list[list[int]]) -> np.ndarray:
    """log p(sequence | line) under CTC for each of `sequences`, all read against the same (T, C+1)
    log-probabilities (blank last); -inf for a sequence too long to fit."""
    if not sequences:
        return np.zeros(0)
    n = len(sequences)
    lp = logp[:, None, :].expand(-1, n, -1)
    lengths = [len(s) for s in sequences]
    targets = torch.tensor([c for s in sequences for c in s], dtype=torch.long)
    loss = F.ctc_loss(lp, targets, torch.full((n,), logp.shape[0], dtype=torch.long),
                      torch.tensor(lengths, dtype=torch.long), blank=logp.shape[1] - 1, reduction="none",
                      zero_infinity=False)
    return (-loss).double().numpy()


def read_lines(reader: Checkpoint, images: list[LineImage], backend: str | None = None) -> list[torch.Tensor]:
    """Each line image's (T, C+1) log-probabilities, T its own frames (padding dropped), by the reader's
    network on `backend` (digitlab.engine.line_engine: None is ONNX Runtime when installed). Lines are read in
    batches of nearly equal widths (at most PAD_FRAMES frames of padding), as in training: the BiLSTM's
    backward pass starts at the batch's right edge, and a long stretch of padding before a short line's
    end changes what it reads."""
    from digitlab.engine import line_engine

    engine = line_engine(reader, backend)
    out: list[torch.Tensor | None] = [None] * len(images)
    order = sorted(range(len(images)), key=lambda i: images[i].image.shape[1])
    chunks: list[list[int]] = []
    for i in order:
        if chunks and len(chunks[-1]) < READ_BATCH and frames(images[i].image.shape[1]) - frames(
                images[chunks[-1][0]].image.shape[1]) <= PAD_FRAMES:
            chunks[-1].append(i)
        else:
            chunks.append([i])
    for chunk in chunks:
        logp = torch.from_numpy(engine(batch([images[i].image for i in chunk]).numpy()))
        for k, i in enumerate(chunk):
            out[i] = logp[: frames(images[i].image.shape[1]), k]
    return out  # type: ignore[return-value]


PAD_FRAMES = 2  # output frames of padding a line may get when read beside wider ones
READ_BATCH = 64  # lines per forward pass at most


def decode(logp: torch.Tensor, classes: list[str]) -> LineText:
    labels, frames = greedy(logp.numpy())
    return LineText(text="".join(classes[c] for c in labels), labels=tuple(labels), frames=tuple(frames),
                    logp=float(sequence_logp(logp, [labels])[0]) if labels else float(logp[:, -1].sum()))


def frame_box(li: LineImage, span: tuple[int, int], page: Page, lay: segment.Layout, k: int,
              ) -> tuple[int, int, int, int]:
    """Work coordinates (x, y, w, h) of the line's ink under output frames span = [start, end)."""
    xa = li.x0 + span[0] * STRIDE / li.scale
    xb = li.x0 + span[1] * STRIDE / li.scale
    x0, x1 = max(0, int(math.floor(xa))), min(page.mask.shape[1], int(math.ceil(xb)))
    line = lay.lines[k]
    top = int(min(p.box[1] for p in line.pieces))
    bottom = int(max(p.box[1] + p.box[3] for p in line.pieces))
    labels = {p.label for p in line.pieces}
    sub = np.isin(lay.labels[top:bottom, x0:x1], list(labels))
    rows, cols = np.flatnonzero(sub.any(1)), np.flatnonzero(sub.any(0))
    if rows.size == 0:
        return x0, top, max(1, x1 - x0), max(1, bottom - top)
    return x0 + int(cols[0]), top + int(rows[0]), int(cols[-1] - cols[0] + 1), int(rows[-1] - rows[0] + 1)


# --- training data ----------------------------------------------------------------------------------

def training_specs(lcfg: LineReaderConfig) -> tuple[synth.SynthSpec, synth.SynthSpec]:
    hard = dataclasses.replace(synth.HARD, name="line-reader-hard", touch=lcfg.touch, overlap=lcfg.overlap)
    return synth.EASY, hard


def sample_lines(sample: synth.Sample, cfg: ReadConfig) -> list[tuple[np.ndarray, list[int]]]:
    """(line image, class indices) for each line of `sample` the reader's line finding found; none when it
    found a different number of lines than were drawn (it cannot tell which line is which)."""
    gray, scale, _ = load_gray(sample.image, cfg)
    page = prepare(gray, cfg, scale)
    lay = segment.layout(page, cfg)
    if len(lay.lines) != len(sample.lines):
        return []
    out = []
    for k, text in enumerate(sample.lines):
        li = line_image(page, lay, k)
        if li is not None:
            out.append((li.image, [int(c) for c in text]))
    return out


def make_lines(digits: np.ndarray, labels: np.ndarray, n: int, seed: int, lcfg: LineReaderConfig,
               cfg: ReadConfig | None = None) -> list[tuple[np.ndarray, list[int]]]:
    """Labelled line images from n synthetic images of `digits` (training digits; labels are class indices
    0-9, which synth writes as the characters "0"-"9")."""
    cfg = cfg or ReadConfig()
    easy, hard = training_specs(lcfg)
    rng = np.random.default_rng(seed)
    out = []
    for _ in range(n):
        spec = easy if rng.random() < lcfg.easy_fraction else hard
        out += sample_lines(synth.make_sample(digits, labels, spec, rng), cfg)
    return out


_DRAWING: dict[str, Any] = {}  # a drawing process's digits, labels and config (set once per process)


def _start_drawing(digits: np.ndarray, labels: np.ndarray, lcfg: LineReaderConfig) -> None:
    torch.set_num_threads(1)
    _DRAWING.update(digits=digits, labels=labels, lcfg=lcfg)


def _draw(chunk: tuple[int, int]) -> list[tuple[np.ndarray, list[int]]]:
    n, seed = chunk
    return make_lines(_DRAWING["digits"], _DRAWING["labels"], n, seed, _DRAWING["lcfg"])


def draw_lines(digits: np.ndarray, labels: np.ndarray, n: int, seed: int, lcfg: LineReaderConfig,
               log: Callable[[str], None] | None = None) -> list[tuple[np.ndarray, list[int]]]:
    """make_lines over lcfg.workers processes, in chunks of 500 images (each chunk its own seed)."""
    chunks = [(min(500, n - i), seed * 1_000_003 + i) for i in range(0, n, 500)]
    out: list[tuple[np.ndarray, list[int]]] = []
    started = time.perf_counter()
    pool = None
    if lcfg.workers == 1:
        parts = (make_lines(digits, labels, m, s, lcfg) for m, s in chunks)
    else:
        import multiprocessing

        pool = multiprocessing.get_context("spawn").Pool(lcfg.workers, _start_drawing, (digits, labels, lcfg))
        parts = pool.imap(_draw, chunks)
    try:
        for k, part in enumerate(parts):
            out += part
            if log:
                log(f"  {min(n, (k + 1) * 500)}/{n} images, {len(out)} lines, {time.perf_counter() - started:.0f} s")
    finally:
        if pool is not None:
            pool.close()
    return out


Lines = list[tuple[np.ndarray, list[int]]]  # (line image (LINE_HEIGHT, W) uint8, class indices) each


def width_batches(lines: Lines, size: int, gen: torch.Generator | None) -> list[list[int]]:
    """Indices in batches of similar widths (little padding), in an order drawn from `gen` when given."""
    order = torch.randperm(len(lines), generator=gen).tolist() if gen is not None else list(range(len(lines)))
    out = []
    for i in range(0, len(order), size * 50):
        group = sorted(order[i:i + size * 50], key=lambda j: lines[j][0].shape[1])
        out += [group[k:k + size] for k in range(0, len(group), size)]
    if gen is not None:
        out = [out[k] for k in torch.randperm(len(out), generator=gen).tolist()]
    return out


class LineBatches:
    """The training loop's batches of lines: index lists of similar widths, shuffled each epoch."""

    def __init__(self, lines: Lines, size: int) -> None:
        self.lines, self.size = lines, size
        self.steps = len(width_batches(lines, size, None))

    def epoch(self, gen: torch.Generator) -> list[list[int]]:
        return width_batches(self.lines, self.size, gen)


@dataclass(frozen=True)
class CTCLoss:
    """The CTC loss of a batch of line indices (mean over the lines of the loss per target digit)."""

    lines: Lines
    chance: float = 0.0  # (CTC has no uniform-guess level: divergence is measured against the first loss)

    def __call__(self, model: nn.Module, idx: list[int]) -> tuple[torch.Tensor, int, None]:
        return ctc_loss(model(batch([self.lines[j][0] for j in idx])), self.lines, idx), len(idx), None


def ctc_loss(logp: torch.Tensor, lines: Lines, idx: list[int]) -> torch.Tensor:
    """CTC loss of (T, N, C+1) log-probabilities of lines[idx]."""
    steps = torch.tensor([frames(lines[j][0].shape[1]) for j in idx], dtype=torch.long)
    targets = torch.tensor([c for j in idx for c in lines[j][1]], dtype=torch.long)
    lengths = torch.tensor([len(lines[j][1]) for j in idx], dtype=torch.long)
    return F.ctc_loss(logp, targets, steps, lengths, blank=logp.shape[2] - 1, zero_infinity=True)


def evaluate_lines(model: nn.Module, lines: Lines, size: int = 64) -> tuple[float, float]:
    """(CTC loss, share of lines read exactly right by best path decoding) over `lines`, in eval mode."""
    model.eval()
    right, loss = 0, 0.0
    with torch.inference_mode():
        for idx in width_batches(lines, size, None):
            logp = model(batch([lines[j][0] for j in idx]))
            loss += float(ctc_loss(logp, lines, idx)) * len(idx)
            for i, j in enumerate(idx):
                right += greedy(logp[:frames(lines[j][0].shape[1]), i].numpy())[0] == lines[j][1]
    return loss / max(1, len(lines)), right / max(1, len(lines))


def fit_line_reader(train: Lines, val: Lines, lcfg: LineReaderConfig, log: Callable[[str], None] = print,
                    progress: bool = True, model: nn.Module | None = None, out: Path | None = None,
                    resume: bool = False, dataset: str = "mnist") -> tuple[nn.Module, dict[str, Any]]:
    """Train the line reader with CTC through the one training loop (Adam, one-cycle with 15% warm-up,
    gradients clipped at norm 5, the last epoch kept; with a run folder `out`, its checkpoints, metrics
    and resume) -> (model in eval mode, metrics). `model`: the network to train further, else a new one."""
    from digitlab.train import TrainConfig
    from digitlab.train.loop import train_loop

    tcfg = TrainConfig(model="line-reader", epochs=lcfg.epochs, batch_size=lcfg.batch_size, optimizer="adam",
                       lr=lcfg.lr, schedule="onecycle", warmup=0.15, clip_grad=5.0, keep="last", seed=lcfg.seed,
                       threads=lcfg.threads)
    torch.manual_seed(lcfg.seed)
    model = model if model is not None else create_model("line-reader", width=lcfg.width, hidden=lcfg.hidden)
    result = train_loop(model, LineBatches(train, lcfg.batch_size), CTCLoss(train), tcfg, out=out, resume=resume,
                        meta=line_reader_meta(lcfg, dataset), validate=lambda m: evaluate_lines(m, val),
                        progress=progress, log=log, desc="line reader")
    if result.diverged:
        raise ConfigError(f"the line reader's {result.diverged}")
    history = [{"epoch": r["epoch"], "loss": r["train_loss"], "val_line_accuracy": r["val_accuracy"],
                "seconds": r["seconds"]} for r in result.history]
    return model.eval(), {"val_line_accuracy": history[-1]["val_line_accuracy"], "history": history,
                          "train_lines": len(train), "val_lines": len(val)}


def train_line_reader(lcfg: LineReaderConfig | None, out_dir: str | Path, data_dir: str | PathLike | None = None, *,
                      resume: bool = False, progress: bool = True, log: Callable[[str], None] = print,
                      ) -> dict[str, Any]:
    """Draw labelled lines from training digits, train the line reader through the one training loop and
    save it to the run folder out_dir as a digitlab checkpoint (role "line-reader"); return its metrics.
    The folder holds what a training run's does (config.json, metrics.csv, state.pt, summary.json) and
    the drawn lines (lines.npz), so that resume=True continues an interrupted run (its saved config
    wins; lcfg may be None)."""
    from digitlab.read.helperrun import drawn_data, open_helper_run

    started = time.perf_counter()
    lcfg, out, start = open_helper_run(lcfg, out_dir, resume, LineReaderConfig, load_line_reader)
    log(f"line reader config: {lcfg.to_dict()}")

    def draw(digits: np.ndarray, labels: np.ndarray, dataset: str) -> dict[str, np.ndarray]:
        return {**pack_lines(draw_lines(digits, labels, lcfg.images, lcfg.seed, lcfg, log), "train"),
                **pack_lines(draw_lines(digits, labels, lcfg.val_images, lcfg.seed + 10_000, lcfg), "val")}

    arrays, dataset = drawn_data(lcfg, out, data_dir, resume, LINES, draw, "images", log, start)
    train, val = unpack_lines(arrays, "train"), unpack_lines(arrays, "val")
    log(f"{len(train)} training lines, {len(val)} validation lines, {time.perf_counter() - started:.0f} s")
    model, metrics = fit_line_reader(train, val, lcfg, log, progress, start.model if start is not None else None,
                                     out=out, resume=resume, dataset=dataset)
    metrics["seconds"] = time.perf_counter() - started
    if start is not None:  # which weights it started from, wherever lcfg.init pointed at the time
        metrics["init_weights_sha256"] = start.meta["weights_sha256"]
    save_line_reader(out, model, lcfg, metrics, dataset)
    write_text(out / "summary.json", json.dumps({"role": ROLE, "dataset": dataset, **metrics}, indent=2))
    log(f"line reader saved to {out}: val lines read exactly {metrics['val_line_accuracy']:.4f}, "
        f"{metrics['seconds']:.0f} s")
    return metrics


def pack_lines(lines: Lines, name: str) -> dict[str, np.ndarray]:
    """Lines as four arrays (for an .npz): the images side by side, their widths, the digits, their counts."""
    return {f"{name}_images": np.concatenate([img for img, _ in lines], 1) if lines else np.zeros((LINE_HEIGHT, 0),
                                                                                                    np.uint8),
            f"{name}_widths": np.array([img.shape[1] for img, _ in lines], np.int64),
            f"{name}_digits": np.array([c for _, text in lines for c in text], np.int64),
            f"{name}_counts": np.array([len(text) for _, text in lines], np.int64)}


def unpack_lines(arrays: dict[str, np.ndarray], name: str) -> Lines:
    images = np.split(arrays[f"{name}_images"], np.cumsum(arrays[f"{name}_widths"])[:-1], axis=1)
    digits = np.split(arrays[f"{name}_digits"], np.cumsum(arrays[f"{name}_counts"])[:-1])
    return [(img, d.tolist()) for img, d in zip(images, digits)] if len(arrays[f"{name}_widths"]) else []


def line_reader_meta(lcfg: LineReaderConfig, dataset: str, **extra: Any) -> dict[str, Any]:
    """What a line reader checkpoint records: its network, role, dataset and classes, the line geometry
    and reading config its line images were made with, and its config."""
    from digitlab.data import get_spec

    return {"model": "line-reader", "model_args": {"num_classes": 10, "width": lcfg.width, "hidden": lcfg.hidden},
            "role": ROLE, "dataset": dataset, "classes": list(get_spec(dataset).classes), **GEOMETRY,
            "read_config": ReadConfig().to_dict(), "config": lcfg.to_dict(), **extra}


def save_line_reader(out_dir: str | Path, model: nn.Module, lcfg: LineReaderConfig, metrics: dict[str, Any],
                     dataset: str) -> None:
    save_checkpoint(out_dir, model, line_reader_meta(lcfg, dataset, metrics=metrics))


def load_line_reader(path: str | PathLike | Checkpoint) -> Checkpoint:
    """A line reader checkpoint (or one already loaded); anything else, or a line reader trained on line
    images of another geometry than line_image makes, fails with a ReadError."""
    ckpt = path if isinstance(path, Checkpoint) else load_checkpoint(Path(path))
    if ckpt.meta.get("role") != ROLE or ckpt.meta.get("model") != "line-reader":
        raise ReadError(f"{path}: not a line reader checkpoint (make one with `digitlab train-line-reader`)")
    differ = {k: ckpt.meta.get(k) for k, v in GEOMETRY.items() if ckpt.meta.get(k) != v}
    if differ:
        theirs = ", ".join(f"{k} {v}" for k, v in differ.items())
        ours = ", ".join(f"{k} {GEOMETRY[k]}" for k in differ)
        raise ReadError(f"{path}: this line reader learnt line images of {theirs}, but the reader makes {ours}; "
                        f"train one for this version with `digitlab train-line-reader`")
    return ckpt


def beside(model: str | PathLike) -> Path | None:
    """The line reader kept in a model's run folder (RUN/line-reader), where `read` looks when none is
    named; None when there is none."""
    folder = Path(model) / "line-reader"
    return folder if folder.is_dir() else None
