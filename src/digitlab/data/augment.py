"""Batch-level augmentation on the device: one random affine + optional elastic field and stroke-width
change per sample."""

from __future__ import annotations

import math
from dataclasses import dataclass, fields

import torch
import torch.nn.functional as F

from digitlab.errors import ConfigError


@dataclass(frozen=True)
class Augment:
    """Random geometric augmentation of float [0, 1] batches (B, 1, H, W); the default is off."""

    rotation: float = 0.0  # degrees, uniform in [-rotation, rotation]
    scale: tuple[float, float] = (1.0, 1.0)  # zoom factor, uniform in [lo, hi]
    translate: float = 0.0  # fraction of the image side, uniform in [-t, t] along x and y
    shear: float = 0.0  # degrees along x, uniform in [-shear, shear]
    elastic_alpha: float = 0.0  # 0 = off; pixels per unit of smoothed uniform noise (Simard et al. 2003: 34)
    elastic_sigma: float = 4.0  # pixels, std of the Gaussian that smooths the displacement noise
    # pixels per side, uniform in [lo, hi]: strokes grow (> 0) or thin (< 0) by about that much, by
    # grayscale dilation or erosion with a 3x3 square, a fraction of a step blended in. Pens, scans and
    # binarization change stroke width, which MNIST's own writing hardly varies (its strokes are 2-3 px
    # wide: -0.5 thins them to half)
    stroke: tuple[float, float] = (0.0, 0.0)

    def __post_init__(self):
        for name in ("scale", "stroke"):
            object.__setattr__(self, name, tuple(float(v) for v in getattr(self, name)))
            if len(getattr(self, name)) != 2:
                raise ConfigError(f"augment {name} must be (lo, hi), got {getattr(self, name)}")
        lo, hi = self.scale
        if not 0 < lo <= hi:
            raise ConfigError(f"augment scale must be 0 < lo <= hi, got {lo}:{hi}")
        if self.rotation < 0 or self.translate < 0 or self.shear < 0 or self.elastic_alpha < 0:
            raise ConfigError(f"augment rotation, translate, shear and elastic must be >= 0, got {self}")
        if not self.stroke[0] <= self.stroke[1]:
            raise ConfigError(f"augment stroke must be lo <= hi, got {self.stroke[0]}:{self.stroke[1]}")
        if not self.translate < 1 or not self.shear < 90:
            raise ConfigError(f"augment translate must be < 1 and shear < 90 degrees, got {self}")
        if not self.elastic_sigma > 0:
            raise ConfigError(f"augment elastic_sigma must be > 0, got {self.elastic_sigma}")

    @property
    def moves(self) -> bool:
        """Whether the affine or the elastic part is on."""
        return bool(self.rotation or self.scale != (1.0, 1.0) or self.translate or self.shear or self.elastic_alpha)

    @property
    def enabled(self) -> bool:
        return self.moves or self.stroke != (0.0, 0.0)

    def __call__(self, x: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
        """(B, C, H, W) -> same shape; areas moved in from outside the image are black (zero)."""
        if not self.enabled:
            return x
        b, c, h, w = x.shape
        # Random numbers are drawn where the generator lives, so a CPU generator also drives CUDA batches
        dev = generator.device if generator is not None else x.device

        def uniform(lo: float, hi: float, *shape: int) -> torch.Tensor:
            u = torch.rand(b, *shape, generator=generator, device=dev)
            return (u * (hi - lo) + lo).to(x.device)

        if self.moves:  # (strokes alone: no resampling)
            angle = uniform(-self.rotation, self.rotation) * (math.pi / 180)
            zoom = uniform(*self.scale)
            shear = torch.tan(uniform(-self.shear, self.shear) * (math.pi / 180))
            shift = uniform(-self.translate, self.translate, 2) * 2  # fraction of the side -> [-1, 1] grid units
            cos, sin = torch.cos(angle), torch.sin(angle)
            # Forward map p -> zoom * R @ Shear @ p + shift, as (B, 2, 2); grid_sample wants its inverse
            fwd = zoom[:, None, None] * torch.stack([
                torch.stack([cos, cos * shear - sin], -1),
                torch.stack([sin, sin * shear + cos], -1),
            ], 1)
            inv = torch.linalg.inv(fwd)
            theta = torch.cat([inv, -(inv @ shift[:, :, None])], 2)  # (B, 2, 3)
            grid = affine_grid(theta, h, w)  # (B, H, W, 2) as (x, y) in [-1, 1]
            if self.elastic_alpha:
                grid = grid + self._displacement(b, h, w, dev, generator).to(x.device)
            x = F.grid_sample(x, grid.to(x.dtype), mode="bilinear", padding_mode="zeros", align_corners=False)
        return self._stroke(x, uniform(*self.stroke)) if self.stroke != (0.0, 0.0) else x

    @staticmethod
    def _stroke(x: torch.Tensor, amount: torch.Tensor) -> torch.Tensor:
        """Each sample's strokes grown (amount > 0) or thinned (< 0) by |amount| px per side: whole 3x3
        dilations or erosions, then a blend towards one more for the fraction left."""
        steps = int(amount.abs().max().ceil())
        sign = amount.sign().view(-1, 1, 1, 1).to(x.dtype)
        left = amount.abs().view(-1, 1, 1, 1).to(x.dtype)
        for _ in range(steps):
            # dilation of sign * x: a max-pool of the ink (sign +1) or of the paper (sign -1)
            moved = sign * F.max_pool2d(sign * x, 3, stride=1, padding=1)
            x = x + left.clamp(max=1.0) * (moved - x)
            left = (left - 1.0).clamp(min=0.0)
        return x

    def _displacement(self, b: int, h: int, w: int, dev, generator) -> torch.Tensor:
        """Smoothed random displacement field (B, H, W, 2) in grid units (Simard et al. 2003)."""
        noise = torch.rand(b * 2, 1, h, w, generator=generator, device=dev) * 2 - 1
        radius = math.ceil(3 * self.elastic_sigma)
        t = torch.arange(-radius, radius + 1, device=dev, dtype=torch.float32)
        k = torch.exp(-0.5 * (t / self.elastic_sigma) ** 2)
        k = k / k.sum()
        noise = F.conv2d(noise, k.view(1, 1, -1, 1), padding=(radius, 0))  # separable Gaussian blur
        noise = F.conv2d(noise, k.view(1, 1, 1, -1), padding=(0, radius))
        d = noise.view(b, 2, h, w).permute(0, 2, 3, 1) * self.elastic_alpha  # pixels
        return d * torch.tensor([2.0 / w, 2.0 / h], device=dev)  # pixels -> grid units

    def to_string(self) -> str:
        """The parse_augment form of this config ('none' when off)."""
        if not self.enabled:
            return "none"
        parts = []
        for f in fields(self):
            v = getattr(self, f.name)
            if v == f.default or (f.name == "elastic_sigma" and not self.elastic_alpha):
                continue
            key = _NAMES.get(f.name, f.name)
            parts.append(f"{key}={v[0]:g}:{v[1]:g}" if isinstance(v, tuple) else f"{key}={v:g}")
        return ",".join(parts)


def affine_grid(theta: torch.Tensor, h: int, w: int) -> torch.Tensor:
    """F.affine_grid(theta, (B, C, h, w), align_corners=False) as one matrix product.

    The same grid; on a CPU F.affine_grid broadcasts a batched matmul and costs about 1.3 ms for
    128 28x28 samples (most of the augmentation's time), this about 0.1 ms."""
    ys = (torch.arange(h, device=theta.device, dtype=theta.dtype) * 2 + 1) / h - 1  # pixel centres
    xs = (torch.arange(w, device=theta.device, dtype=theta.dtype) * 2 + 1) / w - 1
    base = torch.stack([xs.expand(h, w), ys[:, None].expand(h, w), torch.ones_like(xs).expand(h, w)], -1)
    return torch.einsum("pk,bjk->bpj", base.view(-1, 3), theta).view(len(theta), h, w, 2)


_KEYS = {"rotation": "rotation", "scale": "scale", "translate": "translate", "shear": "shear",
         "elastic": "elastic_alpha", "elastic_alpha": "elastic_alpha", "elastic_sigma": "elastic_sigma",
         "stroke": "stroke"}
_NAMES = {"elastic_alpha": "elastic"}
_EXAMPLES = {"scale": "scale=0.9:1.1", "stroke": "stroke=-0.3:0.7"}


def parse_augment(s: str | None) -> Augment:
    """'rotation=10,scale=0.9:1.1,translate=0.1,shear=5,elastic=34,elastic_sigma=4,stroke=-0.3:0.7' -> Augment;
    '' or 'none' -> off."""
    if s is None or s.strip().lower() in ("", "none", "off"):
        return Augment()
    kwargs: dict[str, object] = {}
    for item in s.split(","):
        key, eq, value = (part.strip() for part in item.partition("="))
        if not eq or key not in _KEYS:
            raise ConfigError(f"bad augment item {item.strip()!r} in {s!r}: use key=value with keys "
                              f"{', '.join(k for k in _KEYS if k != 'elastic_alpha')}")
        field_name = _KEYS[key]
        if field_name in kwargs:
            raise ConfigError(f"augment key {key!r} given twice in {s!r}")
        try:
            if field_name in _EXAMPLES:  # the ranges
                lo, colon, hi = value.partition(":")
                if not colon:
                    raise ValueError
                kwargs[field_name] = (float(lo), float(hi))
            else:
                kwargs[field_name] = float(value)
        except ValueError:
            form = f"lo:hi, e.g. {_EXAMPLES[field_name]}" if field_name in _EXAMPLES else "a number"
            raise ConfigError(f"augment {key}={value!r}: expected {form}") from None
    return Augment(**kwargs)
