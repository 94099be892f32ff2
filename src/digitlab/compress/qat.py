"""Quantization-aware fine-tuning: the one training loop, on a copy of the model that rounds as 8-bit ONNX does.

Every conv and linear weight goes through a parametrization that rounds it to the 8-bit grid ONNX Runtime's
quantizer will use (uint8, asymmetric, one scale per output channel or per tensor), and every conv and linear
input through uint8 rounding on a running range (as the quantizer's activations). Rounding passes the
gradient straight through (PyTorch's fake_quantize ops), so the float weights learn to sit where rounding
costs least. BatchNorm keeps its statistics during the fine-tune: ONNX Runtime folds it into the conv before
quantizing, so each weight is rounded as folded into the BatchNorm after it. Afterwards the rounding is taken
off; the fp32 weights are exported and quantized as any model is (`digitlab.compress.quantization`)."""

from __future__ import annotations

import copy
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn
from torch.nn.utils import parametrize

ACT_MOMENTUM = 0.01  # how fast the running activation range follows the batches' ranges


class WeightRounding(nn.Module):
    """Rounds a weight to uint8 as ONNX Runtime's quantizer does for uint8 weights: asymmetric, on the range
    [min(w, 0), max(w, 0)], one scale and zero point per output channel or per tensor. With the BatchNorm that
    follows the layer, the weight is rounded as folded into it (scaled by gamma / sigma per channel), since the
    quantizer sees the folded weight; the factor is taken off again."""

    def __init__(self, per_channel: bool, batchnorm: nn.Module | None = None):
        super().__init__()
        self.per_channel = per_channel
        self._batchnorm = [batchnorm] if batchnorm is not None else []  # a list: not a submodule of this one

    def forward(self, w: torch.Tensor) -> torch.Tensor:
        fold = None
        if self._batchnorm:
            bn = self._batchnorm[0]
            fold = (bn.weight / torch.sqrt(bn.running_var + bn.eps)).detach()
            fold = torch.where(fold.abs() < 1e-8, torch.full_like(fold, 1e-8), fold).reshape(-1, *[1] * (w.dim() - 1))
            w = w * fold
        flat = w.detach().flatten(1) if self.per_channel else w.detach().reshape(1, -1)
        low, high = flat.amin(1).clamp_max(0), flat.amax(1).clamp_min(0)
        scale = ((high - low) / 255).clamp_min(1e-8)
        zero = (-low / scale).round().to(torch.int32)
        if self.per_channel:
            w = torch.fake_quantize_per_channel_affine(w, scale, zero, 0, 0, 255)
        else:
            w = torch.fake_quantize_per_tensor_affine(w, float(scale), int(zero), 0, 255)
        return w / fold if fold is not None else w


class InputRounding(nn.Module):
    """Rounds a layer's input to uint8 on its running range (a forward pre-hook); the range starts at the first
    batch's and then follows the batches' as an exponential average, in training mode only."""

    def __init__(self):
        super().__init__()
        self.register_buffer("low", torch.tensor(0.0))
        self.register_buffer("high", torch.tensor(0.0))
        self.register_buffer("seen", torch.tensor(False))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.training:
            lo, hi = x.detach().min(), x.detach().max()
            if not self.seen:
                self.low.copy_(lo), self.high.copy_(hi), self.seen.fill_(True)
            else:
                self.low.lerp_(lo, ACT_MOMENTUM), self.high.lerp_(hi, ACT_MOMENTUM)
        low, high = min(float(self.low), 0.0), max(float(self.high), 0.0)  # 0 must be exact
        scale = max(high - low, 1e-8) / 255
        return torch.fake_quantize_per_tensor_affine(x, scale, int(round(-low / scale)), 0, 255)

    def hook(self, module: nn.Module, args: tuple) -> tuple:
        return (self(args[0]), *args[1:])


@dataclass
class Rounded:
    """A model with int8 rounding attached, and what undoes it."""
    model: nn.Module
    handles: list[Any]
    layers: list[nn.Module]

    def remove(self) -> nn.Module:
        """The model without the rounding: its float weights as trained."""
        for h in self.handles:
            h.remove()
        for m in self.layers:
            parametrize.remove_parametrizations(m, "weight", leave_parametrized=False)
            del m.input_rounding
        return self.model


def with_rounding(model: nn.Module, per_channel: bool) -> Rounded:
    """A copy of `model` whose conv and linear layers round their weights and inputs as int8 will."""
    model = copy.deepcopy(model).to(memory_format=torch.contiguous_format)
    modules = list(model.modules())
    layers = [m for m in modules if isinstance(m, (nn.Conv2d, nn.Linear))]
    handles = []
    for m in layers:
        parametrize.register_parametrization(m, "weight", WeightRounding(per_channel, batchnorm_after(m, modules)))
        m.input_rounding = InputRounding()
        handles.append(m.register_forward_pre_hook(m.input_rounding.hook))
    return Rounded(model, handles, layers)


def batchnorm_after(layer: nn.Module, modules: list[nn.Module]) -> nn.Module | None:
    """The BatchNorm2d registered right after a conv layer, of its width (conv, BN, activation: how the zoo's
    blocks are built, and what ONNX Runtime folds), else None."""
    if not isinstance(layer, nn.Conv2d):
        return None
    k = next(i for i, m in enumerate(modules) if m is layer)
    after = modules[k + 1] if k + 1 < len(modules) else None
    if isinstance(after, nn.BatchNorm2d) and after.num_features == layer.out_channels:
        return after
    return None


def frozen_batchnorm(model: nn.Module) -> None:
    """BatchNorm layers keep their running statistics (eval mode); the rest trains."""
    for m in model.modules():
        if isinstance(m, nn.modules.batchnorm._BatchNorm):
            m.eval()


def finetune(model: nn.Module, data: Any, train_cfg: Any, norm: Any, num_classes: int, epochs: float,
             per_channel: bool, calibration: torch.Tensor, progress: bool = False) -> tuple[nn.Module, dict]:
    """Fine-tune a copy of `model` for `epochs` passes over data.train with int8 rounding in the loop, the
    input ranges started on the `calibration` images (uint8 (N, 28, 28)); returns the fp32 model without the
    rounding, in eval mode, and the loop's metrics."""
    from digitlab.data import to_model_input
    from digitlab.train.loop import steps_per_epoch, train_steps

    rounded = with_rounding(model, per_channel)
    net = rounded.model.train()
    with torch.no_grad():  # the input ranges start where the calibration images put them
        net(to_model_input(calibration, norm))
    steps = max(1, round(epochs * steps_per_epoch(len(data.train), train_cfg.batch_size)))

    class Loop(nn.Module):  # train() on it leaves BatchNorm frozen, whatever the loop does
        def __init__(self):
            super().__init__()
            self.net = net

        def train(self, mode: bool = True):
            super().train(mode)
            if mode:
                frozen_batchnorm(self.net)
            return self

        def forward(self, x):
            return self.net(x)

    _, metrics = train_steps(Loop().train(), data.train.images, data.train.labels, train_cfg, steps, norm=norm,
                             num_classes=num_classes, progress=progress, desc="quantization-aware fine-tune")
    return rounded.remove().eval(), metrics
