"""The LeNet family: the classic LeNet-5, an improved LeNet-5 with SPP, and LeNet with attention."""

import torch
from torch import nn

from digitlab.errors import ModelError
from digitlab.models.layers import Classifier, SpatialAttention, SpatialPyramidPool, make_act, num_flat_features
from digitlab.models.registry import register_model


@register_model("lenet5", description="classic LeNet-5: sigmoid, average pooling, FC 120-84",
                reference="LeCun et al. 1998, Gradient-based learning applied to document recognition")
class LeNet5(Classifier):
    """LeNet-5 in its usual modern reading of LeCun et al. (1998).

    Kept: C1 6@5x5 on a 32x32 field (pad 2 on 28x28), sigmoid squashing, 2x2 average-pool
    subsampling, C3 16@5x5, 400 -> 120 -> 84 fully connected. Simplified, as in most
    reimplementations: C3 connects to all six S2 maps (the paper uses a sparse table), the
    subsampling layers have no trainable coefficient and bias, and a linear layer replaces the
    Euclidean RBF output units, so the logits go to a cross-entropy loss.
    """

    def __init__(self, in_channels: int = 1, num_classes: int = 10):
        super().__init__()
        self.features = nn.Sequential(
            nn.Conv2d(in_channels, 6, 5, padding=2), nn.Sigmoid(), nn.AvgPool2d(2),  # (B, 6, 14, 14)
            nn.Conv2d(6, 16, 5), nn.Sigmoid(), nn.AvgPool2d(2),  # (B, 16, 5, 5)
        )
        self.head = nn.Sequential(
            nn.Flatten(),
            nn.Linear(num_flat_features(self.features, in_channels), 120), nn.Sigmoid(),  # C5
            nn.Linear(120, 84), nn.Sigmoid(),  # F6
            nn.Linear(84, num_classes),
        )


@register_model("lenet5-improved",
                description="LeNet-5 with ReLU, 32 kernels per conv, spatial pyramid pooling, FC layers and dropout",
                reference="LeCun et al. 1998; spatial pyramid pooling: He et al. 2014")
class LeNet5Improved(Classifier):
    """LeNet-5 with ReLU, `channels` kernels per conv, spatial pyramid pooling in place of the
    second subsampling layer, fully connected layers in place of C5, and dropout before the output.

    BatchNorm is deliberately absent, as in the description this follows.
    """

    def __init__(self, in_channels: int = 1, num_classes: int = 10, channels: int = 32, act: str = "relu",
                 hidden: tuple[int, ...] = (256, 128), bins: tuple[int, ...] = (4, 2, 1), dropout: float = 0.5):
        super().__init__()
        self.features = nn.Sequential(
            nn.ZeroPad2d(2),  # 28x28 -> the 32x32 field LeNet-5 was designed for
            nn.Conv2d(in_channels, channels, 5), make_act(act), nn.MaxPool2d(2),  # (B, C, 14, 14)
            nn.Conv2d(channels, channels, 5), make_act(act),  # (B, C, 10, 10)
        )
        self.spp = SpatialPyramidPool(bins)
        dims = [self.spp.out_features(channels), *hidden]  # 32 * (16 + 4 + 1) = 672 by default
        fc: list[nn.Module] = []
        for d_in, d_out in zip(dims, dims[1:]):
            fc += [nn.Linear(d_in, d_out), make_act(act)]
        self.head = nn.Sequential(*fc, nn.Dropout(dropout), nn.Linear(dims[-1], num_classes))

    def forward_head(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.spp(x))  # (B, C, 10, 10) -> (B, 672) -> (B, num_classes)


@register_model("lenet-attention", description="LeNet with a 1x1-conv sigmoid attention mask on the conv features",
                reference="LeCun et al. 1998; attention mask in the spirit of Wang et al. 2017 (residual attention)")
class LeNetAttention(Classifier):
    """LeNet backbone (two 5x5 conv-ReLU-maxpool stages, two FC layers) whose final feature map is
    reweighted by a 1x1-conv spatial attention mask before the classifier."""

    def __init__(self, in_channels: int = 1, num_classes: int = 10, channels: tuple[int, int] = (32, 64),
                 hidden: int = 256, dropout: float = 0.5):
        super().__init__()
        if len(channels) != 2:
            raise ModelError(f"lenet-attention: channels must be two numbers (conv1, conv2), got {channels!r}")
        c1, c2 = channels
        self.features = nn.Sequential(
            nn.Conv2d(in_channels, c1, 5, padding=2), nn.ReLU(), nn.MaxPool2d(2),  # (B, c1, 14, 14)
            nn.Conv2d(c1, c2, 5), nn.ReLU(), nn.MaxPool2d(2),  # (B, c2, 5, 5)
            SpatialAttention(c2),
        )
        self.head = nn.Sequential(
            nn.Flatten(),
            nn.Linear(num_flat_features(self.features, in_channels), hidden), nn.ReLU(),
            nn.Dropout(dropout),
            nn.Linear(hidden, num_classes),
        )
