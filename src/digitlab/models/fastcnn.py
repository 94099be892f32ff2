"""A CNN built for time-to-accuracy on a CPU: every layer strides, so no layer runs at 28x28."""

from collections.abc import Sequence

from torch import nn

from digitlab.errors import ModelError
from digitlab.models.layers import Classifier, ConvBnAct, num_flat_features
from digitlab.models.registry import register_model


@register_model("fastcnn", description="stride-2 conv-BN-ReLU stages and a linear head: ~0.6M MACs by default",
                reference="digitlab: CPU time-to-accuracy (benchmarks/time_to_accuracy.py)")
class FastCNN(Classifier):
    """On a CPU the per-pixel work of BatchNorm, ReLU and their backward passes at full 28x28
    resolution costs as much as the convolutions; striding from the first layer keeps every
    activation map at 14x14 or smaller. (16, 32, 64) gives 98.8-98.9% after one MNIST epoch.

    Each stage is one stride-2 conv followed by `depth - 1` stride-1 3x3 convs of the same width.
    `stem` stride-1 3x3 convs of the first stage's width may run at full resolution first (off by
    default: they cost more than all the rest). Dropout before the head is off by default."""

    def __init__(self, in_channels: int = 1, num_classes: int = 10, channels: Sequence[int] = (16, 32, 64),
                 first_kernel: int = 5, depth: int = 1, dropout: float = 0.0, stem: int = 0):
        super().__init__()
        if not channels:
            raise ModelError("fastcnn: channels must name at least one layer width")
        if depth < 1:
            raise ModelError(f"fastcnn: depth must be at least 1, got {depth}")
        if stem < 0:
            raise ModelError(f"fastcnn: stem must be 0 or more convs, got {stem}")
        layers: list[nn.Module] = [ConvBnAct(in_channels if i == 0 else channels[0], channels[0], 3)
                                   for i in range(stem)]
        widths = [channels[0] if stem else in_channels, *channels]
        for i, (c_in, c_out) in enumerate(zip(widths, widths[1:])):
            layers.append(ConvBnAct(c_in, c_out, first_kernel if i == 0 else 3, stride=2))
            layers += [ConvBnAct(c_out, c_out, 3) for _ in range(depth - 1)]
        self.features = nn.Sequential(*layers)  # (B, 1, 28, 28) -> (B, 16, 14, 14) -> (B, 32, 7, 7) -> (B, 64, 4, 4)
        head: list[nn.Module] = [nn.Flatten(), nn.Dropout(dropout)] if dropout else [nn.Flatten()]
        self.head = nn.Sequential(*head, nn.Linear(num_flat_features(self.features, in_channels), num_classes))
