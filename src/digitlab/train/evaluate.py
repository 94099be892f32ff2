"""Evaluation of a model on a dataset: loss, accuracy, per-class accuracy, confusion matrix."""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from digitlab.data import DigitDataset, Normalization, to_model_input
from digitlab.train.calibrate import expected_calibration_error


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
