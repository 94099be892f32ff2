"""Compression: pruning (unstructured, structured, the energy-aware schedule), int8 quantization and
compact storage of the result. Fine-tuning is the one training loop (digitlab.train).

Each name loads its module when first used (torch and ONNX Runtime only then)."""

from importlib import import_module

_API = {
    "prune": "pruning", "PruneConfig": "config", "layer_table": "pruning",
    "quantize": "quantization", "QuantizeReport": "quantization",
}
__all__ = sorted(_API)


def __getattr__(name: str):
    if name in _API:
        return getattr(import_module(f"digitlab.compress.{_API[name]}"), name)
    raise AttributeError(f"module 'digitlab.compress' has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted({*globals(), *__all__})
