"""Reader for the IDX format of MNIST-style datasets, strict about every byte.

Layout: 2 zero bytes, a dtype code, the number of dimensions, one big-endian uint32 per
dimension, then exactly prod(dims) items, big-endian. Files may be gzip-compressed.
"""

from __future__ import annotations

import gzip
import struct
import zlib
from os import PathLike
from pathlib import Path

import numpy as np

from digitlab.errors import DatasetError

# IDX dtype code -> numpy dtype (big-endian, as stored)
_DTYPES: dict[int, np.dtype] = {
    0x08: np.dtype(np.uint8),
    0x09: np.dtype(np.int8),
    0x0B: np.dtype(">i2"),
    0x0C: np.dtype(">i4"),
    0x0D: np.dtype(">f4"),
    0x0E: np.dtype(">f8"),
}
_GZIP_MAGIC = b"\x1f\x8b"


class IdxError(DatasetError):
    """An IDX file is truncated, corrupt or not the kind of IDX file that was expected."""


def read_idx(path: str | PathLike, ndim: int | None = None) -> np.ndarray:
    """Read an IDX file (raw or .gz) into a native-endian, writeable array.

    ``ndim`` (3 for images, 1 for labels) rejects a file of the wrong kind, such as a
    label file given where images are expected.
    """
    path = Path(path)
    try:
        raw = path.read_bytes()
    except OSError as e:
        raise IdxError(f"{path}: cannot read ({e.strerror or e})") from None
    if raw[:2] == _GZIP_MAGIC:
        try:
            raw = gzip.decompress(raw)
        except EOFError:
            raise IdxError(f"{path}: truncated gzip stream (the download is incomplete)") from None
        except (gzip.BadGzipFile, zlib.error, OSError) as e:
            raise IdxError(f"{path}: corrupt gzip data ({e})") from None
    return _parse(raw, path, ndim)


def _parse(raw: bytes, path: Path, ndim: int | None) -> np.ndarray:
    if len(raw) < 4:
        raise IdxError(f"{path}: {len(raw)} bytes is too short for an IDX header")
    zero, code, dims_n = struct.unpack(">HBB", raw[:4])
    if zero != 0 or code not in _DTYPES or dims_n == 0:
        raise IdxError(f"{path}: bad IDX magic 0x{raw[:4].hex()} (expected 0x0000 + dtype code + ndim)")
    if ndim is not None and dims_n != ndim:
        raise IdxError(f"{path}: IDX file has {dims_n} dimension(s), expected {ndim}"
                       f" ({'images' if ndim == 3 else 'labels' if ndim == 1 else 'data'})")
    header = 4 + 4 * dims_n
    if len(raw) < header:
        raise IdxError(f"{path}: truncated IDX header ({len(raw)} of {header} bytes)")
    dims = struct.unpack(f">{dims_n}I", raw[4:header])
    dtype = _DTYPES[code]
    expected = int(np.prod(dims, dtype=np.int64)) * dtype.itemsize
    got = len(raw) - header
    if got != expected:
        what = "truncated" if got < expected else "has extra trailing bytes"
        raise IdxError(f"{path}: IDX data {what}: {got} bytes for shape {tuple(dims)}, expected {expected}")
    # bytearray makes the array writeable, so torch.from_numpy needs no copy and warns about nothing
    arr = np.frombuffer(bytearray(memoryview(raw)[header:]), dtype=dtype).reshape(dims)
    return arr if dtype.isnative or dtype.itemsize == 1 else arr.astype(dtype.newbyteorder("="))
