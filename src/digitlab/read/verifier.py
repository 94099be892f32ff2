"""The verifier: is a candidate crop one whole digit, two merged digits, half a digit, a sliver, a mark?

The classifier alone cannot tell: it was trained on single digits only, and reads two touching digits
as one confident digit (a 1 and a 0 make a fine 0), so a segmentation search scored by it keeps merged
pairs. The verifier is an ordinary digitlab checkpoint with 11 classes, the ten digits and "not a
digit" (with pairs=True 111: also the hundred pairs of two neighbouring digits merged into one crop,
"00" ... "99"), trained on the crops the segmenter itself makes: synthetic strings drawn by
``digitlab.read.synth`` from training digits (MNIST *train*, or a training run's own; the synthetic
benchmark draws from test digits only) go through the reader's own cleaning, segmentation and
``segment.crop``, and every candidate is labelled by the ink it holds (``Sample.owner``): one digit's
ink, nearly all of it and little else, is that digit; two neighbours' whole ink is that pair; anything
else (a part of a digit, one with a neighbour's stroke, specks, box and ruling residue) is "not a
digit". The reader adds ``verifier_weight * log p(one whole digit)`` to each candidate's score, weighs
the classifier's classes with the verifier's, and reads a candidate as a pair where that scores best.

    digitlab train-verifier --out runs/verifier --data-dir ../shared/datasets
    digitlab read photo.jpg --checkpoint runs/lenet5-improved --verifier runs/verifier
    digitlab train-verifier --out runs/tibetan/verifier --run runs/tibetan   # a TibetanMNIST model's"""

from __future__ import annotations

import dataclasses
import json
import time
from collections.abc import Callable
from os import PathLike
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import torch

from digitlab.atomic import write_text
from digitlab.checkpoint import Checkpoint, load_checkpoint
from digitlab.errors import ConfigError
from digitlab.read import segment, synth
from digitlab.read.config import ReadConfig, VerifierConfig
from digitlab.read.errors import ReadError
from digitlab.read.image import load_gray, prepare

NOT_A_DIGIT = "not a digit"
ROLE = "verifier"  # meta["role"] of a verifier checkpoint
CROPS = "crops.npz"  # a verifier run's drawn training and validation crops


