"""Where datasets and decoded caches live: an explicit argument, then the environment, then the user cache."""

from __future__ import annotations

import os
from os import PathLike
from pathlib import Path

import platformdirs


def resolve_data_dir(data_dir: str | PathLike | None = None) -> Path:
    """--data-dir > $DIGITLAB_DATA > <user cache>/digitlab/datasets."""
    if data_dir is not None:
        return Path(data_dir).expanduser()
    if os.environ.get("DIGITLAB_DATA"):
        return Path(os.environ["DIGITLAB_DATA"]).expanduser()
    return Path(platformdirs.user_cache_dir("digitlab")) / "datasets"


def resolve_cache_dir() -> Path:
    """$DIGITLAB_CACHE > <user cache>/digitlab: decoded datasets (never the data root, which may be read-only)."""
    if os.environ.get("DIGITLAB_CACHE"):
        return Path(os.environ["DIGITLAB_CACHE"]).expanduser()
    return Path(platformdirs.user_cache_dir("digitlab"))
