"""Blocks shared by the model zoo, plus the shape, cost and initialisation helpers.

Every block keeps the spatial size for stride 1 ("same" padding for odd kernels), so a model's
shape comments only change where it pools or strides.
"""

import math

import torch
import torch.nn.functional as F
from torch import nn

from digitlab.errors import ModelError

IMAGE_SIZE = 28  # every dataset in digitlab is 28x28; models derive their flatten sizes from this

ACTIVATIONS = {
    "relu": nn.ReLU,
    "leaky_relu": nn.LeakyReLU,
    "sigmoid": nn.Sigmoid,
    "hardswish": nn.Hardswish,
}

INIT_SCHEMES = ("default", "xavier")


class Classifier(nn.Module):
    """Base of the zoo models: forward = forward_head(forward_features(x)), as in timm.

    forward_features maps (B, in_channels, 28, 28) to a feature map, forward_head maps that to
    (B, num_classes) logits. Subclasses that keep their layers in `self.features` and `self.head`
    need not override either.
    """

    features: nn.Module
    head: nn.Module

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        return self.features(x)

    def forward_head(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(x)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.forward_head(self.forward_features(x))


def make_act(name: str) -> nn.Module:
    if name not in ACTIVATIONS:
        raise ModelError(f"unknown activation {name!r}; choose from {', '.join(ACTIVATIONS)}")
    return ACTIVATIONS[name]()


class ConvBnAct(nn.Sequential):
    """Conv2d -> BatchNorm2d -> activation; the conv has no bias when a BatchNorm follows it."""

    def __init__(self, in_channels: int, out_channels: int, kernel_size: int = 3, stride: int = 1,
                 groups: int = 1, act: str | None = "relu", bn: bool = True):
        layers: list[nn.Module] = [nn.Conv2d(in_channels, out_channels, kernel_size, stride,
                                             padding=kernel_size // 2, groups=groups, bias=not bn)]
        if bn:
            layers.append(nn.BatchNorm2d(out_channels))
        if act is not None:
            layers.append(make_act(act))
        super().__init__(*layers)


class SqueezeExcite(nn.Module):
    """Squeeze-and-excitation with a hard-sigmoid gate (MobileNetV3 flavour, Hu et al. 2018)."""

    def __init__(self, channels: int, squeeze_channels: int):
        super().__init__()
        self.reduce = nn.Conv2d(channels, squeeze_channels, 1)
        self.act = nn.ReLU()
        self.expand = nn.Conv2d(squeeze_channels, channels, 1)
        self.gate = nn.Hardsigmoid()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        s = F.adaptive_avg_pool2d(x, 1)  # (B, C, 1, 1)
        return x * self.gate(self.expand(self.act(self.reduce(s))))


class SpatialPyramidPool(nn.Module):
    """Max-pool the map into n x n bins for each n in `bins` and concatenate (He et al. 2014).

    The output length depends only on the channel count, not on the map size.
    """

    def __init__(self, bins: tuple[int, ...] = (4, 2, 1)):
        super().__init__()
        self.bins = tuple(bins)

    def out_features(self, channels: int) -> int:
        return channels * sum(n * n for n in self.bins)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        # (B, C, H, W) -> (B, C * sum(n^2))
        return torch.cat([adaptive_max_pool(x, n).flatten(1) for n in self.bins], dim=1)


def adaptive_max_pool(x: torch.Tensor, n: int) -> torch.Tensor:
    """F.adaptive_max_pool2d(x, n) built from ops that ONNX export knows (it has no adaptive max pool):
    one max_pool2d when n divides the map, else the same bins (rows floor(i*H/n) to ceil((i+1)*H/n))
    taken one by one. Outside export, PyTorch's own kernel (the per-bin loop made a training step 1.6x slower).
    (B, C, H, W) -> (B, C, n, n)."""
    h, w = x.shape[-2:]
    if h % n == 0 and w % n == 0:
        return F.max_pool2d(x, (h // n, w // n))
    if not torch.onnx.is_in_onnx_export():
        return F.adaptive_max_pool2d(x, n)
    return binned_max_pool(x, n)


def binned_max_pool(x: torch.Tensor, n: int) -> torch.Tensor:
    """adaptive_max_pool2d's bins taken one by one with slicing and amax, which ONNX export knows."""
    h, w = x.shape[-2:]
    rows = [(i * h // n, -(-(i + 1) * h // n)) for i in range(n)]
    cols = [(j * w // n, -(-(j + 1) * w // n)) for j in range(n)]
    return torch.stack([torch.stack([x[..., r0:r1, c0:c1].amax((-2, -1)) for c0, c1 in cols], -1)
                        for r0, r1 in rows], -2)


class ResidualBlock(nn.Module):
    """ResNet BasicBlock: two 3x3 conv-BN, ReLU after the sum; a 1x1 conv-BN projects the
    shortcut when the stride or the channel count changes (He et al. 2016)."""

    def __init__(self, in_channels: int, out_channels: int, stride: int = 1):
        super().__init__()
        self.conv1 = ConvBnAct(in_channels, out_channels, 3, stride)
        self.conv2 = ConvBnAct(out_channels, out_channels, 3, act=None)
        if stride == 1 and in_channels == out_channels:
            self.shortcut: nn.Module = nn.Identity()
        else:
            self.shortcut = ConvBnAct(in_channels, out_channels, 1, stride, act=None)
        self.act = nn.ReLU()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.act(self.conv2(self.conv1(x)) + self.shortcut(x))


class SpatialAttention(nn.Module):
    """A 1x1 conv turns the feature map into one mask value per position; sigmoid keeps it in
    (0, 1) and the mask reweights every channel at that position."""

    def __init__(self, channels: int):
        super().__init__()
        self.mask = nn.Conv2d(channels, 1, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x * torch.sigmoid(self.mask(x))  # (B, C, H, W) * (B, 1, H, W)


def _dry_input(module: nn.Module, in_channels: int, image_size: int) -> torch.Tensor:
    param = next(module.parameters(), None)
    device = param.device if param is not None else None
    return torch.zeros(1, in_channels, image_size, image_size, device=device)


@torch.no_grad()
def num_flat_features(module: nn.Module, in_channels: int, image_size: int = IMAGE_SIZE) -> int:
    """Length of module(x) flattened, for one image: a dry pass instead of a hand-computed constant."""
    was_training = module.training
    module.eval()  # BatchNorm cannot take train-mode statistics of one 1x1 value
    try:
        return module(_dry_input(module, in_channels, image_size))[0].numel()
    finally:
        module.train(was_training)


@torch.no_grad()
def count_macs(model: nn.Module, in_channels: int = 1, image_size: int = IMAGE_SIZE) -> int:
    """Multiply-accumulates of the Conv2d and Linear layers for one image (a hooked dry pass in
    eval mode). Activations, pooling, BatchNorm and elementwise products are not counted."""
    total = 0

    def conv_hook(m: nn.Conv2d, inputs: tuple, out: torch.Tensor) -> None:
        nonlocal total
        total += out.numel() * (m.in_channels // m.groups) * math.prod(m.kernel_size)

    def linear_hook(m: nn.Linear, inputs: tuple, out: torch.Tensor) -> None:
        nonlocal total
        total += out.numel() * m.in_features

    handles = []
    for m in model.modules():
        if isinstance(m, nn.Conv2d):
            handles.append(m.register_forward_hook(conv_hook))
        elif isinstance(m, nn.Linear):
            handles.append(m.register_forward_hook(linear_hook))
    was_training = model.training
    model.eval()
    try:
        model(_dry_input(model, in_channels, image_size))
    finally:
        for h in handles:
            h.remove()
        model.train(was_training)
    return total


def init_weights(model: nn.Module, scheme: str) -> None:
    """'xavier': Xavier-uniform conv and linear weights, zero biases. 'default': keep PyTorch's init."""
    if scheme not in INIT_SCHEMES:
        raise ModelError(f"unknown init scheme {scheme!r}; choose from {', '.join(INIT_SCHEMES)}")
    if scheme == "default":
        return
    for m in model.modules():
        if isinstance(m, (nn.Conv2d, nn.Linear)):
            nn.init.xavier_uniform_(m.weight)
            if m.bias is not None:
                nn.init.zeros_(m.bias)
