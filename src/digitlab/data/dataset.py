from __future__ import annotations

from dataclasses import dataclass

import torch


@dataclass(frozen=True)
class DigitDataset:
    """A whole split in memory: MNIST-style uint8 images, white digit on black."""

    name: str
    split: str
    images: torch.Tensor  # (N, 28, 28) uint8
    labels: torch.Tensor  # (N,) int64

    def __post_init__(self):
        if self.images.dtype != torch.uint8 or self.images.dim() != 3:
            raise ValueError(f"{self.name}/{self.split}: images must be (N, H, W) uint8, got "
                             f"{self.images.dtype} {tuple(self.images.shape)}")
        if self.labels.dtype != torch.int64 or self.labels.shape != self.images.shape[:1]:
            raise ValueError(f"{self.name}/{self.split}: labels must be ({len(self.images)},) int64, got "
                             f"{self.labels.dtype} {tuple(self.labels.shape)}")

    def __len__(self) -> int:
        return len(self.labels)

    def subset(self, idx: torch.Tensor) -> DigitDataset:
        return DigitDataset(self.name, self.split, self.images[idx], self.labels[idx])

    def __repr__(self) -> str:
        return f"DigitDataset({self.name}/{self.split}, n={len(self)}, images={tuple(self.images.shape)})"
