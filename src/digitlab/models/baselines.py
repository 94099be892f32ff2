"""ImageNet classics adapted to 28x28 digits: AlexNet, VGG-16, ResNet-18.

`width` scales the channel counts. AlexNet and VGG-16 default to a quarter of the published
widths (their FC layers then have 1024 units instead of 4096) so that they train on a laptop CPU;
width=1.0 gives the published channel counts.
"""

from torch import nn

from digitlab.models.layers import Classifier, ConvBnAct, num_flat_features
from digitlab.models.registry import register_model
from digitlab.models.rescnn import ResNet


def _scaled(channels: int, width: float) -> int:
    return max(1, round(channels * width))


@register_model("alexnet", description="AlexNet for 28x28: 5 convs, 3 overlapping max-pools, 3 FC with dropout",
                reference="Krizhevsky et al. 2012, ImageNet classification with deep CNNs")
class AlexNet(Classifier):
    """The paper's 11x11/4 and 5x5 convs would shrink a 28x28 digit to nothing, so the first two
    convs are 5x5 stride 1; the overlapping 3x3/2 max-pools stay (28 -> 14 -> 7 -> 3)."""

    def __init__(self, in_channels: int = 1, num_classes: int = 10, width: float = 0.25, dropout: float = 0.5):
        super().__init__()
        c1, c2, c3, c4, c5 = (_scaled(c, width) for c in (64, 192, 384, 256, 256))  # torchvision's widths at 1.0
        hidden = _scaled(4096, width)
        self.features = nn.Sequential(
            nn.Conv2d(in_channels, c1, 5, padding=2), nn.ReLU(), nn.MaxPool2d(3, 2, padding=1),  # (B, c1, 14, 14)
            nn.Conv2d(c1, c2, 5, padding=2), nn.ReLU(), nn.MaxPool2d(3, 2, padding=1),  # (B, c2, 7, 7)
            nn.Conv2d(c2, c3, 3, padding=1), nn.ReLU(),
            nn.Conv2d(c3, c4, 3, padding=1), nn.ReLU(),
            nn.Conv2d(c4, c5, 3, padding=1), nn.ReLU(), nn.MaxPool2d(3, 2),  # (B, c5, 3, 3)
        )
        self.head = nn.Sequential(
            nn.Flatten(),
            nn.Dropout(dropout), nn.Linear(num_flat_features(self.features, in_channels), hidden), nn.ReLU(),
            nn.Dropout(dropout), nn.Linear(hidden, hidden), nn.ReLU(),
            nn.Linear(hidden, num_classes),
        )


# VGG-16 ("configuration D"): conv widths, "M" = 2x2 max-pool. The published net pools after each of
# its five blocks (224 -> 7); a 28x28 digit has room for four, so the pool after block 4 is dropped:
# 28 -> 14 -> 7 -> 3, blocks 4 and 5 both run at 3x3, and the last pool leaves 1x1.
VGG16_CFG = [64, 64, "M", 128, 128, "M", 256, 256, 256, "M", 512, 512, 512, 512, 512, 512, "M"]


@register_model("vgg16", description="VGG-16 for 28x28: 13 3x3 convs (BatchNorm), 4 max-pools, 3 FC; width 0.25",
                reference="Simonyan & Zisserman 2015, Very deep convolutional networks")
class VGG16(Classifier):
    """Default width 0.25: convs of 16..128 channels and FC layers of 1024 units."""

    def __init__(self, in_channels: int = 1, num_classes: int = 10, width: float = 0.25, batch_norm: bool = True,
                 dropout: float = 0.5):
        super().__init__()
        layers: list[nn.Module] = []
        c_in = in_channels
        for v in VGG16_CFG:
            if v == "M":
                layers.append(nn.MaxPool2d(2))
            else:
                layers.append(ConvBnAct(c_in, _scaled(v, width), 3, bn=batch_norm))
                c_in = _scaled(v, width)
        self.features = nn.Sequential(*layers)  # (B, 128, 1, 1) at width 0.25
        hidden = _scaled(4096, width)
        self.head = nn.Sequential(
            nn.Flatten(),
            nn.Linear(num_flat_features(self.features, in_channels), hidden), nn.ReLU(), nn.Dropout(dropout),
            nn.Linear(hidden, hidden), nn.ReLU(), nn.Dropout(dropout),
            nn.Linear(hidden, num_classes),
        )


@register_model("resnet18", description="ResNet-18 for 28x28: 3x3 stem, no max-pool, BasicBlocks [2, 2, 2, 2]",
                reference="He et al. 2016, Deep residual learning for image recognition")
def resnet18(in_channels: int = 1, num_classes: int = 10, width: int = 32) -> nn.Module:
    """`width` base channels (published: 64); stages of width, 2x, 4x, 8x at 28, 14, 7, 4 pixels."""
    return ResNet(in_channels, num_classes, widths=(width, 2 * width, 4 * width, 8 * width), depths=(2, 2, 2, 2))


@register_model("fedavg-cnn", description="the FedAvg paper's MNIST CNN: 5x5 conv 32, pool, 5x5 conv 64, pool, FC 512",
                reference="McMahan et al. 2017, Communication-efficient learning of deep networks from "
                          "decentralized data")
class FedAvgCNN(Classifier):
    """'Same' padding, as the paper's count of 1,663,370 parameters implies (28 -> 14 -> 7)."""

    def __init__(self, in_channels: int = 1, num_classes: int = 10, hidden: int = 512):
        super().__init__()
        self.features = nn.Sequential(
            nn.Conv2d(in_channels, 32, 5, padding=2), nn.ReLU(), nn.MaxPool2d(2),  # (B, 32, 14, 14)
            nn.Conv2d(32, 64, 5, padding=2), nn.ReLU(), nn.MaxPool2d(2),  # (B, 64, 7, 7)
        )
        self.head = nn.Sequential(
            nn.Flatten(), nn.Linear(num_flat_features(self.features, in_channels), hidden), nn.ReLU(),
            nn.Linear(hidden, num_classes),
        )
