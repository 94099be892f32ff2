"""Self-describing checkpoints: weights in safetensors beside a JSON that says how to rebuild and feed the model."""

from __future__ import annotations

import hashlib
import json
import subprocess
from dataclasses import dataclass
from datetime import datetime, timezone
from functools import cache
from pathlib import Path
from typing import Any

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, save_file
from torch import nn

import digitlab
from digitlab.atomic import atomic_path, write_text
from digitlab.data import Normalization
from digitlab.errors import CheckpointError, ModelError
from digitlab.models import create_model

FORMAT = "digitlab-checkpoint/1"
WEIGHTS, META = "model.safetensors", "model.json"


@dataclass
class Checkpoint:
    model: nn.Module  # in eval mode
    meta: dict[str, Any]

    @property
    def normalization(self) -> Normalization:
        return Normalization(**self.meta["normalization"])

    @property
    def classes(self) -> list[str]:
        return self.meta["classes"]


@cache
def code_version() -> str:
    """digitlab's version, plus the git commit when running from a checkout."""
    try:
        commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True,
                                cwd=Path(__file__).parent, timeout=5).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        commit = ""
    return f"{digitlab.__version__}+g{commit}" if commit else digitlab.__version__


def model_meta(model: str, model_args: dict[str, Any], dataset: str, classes: list[str], norm: Normalization,
               **extra: Any) -> dict[str, Any]:
    """What load_checkpoint needs to rebuild and feed a model (28x28 single-channel input), plus `extra`."""
    return {"model": model, "model_args": model_args, "dataset": dataset, "classes": list(classes),
            "normalization": {"mean": norm.mean, "std": norm.std}, "input_size": [1, 28, 28], **extra}


def save_checkpoint(folder: str | Path, model: nn.Module, meta: dict[str, Any], storage: str = "dense") -> Path:
    """Write folder/model.safetensors, then folder/model.json naming the weights' SHA-256.

    Each file is replaced atomically and the JSON is written last, so a crash between the two leaves a
    pair whose hash does not match, which load_checkpoint reports instead of loading mixed files.
    storage: "dense" (float32), or "sparse", "int8", "sparse-int8" (digitlab.compress.storage)."""
    folder = Path(folder)
    state = {k: v.detach().contiguous() for k, v in model.state_dict().items()}
    meta = {k: v for k, v in meta.items() if k != "storage"}
    if storage != "dense":
        from digitlab.compress.storage import pack

        state, meta["storage"] = pack(state, storage)
    with atomic_path(folder / WEIGHTS) as tmp:
        save_file(state, str(tmp))
        digest = _sha256(tmp)
    meta = {"format": FORMAT, **meta, "weights_sha256": digest, "code_version": code_version(),
            "saved_at": datetime.now(timezone.utc).isoformat(timespec="seconds")}
    write_text(folder / META, json.dumps(meta, indent=2))
    return folder / WEIGHTS


def resolve(path: str | Path) -> tuple[Path, Path]:
    """(weights, meta) paths from a run folder, a .safetensors file or a .json file."""
    path = Path(path)
    if path.is_dir():
        return path / WEIGHTS, path / META
    if path.suffix == ".json":
        return path.with_suffix(".safetensors"), path
    return path, path.with_suffix(".json")


def load_checkpoint(path: str | Path) -> Checkpoint:
    """A checkpoint's model, rebuilt by name from the model registry (create_model(meta["model"],
    **meta["model_args"]): a zoo classifier, an ensemble, a line reader), and its meta; any defect is a
    one-line CheckpointError."""
    weights, meta_path = resolve(path)
    for p in (weights, meta_path):
        if not p.is_file():
            raise CheckpointError(f"{p}: checkpoint file not found")
    try:
        meta = json.loads(meta_path.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise CheckpointError(f"{meta_path}: not valid JSON ({e})") from None
    if not isinstance(meta, dict) or meta.get("format") != FORMAT:
        raise CheckpointError(f"{meta_path}: not a {FORMAT} file")
    if meta.get("weights_sha256") != _sha256(weights):
        raise CheckpointError(f"{weights}: SHA-256 does not match {meta_path.name} (incomplete or mixed files)")
    try:
        model = create_model(meta["model"], **meta["model_args"])
        state = load_file(str(weights))
        if "storage" in meta or "pruning" in meta:  # packed weights, layers shrunk by structured pruning
            from digitlab.compress.storage import resize_to, unpack

            state = unpack(state, meta.get("storage", {}))
            resize_to(model, state)
        model.load_state_dict(state)
    except (ModelError, KeyError, TypeError) as e:
        raise CheckpointError(f"{meta_path}: cannot rebuild the model ({e})") from None
    except (SafetensorError, RuntimeError) as e:
        first = str(e).strip().splitlines()[0]
        raise CheckpointError(f"{weights}: weights do not fit model {meta['model']!r} ({first})") from None
    # NHWC weights: every zoo model infers faster on a CPU so, whatever the input's layout (12 crops through
    # lenet5-improved with one thread: 3.1 ms against 6.3; rescnn on 256: 290 ms against 411); training
    # sets its own layout (TrainConfig.channels_last)
    return Checkpoint(model=model.eval().to(memory_format=torch.channels_last), meta=meta)


def _sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def save_state(path: Path, state: dict[str, Any]) -> None:
    """The resumable training state (model, optimiser, scheduler, RNGs, history), written atomically."""
    with atomic_path(path) as tmp:
        torch.save(state, tmp)


def load_state(path: Path) -> dict[str, Any]:
    try:
        return torch.load(path, weights_only=True)
    except Exception as e:  # torch raises many types for a damaged file
        raise CheckpointError(f"{path}: cannot read the training state ({type(e).__name__})") from None
