"""MobileNetV3-Small (Howard et al. 2019) adapted to 28x28 inputs."""

import torch
from torch import nn

from digitlab.models.layers import Classifier, ConvBnAct, SqueezeExcite
from digitlab.models.registry import register_model

# Table 2 of the paper, MobileNetV3-Small, one row per inverted-residual block:
# (kernel, expansion channels, out channels, squeeze-excite, activation, stride)
# On 224x224 the stem and four blocks stride 2 (224 -> 7). Here the stem strides 1 and the ninth
# block too, so a 28x28 digit goes 28 -> 14 -> 7 -> 4 and the last blocks still see a 4x4 map.
SMALL_BLOCKS = [
    (3, 16, 16, True, "relu", 2),  # 28 -> 14
    (3, 72, 24, False, "relu", 2),  # 14 -> 7
    (3, 88, 24, False, "relu", 1),
    (5, 96, 40, True, "hardswish", 2),  # 7 -> 4
    (5, 240, 40, True, "hardswish", 1),
    (5, 240, 40, True, "hardswish", 1),
    (5, 120, 48, True, "hardswish", 1),
    (5, 144, 48, True, "hardswish", 1),
    (5, 288, 96, True, "hardswish", 1),  # paper: stride 2
    (5, 576, 96, True, "hardswish", 1),
    (5, 576, 96, True, "hardswish", 1),
]
STEM_CHANNELS, LAST_CONV_CHANNELS, HEAD_CHANNELS = 16, 576, 1024


def make_divisible(v: float, divisor: int = 8) -> int:
    """Round a scaled channel count to a multiple of `divisor`, never losing more than 10%."""
    new_v = max(divisor, int(v + divisor / 2) // divisor * divisor)
    return new_v + divisor if new_v < 0.9 * v else new_v


class InvertedResidual(nn.Module):
    """1x1 expand -> kxk depthwise -> (squeeze-excite) -> 1x1 linear projection, with an identity
    shortcut when the shape is kept. The projection has no activation: the linear bottleneck."""

    def __init__(self, in_channels: int, exp_channels: int, out_channels: int, kernel_size: int,
                 stride: int, se: bool, act: str):
        super().__init__()
        layers: list[nn.Module] = []
        if exp_channels != in_channels:
            layers.append(ConvBnAct(in_channels, exp_channels, 1, act=act))
        layers.append(ConvBnAct(exp_channels, exp_channels, kernel_size, stride, groups=exp_channels, act=act))
        if se:
            layers.append(SqueezeExcite(exp_channels, make_divisible(exp_channels / 4)))
        layers.append(ConvBnAct(exp_channels, out_channels, 1, act=None))
        self.block = nn.Sequential(*layers)
        self.use_residual = stride == 1 and in_channels == out_channels

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.block(x)
        return x + out if self.use_residual else out


@register_model("mobilenetv3-small",
                description="MobileNetV3-Small: inverted residuals, squeeze-excite, hard-swish; "
                            "stem stride 1 for 28x28",
                reference="Howard et al. 2019, Searching for MobileNetV3")
class MobileNetV3Small(Classifier):
    def __init__(self, in_channels: int = 1, num_classes: int = 10, width_mult: float = 1.0, dropout: float = 0.2):
        super().__init__()
        c_in = make_divisible(STEM_CHANNELS * width_mult)
        layers: list[nn.Module] = [ConvBnAct(in_channels, c_in, 3, stride=1, act="hardswish")]  # (B, 16, 28, 28)
        for k, exp, out, se, act, stride in SMALL_BLOCKS:
            c_out = make_divisible(out * width_mult)
            layers.append(InvertedResidual(c_in, make_divisible(exp * width_mult), c_out, k, stride, se, act))
            c_in = c_out
        last = make_divisible(LAST_CONV_CHANNELS * width_mult)
        layers.append(ConvBnAct(c_in, last, 1, act="hardswish"))  # (B, 576, 4, 4)
        self.features = nn.Sequential(*layers)
        self.num_features = last
        # The paper's final 1x1 conv without BatchNorm on the pooled vector is a linear layer.
        hidden = make_divisible(HEAD_CHANNELS * width_mult)
        self.head = nn.Sequential(
            nn.AdaptiveAvgPool2d(1), nn.Flatten(),
            nn.Linear(last, hidden), nn.Hardswish(), nn.Dropout(dropout),
            nn.Linear(hidden, num_classes),
        )
