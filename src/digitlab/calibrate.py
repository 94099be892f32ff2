"""Temperature scaling (Guo et al. 2017): one scalar T so that softmax(logits / T) is calibrated."""

from __future__ import annotations

import torch
import torch.nn.functional as F

T_RANGE = (0.05, 20.0)  # with no val error the NLL falls towards T -> 0; the bound keeps T usable
# A temperature fitted on fewer misread validation images says little: it is pushed towards T_RANGE[0]
# (mnist-best's 1,000 validation images hold about one), and then confidences are near 1 everywhere
MIN_ERRORS = 10


def calibration_note(errors: int) -> str | None:
    """A one-line warning when a temperature was fitted on too few misread validation images."""
    if errors >= MIN_ERRORS:
        return None
    return (f"the temperature was fitted on a validation split with {errors} misread image(s) (< {MIN_ERRORS}): "
            f"confidences will be too high and reading will rarely reject; hold out more (e.g. --split 11:1)")


def fit_temperature(logits: torch.Tensor, labels: torch.Tensor, max_iter: int = 100) -> float:
    """The T in T_RANGE minimising the NLL of softmax(logits / T) on held-out (validation) data."""
    log_t = torch.zeros(1, requires_grad=True)  # optimise log T so T stays positive
    opt = torch.optim.LBFGS([log_t], lr=0.1, max_iter=max_iter, line_search_fn="strong_wolfe")
    logits, labels = logits.detach().float().clone(), labels.detach().clone()  # may be inference tensors

    def closure():
        opt.zero_grad()
        loss = F.cross_entropy(logits / log_t.exp(), labels)
        loss.backward()
        return loss

    opt.step(closure)
    return min(max(float(log_t.detach().exp()), T_RANGE[0]), T_RANGE[1])


def logit_reference(logits: torch.Tensor) -> float:
    """The median top logit over held-out images: what a real digit's top logit typically is. Readers
    compare a crop's top logit with it, since softmax saturates on crops that are not one digit."""
    return float(logits.max(1).values.median())


def expected_calibration_error(probs: torch.Tensor, labels: torch.Tensor, bins: int = 15) -> float:
    """ECE: the gap between confidence and accuracy, averaged over equal-width confidence bins."""
    confidence, pred = probs.max(1)
    return calibration_gap(confidence, (pred == labels).float(), bins)


def calibration_gap(confidence: torch.Tensor, correct: torch.Tensor, bins: int = 15) -> float:
    """ECE of any confidences (N,) against whether each answer was right (N,) in {0, 1}: a string
    reader's, or a classifier's top class."""
    confidence, correct = torch.as_tensor(confidence).float(), torch.as_tensor(correct).float()
    edges = torch.linspace(0, 1, bins + 1)
    ece = torch.zeros(())
    for lo, hi in zip(edges[:-1], edges[1:]):
        inside = (confidence > lo) & (confidence <= hi)
        if inside.any():
            ece += inside.float().mean() * (confidence[inside].mean() - correct[inside].mean()).abs()
    return float(ece)
