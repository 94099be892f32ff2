"""A real `digitlab serve` process on a free port of 127.0.0.1, for the service and page tests."""

import contextlib
from pathlib import Path

from digitlab.serve.process import ServerProcess


@contextlib.contextmanager
def running_server(folder: Path, *args: str, cache: Path, env: dict | None = None):
    """`digitlab serve *args` with its log in folder/serve.log and its ONNX exports in `cache`; yields its URL
    and stops it at the end."""
    with ServerProcess(*args, log=folder / "serve.log", env={"DIGITLAB_CACHE": str(cache), **(env or {})}) as url:
        yield url
