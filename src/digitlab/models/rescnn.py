"""Residual CNNs: a general ResNet body for 28x28 inputs, and the `rescnn` configuration of it."""

from collections.abc import Sequence

import torch
from torch import nn

from digitlab.errors import ModelError
from digitlab.models.layers import Classifier, ConvBnAct, ResidualBlock, init_weights
from digitlab.models.registry import register_model


class ResNet(Classifier):
    """3x3 stem (stride 1: a 28x28 digit has no pixels to spare), then one stage per width of
    `depths[i]` ResidualBlocks, each stage after the first starting with stride 2; global average
    pool, dropout and a linear classifier. Both `rescnn` and `resnet18` are instances."""

    def __init__(self, in_channels: int, num_classes: int, widths: Sequence[int], depths: Sequence[int],
                 dropout: float = 0.0):
        super().__init__()
        if len(widths) != len(depths) or not widths:
            raise ModelError(f"residual CNN: need one depth per stage width, got widths={widths!r} depths={depths!r}")
        self.stem = ConvBnAct(in_channels, widths[0], 3)
        blocks: list[nn.Module] = []
        c_in = widths[0]
        for i, (width, depth) in enumerate(zip(widths, depths)):
            for j in range(depth):
                blocks.append(ResidualBlock(c_in, width, stride=2 if i > 0 and j == 0 else 1))
                c_in = width
        self.stages = nn.Sequential(*blocks)  # (B, widths[-1], 28 / 2^(stages-1), ...)
        self.num_features = c_in
        self.head_drop = nn.Dropout(dropout)
        self.fc = nn.Linear(c_in, num_classes)

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        return self.stages(self.stem(x))

    def forward_head(self, x: torch.Tensor) -> torch.Tensor:
        x = x.mean(dim=(2, 3))  # global average pool: (B, C, H, W) -> (B, C)
        return self.fc(self.head_drop(x))


@register_model("rescnn", description="residual CNN: 3 stages of BasicBlocks with BatchNorm, dropout, Xavier init",
                reference="He et al. 2016, Deep residual learning; Glorot & Bengio 2010 (Xavier init)")
def rescnn(in_channels: int = 1, num_classes: int = 10, stages: Sequence[int] = (32, 64, 128), blocks: int = 1,
           dropout: float = 0.3) -> nn.Module:
    """`blocks` residual blocks per stage; 28x28 -> 28, 14, 7 across the three default stages."""
    model = ResNet(in_channels, num_classes, widths=tuple(stages), depths=(blocks,) * len(stages), dropout=dropout)
    init_weights(model, "xavier")
    return model
