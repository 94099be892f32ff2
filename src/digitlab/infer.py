"""Inference: one module that runs a checkpoint on images, used by evaluation, prediction and reading.

predict_logits is the single way a model meets pixels (uint8 28x28 images through the checkpoint's own
normalisation, ``to_model_input``); training validates, ``predict`` classifies files, ``read`` scores its
crops and the ensemble calibrates through it."""

from __future__ import annotations

import shlex
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from digitlab.calibrate import expected_calibration_error
from digitlab.checkpoint import Checkpoint, load_checkpoint
from digitlab.data import DigitDataset, Normalization, load_dataset, to_model_input
from digitlab.data.preprocess import read_digit
from digitlab.errors import DigitlabError
from digitlab.plots import plot_confusion


@dataclass(frozen=True)
class Evaluation:
    loss: float
    accuracy: float
    confusion: torch.Tensor  # (C, C) int64, rows = true class, columns = predicted class
    logits: torch.Tensor  # (N, C)
    labels: torch.Tensor  # (N,)

    def calibration_error(self, temperature: float = 1.0) -> float:
        """Expected calibration error of softmax(logits / temperature)."""
        return expected_calibration_error((self.logits / temperature).softmax(1), self.labels)

    @property
    def per_class(self) -> list[float]:
        totals = self.confusion.sum(1).clamp(min=1)
        return (self.confusion.diag() / totals).tolist()

    def most_confused(self, k: int = 5) -> list[tuple[int, int, int]]:
        """The k largest off-diagonal cells as (true, predicted, count), largest first."""
        off = self.confusion.clone()
        off.fill_diagonal_(0)
        counts, flat = off.flatten().topk(min(k, off.numel()))
        c = off.shape[0]
        return [(int(i) // c, int(i) % c, int(n)) for n, i in zip(counts, flat) if n > 0]


@torch.inference_mode()
def predict_logits(model: nn.Module, images: torch.Tensor, norm: Normalization,
                   batch_size: int = 1024) -> torch.Tensor:
    """Logits (N, C) for uint8 images (N, 28, 28), in eval mode, batch by batch."""
    was_training = model.training
    if was_training:  # (train() walks every module: not worth doing for nothing on each small call)
        model.eval()
    out = [model(to_model_input(images[i:i + batch_size], norm)) for i in range(0, len(images), batch_size)]
    if was_training:
        model.train()
    return torch.cat(out) if out else torch.empty(0, 0)


def evaluate(model: nn.Module, data: DigitDataset, norm: Normalization, num_classes: int,
             batch_size: int = 1024) -> Evaluation:
    return score_logits(predict_logits(model, data.images, norm, batch_size), data.labels, num_classes)


def score_logits(logits: torch.Tensor, labels: torch.Tensor, num_classes: int) -> Evaluation:
    """The Evaluation of logits (N, C) already computed for images with these labels."""
    loss = F.cross_entropy(logits, labels).item()
    pred = logits.argmax(1)
    confusion = torch.bincount(labels * num_classes + pred, minlength=num_classes**2)
    confusion = confusion.reshape(num_classes, num_classes)
    return Evaluation(loss=loss, accuracy=(pred == labels).float().mean().item(), confusion=confusion,
                      logits=logits, labels=labels)


@dataclass(frozen=True)
class Prediction:
    source: str
    label: str | None  # the class name of the most probable class; None when `note` says why not
    index: int  # the most probable class
    probabilities: list[float]
    note: str | None = None  # e.g. the image holds several digits: what to do instead

    @property
    def confidence(self) -> float:
        return self.probabilities[self.index]


def as_checkpoint(checkpoint: str | Path | Checkpoint | None) -> Checkpoint:
    """A loaded checkpoint: the one given, loaded from a run folder or file, or (None) the bundled MNIST
    classifier (digitlab.pretrained)."""
    if isinstance(checkpoint, Checkpoint):
        return checkpoint
    if checkpoint is None:
        from digitlab.pretrained import bundled

        checkpoint = bundled()
    return load_checkpoint(checkpoint)


def predict(images: list[Any], checkpoint: str | Path | Checkpoint | None = None, *,
            backend: str | None = None) -> list[Prediction]:
    """Classify single-digit images: file paths, PIL images or arrays, any size and either polarity,
    with a checkpoint (run folder, file or loaded; None: the bundled MNIST classifier).

    Each becomes its 28x28 input through read_digit (digit_input: the polarity, contrast and MNIST-style
    geometry the datasets and the reader's crops share), then the inference engine (digitlab.engine.
    Recognizer: the checkpoint's own normalisation, the same function training used, and its calibration
    temperature). backend: "onnxruntime", "torch", or None: ONNX Runtime when it is installed, else
    PyTorch. An image that holds several digits side by side gets no label but a note that points to
    `digitlab read`."""
    from digitlab.engine import Recognizer, default_backend

    ckpt = as_checkpoint(checkpoint)
    loaded = [read_digit(im) for im in images]
    batch = torch.from_numpy(np.stack([x for x, _ in loaded]))
    probs = torch.from_numpy(Recognizer(ckpt, backend=backend or default_backend()).probabilities(batch))
    out = []
    for source, (_, digits), p in zip(images, loaded, probs):
        i = int(p.argmax())
        is_file = isinstance(source, (str, Path))
        name = str(source) if is_file else "<array>"
        if digits > 1:  # the cheap screen says several: the reader counts them
            digits = digits_read(source, checkpoint if checkpoint is None else ckpt, digits)
        if digits > 1:
            how = f"`digitlab read {shlex.quote(name)}`" if is_file else "digitlab.read(image)"
            out.append(Prediction(name, None, i, p.tolist(), f"holds {digits} digits: use {how}"))
        else:
            out.append(Prediction(name, ckpt.classes[i], i, p.tolist()))
    return out


def digits_read(image: Any, checkpoint: Checkpoint | None, screened: int) -> int:
    """How many digits the reader finds in an image (the bundled reader for checkpoint None), or the
    screen's count where the reader cannot read it."""
    from digitlab.read.recognize import read

    try:
        return len(read(image, checkpoint).digits)
    except DigitlabError:
        return screened


def evaluate_checkpoint(checkpoint: str | Path | Checkpoint | None = None, dataset: str | None = None,
                        split: str = "test", data_dir: str | Path | None = None, out_dir: str | Path | None = None,
                        batch_size: int = 1024, download: bool = False) -> dict[str, Any]:
    """Accuracy, per-class accuracy and most-confused pairs of a checkpoint (None: the bundled MNIST
    classifier) on a dataset split (default: its own dataset's test split); the confusion matrix goes
    to out_dir as PNG. Without data_dir the data is looked for where the run found it (its recorded
    data folder), then where load_dataset looks by default."""
    ckpt = as_checkpoint(checkpoint)
    dataset = dataset or ckpt.meta["dataset"]
    if data_dir is None:
        data_dir = recorded_data_dir(ckpt)
    held_out = held_out_test(ckpt, dataset, split, data_dir)
    data = held_out if held_out is not None else load_dataset(dataset, split, data_dir=data_dir, download=download)
    classes = ckpt.classes
    result = evaluate(ckpt.model, data, ckpt.normalization, len(classes), batch_size)
    report: dict[str, Any] = {
        "dataset": dataset, "split": split if held_out is None else "test share held out by the run",
        "images": len(data), "accuracy": result.accuracy,
        "loss": result.loss, "per_class_accuracy": dict(zip(classes, result.per_class)),
        "most_confused": [{"true": classes[t], "predicted": classes[p], "count": n}
                          for t, p, n in result.most_confused()],
    }
    if out_dir is not None:
        Path(out_dir).mkdir(parents=True, exist_ok=True)
        path = Path(out_dir) / f"confusion-{dataset}-{split}.png"
        plot_confusion(result.confusion, classes, path,
                       title=f"{ckpt.meta['model']} on {dataset}/{split}: accuracy {result.accuracy:.4f}")
        report["confusion_png"] = str(path)
    return report


def held_out_test(ckpt: Checkpoint, dataset: str, split: str, data_dir: str | Path | None) -> DigitDataset | None:
    """The test share that the checkpoint's own run held out, when "test" is asked: of a dataset of one split
    (digits, TibetanMNIST), and of a run that carved its test share out of its training split (test_split "",
    e.g. the bundled Kannada set, trained on 70% of Kannada-MNIST's test split, most of which it learnt);
    else None (another split named, e.g. "all", is read whole)."""
    from digitlab.data import get_spec
    from digitlab.train.config import TrainConfig
    from digitlab.train.trainer import one_split_defaults, prepare_data

    if dataset != ckpt.meta.get("dataset") or "config" not in ckpt.meta:
        return None
    run = ckpt.meta["config"]
    carved = run.get("test_split", "test") == "" and split == "test"
    if not carved and (split != "test" or split in get_spec(dataset).splits):
        return None
    cfg = TrainConfig.from_dict({**ckpt.meta["config"], "data_dir": None if data_dir is None else str(data_dir)})
    return prepare_data(one_split_defaults(cfg)).test


def recorded_data_dir(ckpt: Checkpoint) -> str | None:
    """The data folder the checkpoint's run read its dataset from, when it still exists."""
    recorded = ckpt.meta.get("config", {}).get("data_dir")
    return recorded if recorded and Path(recorded).is_dir() else None
