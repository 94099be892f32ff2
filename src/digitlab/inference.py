"""Using a checkpoint: classify image files, evaluate on a dataset split."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from digitlab.data import load_dataset, load_image
from digitlab.train.checkpoint import Checkpoint, load_checkpoint
from digitlab.train.evaluate import evaluate, predict_logits
from digitlab.train.plots import plot_confusion


@dataclass(frozen=True)
class Prediction:
    source: str
    label: str  # the class name of the most probable class
    index: int
    probabilities: list[float]

    @property
    def confidence(self) -> float:
        return self.probabilities[self.index]


def _checkpoint(checkpoint: str | Path | Checkpoint) -> Checkpoint:
    return checkpoint if isinstance(checkpoint, Checkpoint) else load_checkpoint(checkpoint)


def predict(checkpoint: str | Path | Checkpoint, images: list[Any]) -> list[Prediction]:
    """Classify single-digit images: file paths, PIL images or arrays, any size and either polarity.

    Each goes through load_image (grayscale, polarity, MNIST-style 28x28) and then the checkpoint's own
    normalisation, the same function training used."""
    ckpt = _checkpoint(checkpoint)
    batch = torch.from_numpy(np.stack([load_image(im) for im in images]))
    probs = predict_logits(ckpt.model, batch, ckpt.normalization).softmax(1)
    out = []
    for source, p in zip(images, probs):
        i = int(p.argmax())
        out.append(Prediction(source=str(source) if isinstance(source, (str, Path)) else "<array>",
                              label=ckpt.classes[i], index=i, probabilities=p.tolist()))
    return out


def evaluate_checkpoint(checkpoint: str | Path | Checkpoint, dataset: str | None = None, split: str = "test",
                        data_dir: str | Path | None = None, out_dir: str | Path | None = None,
                        batch_size: int = 1024, download: bool = False) -> dict[str, Any]:
    """Accuracy, per-class accuracy and most-confused pairs; the confusion matrix goes to out_dir as PNG."""
    ckpt = _checkpoint(checkpoint)
    dataset = dataset or ckpt.meta["dataset"]
    data = load_dataset(dataset, split, data_dir=data_dir, download=download)
    classes = ckpt.classes
    result = evaluate(ckpt.model, data, ckpt.normalization, len(classes), batch_size)
    report: dict[str, Any] = {
        "dataset": dataset, "split": split, "images": len(data), "accuracy": result.accuracy,
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
