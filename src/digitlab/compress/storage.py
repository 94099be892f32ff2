"""Compact checkpoint storage: pruned weights really gone from the file, weights in int8, and pruned layers
rebuilt at their smaller shapes.

A checkpoint's model.safetensors normally holds each tensor dense in float32. `pack` writes each conv and
linear weight instead as
- "sparse": a bit mask of its non-zero entries (np.packbits) and the non-zero values, when at least half of
  it is zero (below that the mask costs more than it saves);
- "int8": symmetric int8 per output channel with one float32 scale per channel (zeros stay exactly zero);
- "sparse-int8": both.
Bit masks and int8 values are deflated (zlib), the entropy-coding stage of Deep Compression (Han et al.
2016) in its simplest form: a 20%-dense mask shrinks by about a third, int8 values by about a tenth.
model.json's "storage" entry says how each tensor was written; `unpack` restores the dense state dict that
load_state_dict takes. Biases, BatchNorm and other small tensors stay float32."""

from __future__ import annotations

import zlib
from typing import Any

import numpy as np
import torch
from torch import nn

from digitlab.errors import CheckpointError, ConfigError

STORAGES = ("dense", "sparse", "int8", "sparse-int8")
SPARSE_FROM = 0.5  # share of zeros from which a tensor is stored sparse


def pack(state: dict[str, torch.Tensor], storage: str) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
    """(tensors for safetensors, the "storage" entry of model.json) of a state dict."""
    if storage not in STORAGES:
        raise ConfigError(f"storage must be one of {', '.join(STORAGES)}, got {storage!r}")
    tensors: dict[str, torch.Tensor] = {}
    encoded: dict[str, dict[str, Any]] = {}
    for name, t in state.items():
        t = t.detach().contiguous()
        if storage == "dense" or t.ndim < 2 or not t.is_floating_point():
            tensors[name] = t
            continue
        flat = t.reshape(len(t), -1).float()
        sparse = "sparse" in storage and float((flat == 0).float().mean()) >= SPARSE_FROM
        int8 = "int8" in storage
        encoding = "-".join(e for e, on in (("sparse", sparse), ("int8", int8)) if on)
        if not encoding:
            tensors[name] = t
            continue
        values = flat
        if int8:
            scale = flat.abs().amax(1).clamp_min(1e-12) / 127  # (out,)
            values = torch.round(flat / scale[:, None]).to(torch.int8)
            tensors[f"{name}:scale"] = scale
        if sparse:
            mask = (flat != 0).flatten()
            tensors[f"{name}:mask"] = deflate(np.packbits(mask.numpy()))
            values = values.flatten()[mask]
        tensors[f"{name}:values"] = deflate(values.numpy()) if int8 else values.contiguous()
        encoded[name] = {"shape": list(t.shape), "encoding": encoding, "deflate": True}
    return tensors, {"format": storage, "tensors": encoded}


def unpack(tensors: dict[str, torch.Tensor], info: dict[str, Any]) -> dict[str, torch.Tensor]:
    """The dense float32 state dict of tensors written by `pack`."""
    state = {k: v for k, v in tensors.items() if ":" not in k}
    try:
        for name, spec in info.get("tensors", {}).items():
            shape, encoding = spec["shape"], spec["encoding"]
            rows, size = shape[0], int(np.prod(shape))
            packed = spec.get("deflate", False)
            values = tensors[f"{name}:values"]
            if packed and "int8" in encoding:
                values = inflate(values, np.int8)
            if "sparse" in encoding:
                bits = inflate(tensors[f"{name}:mask"], np.uint8) if packed else tensors[f"{name}:mask"]
                mask = torch.from_numpy(np.unpackbits(bits.numpy(), count=size).astype(bool))
                dense = torch.zeros(size, dtype=values.dtype)
                dense[mask] = values
                values = dense
            values = values.reshape(rows, -1).float()
            if "int8" in encoding:
                values = values * tensors[f"{name}:scale"][:, None]
            state[name] = values.reshape(shape)
    except (KeyError, ValueError, RuntimeError, zlib.error) as e:
        raise CheckpointError(f"packed weights are damaged or incomplete ({type(e).__name__}: {e})") from None
    return state


def deflate(a: np.ndarray) -> torch.Tensor:
    return torch.frombuffer(bytearray(zlib.compress(np.ascontiguousarray(a).tobytes(), 9)), dtype=torch.uint8)


def inflate(t: torch.Tensor, dtype: type) -> torch.Tensor:
    return torch.from_numpy(np.frombuffer(zlib.decompress(t.numpy().tobytes()), dtype=dtype).copy())


def resize_to(model: nn.Module, state: dict[str, torch.Tensor]) -> nn.Module:
    """Shrink the layers of a freshly built model to the shapes of a structurally pruned state dict
    (fewer filters, channels or neurons), so that load_state_dict takes it. Depthwise convolutions stay
    depthwise. A layer of a kind this does not know how to resize is a CheckpointError."""
    for prefix, m in model.named_modules():
        key = f"{prefix}.weight" if prefix else "weight"
        if key not in state or getattr(m, "weight", None) is None or m.weight.shape == state[key].shape:
            continue
        shape = state[key].shape
        if isinstance(m, nn.Conv2d):
            depthwise = m.groups > 1 and m.groups == m.in_channels
            m.out_channels = shape[0]
            m.groups = shape[0] if depthwise else m.groups
            m.in_channels = shape[1] * m.groups
        elif isinstance(m, nn.Linear):
            m.out_features, m.in_features = shape
        elif isinstance(m, nn.modules.batchnorm._BatchNorm):
            m.num_features = shape[0]
            for buf in ("running_mean", "running_var"):
                setattr(m, buf, torch.empty(shape))
        else:
            raise CheckpointError(f"{prefix}: cannot resize a {type(m).__name__} to a pruned shape {list(shape)}")
        m.weight = nn.Parameter(torch.empty(shape))
        if getattr(m, "bias", None) is not None:
            m.bias = nn.Parameter(torch.empty(state[f"{prefix}.bias" if prefix else "bias"].shape))
    return model
