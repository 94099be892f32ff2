"""Several trained zoo models read as one: the mean of their logits.

Not a zoo architecture (it has no features of its own, and nothing to train from scratch): it is
registered as kind "ensemble", built from finished runs by ``digitlab.train.build_ensemble`` and saved
as an ordinary checkpoint whose model_args list the members, so everything that loads a checkpoint
uses it as it is.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from digitlab.errors import ModelError
from digitlab.models.registry import create_model, register_model

NAME = "ensemble"  # the model name in a checkpoint's meta


@register_model(NAME, kind="ensemble", description="the mean of several trained classifiers' logits")
class Ensemble(nn.Module):
    """members: [{"model": zoo name, "model_args": {...}}, ...], each built with create_model."""

    def __init__(self, members: list[dict[str, Any]], in_channels: int = 1, num_classes: int = 10) -> None:
        super().__init__()
        if not members:
            raise ModelError("an ensemble needs at least one member")
        try:
            self.members = nn.ModuleList(
                create_model(m["model"], in_channels, num_classes, **_own_args(m.get("model_args", {})))
                for m in members)
        except (KeyError, TypeError, AttributeError):
            raise ModelError(f"ensemble members must be {{'model': name, 'model_args': {{...}}}}, got {members!r}") \
                from None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.stack([m(x) for m in self.members]).mean(0)


def _own_args(args: dict[str, Any]) -> dict[str, Any]:
    """A member's arguments without those the ensemble passes to every member."""
    return {k: v for k, v in args.items() if k not in ("in_channels", "num_classes")}

