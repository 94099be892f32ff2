"""Fetch dataset files from mirrors: retries, streaming to a temp file, checksum, atomic rename.

A failed, partial or unverified download never leaves anything at the final path, nor a
temp file beside it.
"""

from __future__ import annotations

import hashlib
import http.client
import os
import time
import urllib.error
import urllib.request
from collections.abc import Sequence
from pathlib import Path

from tqdm import tqdm

from digitlab.atomic import atomic_path
from digitlab.data.registry import RemoteFile
from digitlab.errors import DatasetError

RETRIES = 3  # attempts per mirror for transient failures (5xx, resets, short reads)
BACKOFF_S = 0.5  # sleep before retry k is BACKOFF_S * 2**(k-1)
TIMEOUT_S = 30.0  # per socket operation
CHUNK = 1 << 20  # bytes


class _Transient(Exception):
    """Worth retrying on the same mirror."""


class _Permanent(Exception):
    """Move on to the next mirror."""


def mirror_list(mirrors: Sequence[str]) -> list[str]:
    """$DIGITLAB_MIRROR (a base URL, e.g. a local copy) first, then the spec's mirrors."""
    env = os.environ.get("DIGITLAB_MIRROR", "").strip()
    return ([env] if env else []) + [m for m in mirrors if m != env]


def file_digest(path: Path, algorithm: str = "sha256") -> str:
    h = hashlib.new(algorithm)
    with open(path, "rb") as f:
        while block := f.read(CHUNK):
            h.update(block)
    return h.hexdigest()


def fetch(file: RemoteFile, folder: Path, mirrors: Sequence[str], progress: bool = False) -> Path:
    """Download ``file`` into ``folder`` from the first mirror that serves it intact."""
    final = folder / file.name
    if not mirrors:
        raise DatasetError(f"{final}: no mirror to download {file.name} from")
    if file.sha256 is None and file.md5 is None:
        raise DatasetError(f"{final}: no checksum is known for {file.name}, so it cannot be downloaded safely")
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise DatasetError(f"{folder}: cannot create the dataset folder ({e.strerror or e})") from None
    errors = []
    for base in mirrors:
        url = base.rstrip("/") + "/" + file.name
        for attempt in range(1, RETRIES + 1):
            try:
                _download_verified(url, file, final, progress)
                return final
            except _Permanent as e:
                errors.append(f"{url}: {e}")
                break
            except _Transient as e:
                if attempt == RETRIES:
                    errors.append(f"{url}: {e} (after {RETRIES} attempts)")
                else:
                    time.sleep(BACKOFF_S * 2 ** (attempt - 1))
    raise DatasetError(f"{final}: download failed from every mirror: " + "; ".join(errors))


def _download_verified(url: str, file: RemoteFile, final: Path, progress: bool) -> None:
    """Stream `url` into a temporary file beside `final`; only a verified download is renamed to `final`."""
    try:
        with atomic_path(final) as tmp:
            _fetch_checked(url, file, tmp, progress)
    except OSError as e:
        raise DatasetError(f"{final.parent}: cannot write there ({e.strerror or e})") from None


def _fetch_checked(url: str, file: RemoteFile, dest: Path, progress: bool) -> None:
    sha, md5, n = hashlib.sha256(), hashlib.md5(), 0
    request = urllib.request.Request(url, headers={"User-Agent": "digitlab"})
    try:
        with open(dest, "wb") as out, urllib.request.urlopen(request, timeout=TIMEOUT_S) as resp:
            length = resp.headers.get("Content-Length")
            total = int(length) if length and length.isdigit() else None
            with tqdm(total=total, unit="B", unit_scale=True, desc=file.name, disable=not progress) as bar:
                while chunk := resp.read(CHUNK):
                    out.write(chunk)
                    sha.update(chunk)
                    md5.update(chunk)
                    n += len(chunk)
                    bar.update(len(chunk))
    except urllib.error.HTTPError as e:
        if 500 <= e.code or e.code in (408, 429):
            raise _Transient(f"HTTP {e.code} {e.reason}") from None
        raise _Permanent(f"HTTP {e.code} {e.reason}") from None
    except (urllib.error.URLError, http.client.HTTPException, OSError) as e:
        reason = getattr(e, "reason", None) or e
        raise _Transient(f"{type(e).__name__}: {reason}".replace("\n", " ")) from None
    if total is not None and n != total:
        raise _Transient(f"short read: {n} of {total} bytes")
    if file.sha256 is not None and sha.hexdigest() != file.sha256:
        raise _Permanent(f"sha256 mismatch ({n} bytes): got {sha.hexdigest()}, expected {file.sha256}")
    if file.sha256 is None and md5.hexdigest() != file.md5:
        raise _Permanent(f"md5 mismatch ({n} bytes): got {md5.hexdigest()}, expected {file.md5}")
