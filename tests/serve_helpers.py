"""A real `digitlab serve` process on a free port of 127.0.0.1, for the service, page and load tests."""

import contextlib
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@contextlib.contextmanager
def running_server(folder: Path, *args: str, env: dict | None = None):
    """Start `digitlab serve --port P *args` (its log in folder/serve.log, its ONNX cache in folder/cache), wait
    until /healthz answers, yield its URL; stop it (and its workers) at the end."""
    import httpx

    port = free_port()
    environ = {**os.environ, "DIGITLAB_CACHE": str(folder / "cache"), **(env or {})}
    log = open(folder / "serve.log", "w")
    proc = subprocess.Popen([sys.executable, "-m", "digitlab", "serve", "--port", str(port), *args], env=environ,
                            stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 120
        while True:
            try:
                if httpx.get(f"{url}/healthz", timeout=1).status_code == 200:
                    break
            except httpx.TransportError:
                pass
            if proc.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"digitlab serve did not start:\n{(folder / 'serve.log').read_text()}")
            time.sleep(0.3)
        yield url
    finally:
        os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
        log.close()
