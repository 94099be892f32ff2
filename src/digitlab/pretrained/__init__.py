"""Checkpoints shipped with digitlab, so that reading works offline right after install.

Each bundled set is laid out like a training run: the classifier's model.json and model.safetensors,
with the reader's helpers beside it (verifier/, line-reader/, field-reader/), so that every command that takes a run
folder takes it too. Its README.md says how each checkpoint was trained and what it measures.

    digitlab read photo.jpg                      # the bundled MNIST reader
    digitlab read photo.jpg --checkpoint tibetan # the bundled TibetanMNIST reader
    from digitlab.read import read; read("photo.jpg", bundled("tibetan"))
    create_model("fastcnn", pretrained="tibetan")  # list_pretrained(): "fastcnn.kannada", "fastcnn.mnist", ...
"""

from __future__ import annotations

from pathlib import Path

from digitlab.errors import DigitlabError

ROOT = Path(__file__).parent
DEFAULT = "mnist"


def names() -> list[str]:
    """The bundled sets, e.g. ["mnist"]."""
    return sorted(p.name for p in ROOT.iterdir() if (p / "model.json").is_file())


def bundled(name: str = DEFAULT) -> Path:
    """The run folder of bundled set `name`; a DigitlabError names the sets there are."""
    folder = ROOT / name
    if not (folder / "model.json").is_file():
        raise DigitlabError(f"no bundled model {name!r} (bundled: {', '.join(names()) or 'none'})")
    return folder


def card(name: str) -> dict:
    """What bundled set `name` holds: its classifier's architecture, dataset, classes, test accuracy and
    calibration, the bytes of its weights, and whether its verifier, line reader and field reader are there."""
    import json

    folder = bundled(name)
    meta = json.loads((folder / "model.json").read_text())
    metrics = meta.get("metrics") or {}
    files = [p for p in folder.rglob("model.safetensors")]
    return {"name": f"{meta['model']}.{name}", "set": name, "model": meta["model"], "dataset": meta["dataset"],
            "classes": meta["classes"], "test_accuracy": metrics.get("test_accuracy"),
            "temperature": meta.get("temperature"), "bytes": sum(p.stat().st_size for p in files),
            "verifier": (folder / "verifier" / "model.json").is_file(),
            "line_reader": (folder / "line-reader" / "model.json").is_file(),
            "field_reader": (folder / "field-reader" / "model.json").is_file()}


def list_pretrained(pattern: str | None = None) -> list[str]:
    """The bundled classifiers as "<model>.<set>" (timm's convention), e.g. ["fastcnn.mnist"]; pattern: a
    shell-style filter."""
    import fnmatch

    found = sorted(card(n)["name"] for n in names())
    return [n for n in found if pattern is None or fnmatch.fnmatch(n, pattern)]


def pretrained_model(model: str, weights: str):
    """A fresh copy (eval mode) of architecture `model` with the weights of bundled set `weights` (a set name,
    e.g. "mnist", or "<model>.<set>"); a DigitlabError says which pretrained weights there are."""
    import copy

    from digitlab.checkpoint import load_checkpoint

    set_name = weights.split(".", 1)[1] if weights.startswith(f"{model}.") else weights
    available = list_pretrained()
    if set_name not in names() or card(set_name)["model"] != model:
        raise DigitlabError(f"no pretrained {model!r} weights {weights!r}; pretrained: "
                            f"{', '.join(available) or 'none'}")
    return copy.deepcopy(load_checkpoint(bundled(set_name)).model).eval()