def candidate_ink(sample: synth.Sample, cfg: ReadConfig) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Every candidate digit the reader would score in `sample` (drawn with owners=True), cropped as the
    reader crops it, with the ink it holds -> (crops (N, 28, 28) uint8; held (N, D): how many of the
    crop's ink pixels each of the sample's D digits drew; total (D,): each digit's ink pixels on the page)."""
    if sample.owner is None:
        raise ValueError("candidate_ink needs a sample drawn with owners=True")
    gray, scale, _ = load_gray(sample.image, cfg)
    page = prepare(gray, cfg, scale)
    owner = cv2.warpPerspective(sample.owner, page.to_work, page.mask.shape[::-1], flags=cv2.INTER_NEAREST)
    owner = np.where(page.mask > 0, owner, 0)
    n = sum(len(line) for line in sample.lines)
    total = np.bincount(owner.ravel(), minlength=n + 1)[1:n + 1]
    lay = segment.layout(page, cfg)
    cands = segment.candidates(lay, cfg, page.text_height)
    crops = np.zeros((len(cands), 28, 28), np.uint8)
    held = np.zeros((len(cands), n), np.int64)
    for k, c in enumerate(cands):
        pieces = lay.pieces_of(c)
        crops[k] = segment.crop(page, lay, pieces, c.box)
        rows, cols, mine = segment.own_pixels(lay, pieces, c.box, page.mask.shape)
        held[k] = np.bincount(owner[rows, cols][mine], minlength=n + 1)[1:n + 1]
    return crops, held, total


def candidate_crops(sample: synth.Sample, cfg: ReadConfig) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """candidate_ink's crops, with the digit each holds most of -> (crops (N, 28, 28) uint8; digit (N,)
    int64: that digit's index in the sample, -1 for none; fit (N, 2): purity, the share of the crop's
    digit ink that is that digit's, and coverage, the share of that digit's ink it holds)."""
    crops, held, total = candidate_ink(sample, cfg)  # (a sample holds at least one digit)
    ink = held.sum(1)
    digit = np.where(ink > 0, held.argmax(1), -1)
    best = held[np.arange(len(held)), np.maximum(digit, 0)]
    fit = np.stack([best / np.maximum(ink, 1), best / np.maximum(total[np.maximum(digit, 0)], 1)], 1)
    return crops, digit, fit


def label_crops(sample: synth.Sample, cfg: ReadConfig, vcfg: VerifierConfig) -> tuple[np.ndarray, np.ndarray]:
    """(crops (N, 28, 28) uint8, targets (N,) int64): 0-9 for one whole digit; with vcfg.pairs, 10 + 10 a + b
    for two neighbouring digits a, b of a line merged into one crop, each whole; the last class for
    anything else (not a digit); ambiguous crops are left out."""
    crops, held, total = candidate_ink(sample, cfg)
    classes = np.array([int(ch) for ch in "".join(sample.lines)], np.int64)
    line_of = np.repeat(np.arange(len(sample.lines)), [len(line) for line in sample.lines])
    other_class = len(classes_of(vcfg)) - 1
    targets = np.full(len(crops), other_class, np.int64)
    keep = np.zeros(len(crops), bool)
    for k in range(len(crops)):
        ink = held[k].sum()
        if ink == 0:
            keep[k] = True
            continue
        order = np.argsort(held[k])[::-1]
        a = int(order[0])
        purity, coverage = held[k, a] / ink, held[k, a] / max(1, total[a])
        if purity >= vcfg.purity and coverage >= vcfg.coverage:
            targets[k], keep[k] = classes[a], True
            continue
        if vcfg.pairs and len(order) > 1:
            left, right = sorted(int(i) for i in order[:2])
            two = held[k, [left, right]]
            if right == left + 1 and line_of[left] == line_of[right] and two.sum() >= vcfg.purity * ink \
                    and (two >= vcfg.coverage * np.maximum(total[[left, right]], 1)).all():
                targets[k], keep[k] = 10 + 10 * classes[left] + classes[right], True
                continue
        keep[k] = purity < vcfg.loose_purity or coverage < vcfg.loose_coverage
    return crops[keep], targets[keep]


def is_pair(targets: torch.Tensor) -> torch.Tensor:
    """Which targets (of a verifier that reads pairs) are a merged pair: classes 10 to 109."""
    return (targets >= 10) & (targets < 110)


def classes_of(vcfg: VerifierConfig, digits: tuple[str, ...] = tuple(str(c) for c in range(10))) -> list[str]:
    """The verifier's class names: the ten digits, with vcfg.pairs the hundred pairs ("00" ... "99"),
    then "not a digit"."""
    pairs = [a + b for a in digits for b in digits] if vcfg.pairs else []
    return [*digits, *pairs, NOT_A_DIGIT]


def training_specs(vcfg: VerifierConfig) -> tuple[synth.SynthSpec, synth.SynthSpec, synth.SynthSpec]:
    """(easy, hard, pair) specs the training strings are drawn from: synth's own, the hard one with more
    pairs, and one line of two digits that touch or overlap."""
    hard = dataclasses.replace(synth.HARD, name="verifier-hard", touch=vcfg.touch, overlap=vcfg.overlap)
    pair = dataclasses.replace(synth.HARD, name="verifier-pair", lines=(1, 1), digits=(2, 2), touch=0.6, overlap=0.4)
    return synth.EASY, hard, pair


def make_crops(digits: np.ndarray, labels: np.ndarray, n: int, seed: int, vcfg: VerifierConfig,
               cfg: ReadConfig | None = None, log: Callable[[str], None] | None = None, pair_images: int = 0,
               ) -> tuple[torch.Tensor, torch.Tensor]:
    """Labelled crops from n synthetic images of `digits` (training digits), and pair_images more of two
    merged digits -> (uint8 (N, 28, 28), int64 (N,))."""
    cfg = cfg or ReadConfig()
    easy, hard, pair = training_specs(vcfg)
    rng = np.random.default_rng(seed)
    crops, targets = [], []
    started = time.perf_counter()
    n += pair_images
    for i in range(n):
        spec = pair if i >= n - pair_images else easy if rng.random() < vcfg.easy_fraction else hard
        c, t = label_crops(synth.make_sample(digits, labels, spec, rng, owners=True), cfg, vcfg)
        crops.append(c)
        targets.append(t)
        if log and (i + 1) % 500 == 0:
            log(f"  {i + 1}/{n} images, {sum(map(len, targets))} crops, {time.perf_counter() - started:.0f} s")
    return torch.from_numpy(np.concatenate(crops)), torch.from_numpy(np.concatenate(targets))


def verifier_logp(verifier: Checkpoint, crops: np.ndarray, batch_size: int = 256) -> np.ndarray:
    """Calibrated log-probabilities (N, classes) for crops (N, 28, 28) uint8: the ten digits, the hundred
    pairs when the verifier reads pairs, and "not a digit" last."""
    from digitlab.infer import predict_logits

    logits = predict_logits(verifier.model, torch.from_numpy(crops), verifier.normalization, batch_size)
    temperature = float(verifier.meta.get("temperature", 1.0))
    return (logits / temperature).log_softmax(1).double().numpy()


def single_digit_logp(logp: np.ndarray) -> np.ndarray:
    """log p(one whole digit) (N,) from verifier_logp's output: its ten digit classes together."""
    return logsumexp(logp[:, :10])


def pair_logp(logp: np.ndarray) -> np.ndarray | None:
    """log p(two whole digits a, b, left to right) (N, 10, 10) from verifier_logp's output, or None when the
    verifier does not read pairs."""
    if logp.shape[1] != 111:
        return None
    return logp[:, 10:110].reshape(-1, 10, 10)


def logsumexp(a: np.ndarray) -> np.ndarray:
    """log(sum(exp(a), axis 1)) without overflow, for (N, K) log-probabilities."""
    top = a.max(1, keepdims=True)
    return top[:, 0] + np.log(np.exp(a - top).sum(1))


def is_verifier(ckpt: Checkpoint) -> bool:
    return ckpt.meta.get("role") == ROLE and len(ckpt.classes) in (11, 111)


def beside(model: str | PathLike) -> Path | None:
    """The verifier kept in a model's run folder (RUN/verifier), where `read` looks when none is named;
    None when there is none."""
    folder = Path(model) / "verifier"
    return folder if folder.is_dir() else None


def load_verifier(path: str | PathLike | Checkpoint) -> Checkpoint:
    """A verifier checkpoint (or one already loaded); anything else fails with a ReadError."""
    ckpt = path if isinstance(path, Checkpoint) else load_checkpoint(Path(path))
    if not is_verifier(ckpt):
        raise ReadError(f"{path}: not a verifier checkpoint (make one with `digitlab train-verifier`)")
    return ckpt


def train_verifier(vcfg: VerifierConfig | None, out_dir: str | Path, data_dir: str | PathLike | None = None, *,
                   resume: bool = False, progress: bool = True, log: Callable[[str], None] = print) -> dict[str, Any]:
    """Draw labelled crops from training digits (synth.training_digits), train the verifier through the
    one training loop and save it to the run folder out_dir as a digitlab checkpoint (role "verifier");
    return its metrics (accuracy on held-out images). The folder holds what a training run's does
    (config.json, metrics.csv, state.pt, summary.json) and the drawn crops (crops.npz), so that
    resume=True continues an interrupted run (its saved config wins; vcfg may be None)."""
    from digitlab.read.helperrun import drawn_data, open_helper_run

    started = time.perf_counter()
    vcfg, out, _ = open_helper_run(vcfg, out_dir, resume, VerifierConfig)
    log(f"verifier config: {vcfg.to_dict()}")

    def draw(digits: np.ndarray, labels: np.ndarray, dataset: str) -> dict[str, np.ndarray]:
        x, y = make_crops(digits, labels, vcfg.images, vcfg.seed, vcfg, log=log, pair_images=vcfg.pair_images)
        vx, vy = make_crops(digits, labels, vcfg.val_images, vcfg.seed + 10_000, vcfg,
                            pair_images=vcfg.pair_images * vcfg.val_images // vcfg.images)
        return {"x": x.numpy(), "y": y.numpy(), "vx": vx.numpy(), "vy": vy.numpy()}

    arrays, dataset = drawn_data(vcfg, out, data_dir, resume, CROPS, draw, "images", log)
    x, y, vx, vy = (torch.from_numpy(arrays[k]) for k in ("x", "y", "vx", "vy"))
    log(f"{len(y)} training crops ({(y < 10).float().mean():.0%} one digit, {is_pair(y).float().mean():.1%} "
        f"a merged pair), {len(vy)} validation crops, "
        f"{time.perf_counter() - started:.0f} s")
    model, metrics = fit_verifier(x, y, vx, vy, vcfg, log, dataset, out=out, resume=resume, progress=progress)
    metrics["seconds"] = time.perf_counter() - started
    save_verifier(out, model, vcfg, metrics, dataset=dataset)
    write_text(out / "summary.json", json.dumps({"role": ROLE, "dataset": dataset, **metrics}, indent=2))
    log(f"verifier saved to {out}: one-digit-or-not accuracy {metrics['val_single_accuracy']:.4f} "
        f"(single digits kept {metrics['val_recall_single']:.4f}, others caught "
        f"{metrics['val_recall_not_a_digit']:.4f}), all classes {metrics['val_accuracy']:.4f}"
        + (f", merged pairs read right {metrics['val_pair_accuracy']:.4f}" if vcfg.pairs else "") + ", "
        f"{metrics['seconds']:.0f} s")
    return metrics


def fit_verifier(x: torch.Tensor, y: torch.Tensor, vx: torch.Tensor, vy: torch.Tensor, vcfg: VerifierConfig,
                 log: Callable[[str], None] = print, dataset: str = "mnist", *, out: Path | None = None,
                 resume: bool = False, progress: bool = True) -> tuple[torch.nn.Module, dict[str, Any]]:
    """Train vcfg.model (classes_of(vcfg)) on crops x (N, 28, 28) uint8 with targets y through the one
    training loop (one-cycle Adam, the last epoch kept; with a run folder `out`, its checkpoints, metrics
    and resume); calibrate it and measure it on the validation crops vx, vy."""
    from digitlab.data import get_spec
    from digitlab.infer import predict_logits, score_logits
    from digitlab.models import create_model
    from digitlab.train import TrainConfig
    from digitlab.train.loop import ClassificationLoss, ImageBatches, calibrate, train_loop

    norm = get_spec(dataset).normalization
    classes = classes_of(vcfg)
    tcfg = TrainConfig(model=vcfg.model, epochs=vcfg.epochs, batch_size=vcfg.batch_size, lr=vcfg.lr,
                       schedule="onecycle", keep="last", seed=vcfg.seed, threads=vcfg.threads)
    torch.manual_seed(vcfg.seed)
    model = create_model(vcfg.model, num_classes=len(classes))

    def validate(m: torch.nn.Module) -> tuple[float, float]:
        val = score_logits(predict_logits(m, vx, norm), vy, len(classes))
        return val.loss, val.accuracy

    result = train_loop(model, ImageBatches(x, y, norm, vcfg.batch_size), ClassificationLoss(len(classes)), tcfg,
                        out=out, resume=resume, meta=verifier_meta(vcfg, dataset), validate=validate,
                        progress=progress, log=log, desc="verifier")
    if result.diverged:
        raise ConfigError(f"the verifier's {result.diverged}")
    model.eval()
    cal = calibrate(model, vx, vy, norm, log=lambda note: None)  # thousands of misread crops: no note needed
    pred = cal.logits.argmax(1)
    truth_single, said_single = vy < 10, pred < 10
    metrics = {
        "val_accuracy": float((pred == vy).float().mean()),  # all classes
        "val_single_accuracy": float((truth_single == said_single).float().mean()),  # one digit or not
        "val_recall_single": float(said_single[truth_single].float().mean()),
        "val_recall_not_a_digit": float((~said_single)[~truth_single].float().mean()),
        "val_crops": len(vy), "train_crops": len(y), "temperature": cal.temperature,
    }
    if vcfg.pairs:
        pair = is_pair(vy)
        metrics.update(val_pairs=int(pair.sum()), train_pairs=int(is_pair(y).sum()),
                       val_pair_accuracy=float((pred[pair] == vy[pair]).float().mean()) if pair.any() else None)
    return model, metrics


def verifier_meta(vcfg: VerifierConfig, dataset: str = "mnist", read_config: ReadConfig | None = None,
                  **extra: Any) -> dict[str, Any]:
    """What a verifier checkpoint records: the classifier meta of its classes, its role, its config and
    the reading config whose crops it learnt."""
    from digitlab.checkpoint import model_meta
    from digitlab.data import get_spec

    spec = get_spec(dataset)
    classes = classes_of(vcfg, spec.classes)
    return model_meta(vcfg.model, {"in_channels": 1, "num_classes": len(classes)}, dataset, classes,
                      spec.normalization, role=ROLE, config=vcfg.to_dict(),
                      read_config=(read_config or ReadConfig()).to_dict(), **extra)


def save_verifier(out_dir: str | Path, model: torch.nn.Module, vcfg: VerifierConfig, metrics: dict[str, Any],
                  read_config: ReadConfig | None = None, dataset: str = "mnist") -> Path:
    """Save a trained verifier as a self-describing digitlab checkpoint (role "verifier")."""
    from digitlab.checkpoint import save_checkpoint

    meta = verifier_meta(vcfg, dataset, read_config, temperature=metrics["temperature"], metrics=metrics)
    return save_checkpoint(out_dir, model, meta)
