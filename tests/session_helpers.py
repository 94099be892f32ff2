"""What the test session's worker processes (pytest-xdist) share."""

from __future__ import annotations

import os
from pathlib import Path


def shared_folder(tmp_path_factory, name: str, make=None) -> Path:
    """A folder of the test session that every xdist worker shares (the workers' temporary folders have
    one parent): the first worker to ask fills it with make(folder), under a lock; the others wait for it
    and reuse it. Without xdist, a folder of this process."""
    from filelock import FileLock

    base = tmp_path_factory.getbasetemp()
    root = base.parent if os.environ.get("PYTEST_XDIST_WORKER") else base
    folder, done = root / name, root / f"{name}.done"
    with FileLock(str(root / f"{name}.lock")):
        if not done.exists():
            folder.mkdir(parents=True, exist_ok=True)
            if make is not None:
                make(folder)
            done.touch()
    return folder
