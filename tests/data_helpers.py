"""Helpers for the digitlab.data tests: IDX writers and a local HTTP server that can misbehave."""

from __future__ import annotations

import gzip
import struct
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import numpy as np
import pytest

IDX_CODES = {np.dtype(np.uint8): 0x08, np.dtype(">i4"): 0x0C, np.dtype(">f4"): 0x0D}


def idx_bytes(a: np.ndarray) -> bytes:
    """Serialise an array as IDX (big-endian), the format read_idx parses."""
    a = np.asarray(a)
    stored = a.astype(a.dtype.newbyteorder(">")) if a.dtype.itemsize > 1 else a
    header = struct.pack(">HBB", 0, IDX_CODES[stored.dtype], a.ndim) + struct.pack(f">{a.ndim}I", *a.shape)
    return header + stored.tobytes()


def write_idx(path: Path, a: np.ndarray, compress: bool = True) -> Path:
    data = idx_bytes(a)
    path.write_bytes(gzip.compress(data, mtime=0) if compress else data)
    return path


class MirrorServer:
    """Serves ``files`` (url path -> bytes) on 127.0.0.1; behaviour is changed by the test between requests.

    fail_first: answer this many requests with HTTP 500 before serving.
    truncate_to: send a full Content-Length but only this many bytes, then close (a dropped connection).
    """

    def __init__(self):
        self.files: dict[str, bytes] = {}
        self.fail_first = 0
        self.truncate_to: int | None = None
        self.requests: list[str] = []
        server = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self):
                server.requests.append(self.path)
                if server.fail_first > 0:
                    server.fail_first -= 1
                    self.send_error(500, "try again")
                    return
                body = server.files.get(self.path)
                if body is None:
                    self.send_error(404, "no such file")
                    return
                self.send_response(200)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body if server.truncate_to is None else body[: server.truncate_to])
                self.close_connection = True

            def log_message(self, *args):  # keep test output quiet
                pass

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}"
        self.thread = threading.Thread(target=self.httpd.serve_forever, args=(0.02,), daemon=True)

    def __enter__(self):
        self.thread.start()
        return self

    def __exit__(self, *exc):
        self.httpd.shutdown()
        self.httpd.server_close()


def shifted_diff(a: np.ndarray, b: np.ndarray) -> float:
    """Mean absolute difference, allowing a one-pixel shift (centring rounds to whole pixels)."""
    a, b = a.astype(int), np.pad(b.astype(int), 1)
    return min(np.abs(a - b[1 + dy : 29 + dy, 1 + dx : 29 + dx]).mean() for dy in (-1, 0, 1) for dx in (-1, 0, 1))


@pytest.fixture
def mirror_server():
    with MirrorServer() as server:
        yield server


@pytest.fixture
def digit_cache(tmp_path, monkeypatch) -> Path:
    """An empty decode cache ($DIGITLAB_CACHE), so tests never touch the user's cache."""
    cache = tmp_path / "cache"
    monkeypatch.setenv("DIGITLAB_CACHE", str(cache))
    return cache
