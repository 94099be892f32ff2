"""`digitlab serve` as a child process, for scripts, tests and benchmarks that need a real server.

    with ServerProcess("--workers", "2", log="serve.log") as url:   # http://127.0.0.1:<free port>
        httpx.post(f"{url}/v1/predict", ...)
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

from digitlab.errors import DigitlabError


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class ServerProcess:
    """Start `digitlab serve --port P *args` (its output to `log`, the environment `env` added) on entry and
    return its URL once /healthz answers; stop it and its workers (SIGTERM to its process group, SIGKILL after
    30 s) on exit. A server that exits or is not up within `timeout` s is a DigitlabError with its log."""

    def __init__(self, *args: str, log: str | Path, env: dict[str, str] | None = None, timeout: float = 120):
        self.args, self.log, self.env, self.timeout = args, Path(log), env or {}, timeout

    def __enter__(self) -> str:
        port = free_port()
        self.out = open(self.log, "w")
        self.proc = subprocess.Popen([sys.executable, "-m", "digitlab", "serve", "--port", str(port), *self.args],
                                     env={**os.environ, **self.env}, stdout=self.out, stderr=subprocess.STDOUT,
                                     start_new_session=True)
        url = f"http://127.0.0.1:{port}"
        deadline = time.monotonic() + self.timeout
        while not answers(f"{url}/healthz"):
            if self.proc.poll() is not None or time.monotonic() > deadline:
                self.__exit__()
                raise DigitlabError(f"digitlab serve did not start:\n{self.log.read_text()}")
            time.sleep(0.3)
        return url

    def __exit__(self, *exc) -> None:
        if self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGTERM)
            try:
                self.proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait()
        self.out.close()


def answers(url: str) -> bool:
    try:
        with urllib.request.urlopen(url, timeout=1) as r:
            return r.status == 200
    except (urllib.error.URLError, OSError):
        return False
