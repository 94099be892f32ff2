"""Atomic file writes: a reader sees the old file or the whole new one, never a half-written one."""

from __future__ import annotations

import os
import tempfile
from collections.abc import Iterable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import numpy as np


def _umask() -> int:
    mask = os.umask(0)  # reading the umask sets it: done once, at import, before any thread writes
    os.umask(mask)
    return mask


UMASK = _umask()


@contextmanager
def atomic_path(path: str | os.PathLike) -> Iterator[Path]:
    """Yield a temporary path beside `path`; on success it replaces `path`, on error it is removed."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    os.close(fd)
    try:
        yield Path(tmp)
        with open(tmp, "rb+") as f:
            os.fsync(f.fileno())
            os.fchmod(f.fileno(), 0o666 & ~UMASK)  # mkstemp's 0600 would hide the file from the group
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def write_text(path: str | os.PathLike, text: str) -> None:
    with atomic_path(path) as tmp:
        tmp.write_text(text)


def write_csv(path: str | os.PathLike, fields: Sequence[str], rows: Iterable[Mapping[str, Any]]) -> None:
    """Rewrite a CSV file of these rows (keys beyond `fields` are left out), atomically: a kill mid-write
    never truncates it."""
    import csv

    with atomic_path(path) as tmp, open(tmp, "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=list(fields), extrasaction="ignore")
        writer.writeheader()
        writer.writerows(rows)


def save_arrays(path: str | os.PathLike, **arrays: Any) -> None:
    """A compressed .npz of named arrays, written atomically (a run's drawn training data, its splits)."""
    import numpy as np  # (here: importing this module stays cheap)

    with atomic_path(path) as tmp, open(tmp, "wb") as f:
        np.savez_compressed(f, **arrays)


def load_arrays(path: str | os.PathLike) -> dict[str, np.ndarray] | None:
    """The arrays save_arrays wrote, or None when the file is missing or unreadable (draw them again)."""
    import numpy as np

    try:
        with np.load(path) as f:
            return {k: f[k] for k in f.files}
    except (OSError, ValueError, EOFError):
        return None
