"""Checkpoints shipped with digitlab, so that reading works offline right after install.

Each bundled set is laid out like a training run: the classifier's model.json and model.safetensors,
with the reader's helpers beside it (verifier/, line-reader/), so that every command that takes a run
folder takes it too. Its README.md says how each checkpoint was trained and what it measures.

    digitlab read photo.jpg                      # the bundled MNIST reader
    from digitlab.read import read; read("photo.jpg")
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
