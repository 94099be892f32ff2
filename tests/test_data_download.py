"""Downloads against a local http.server: checksums, retries, mirror fallback, nothing left behind."""

import gzip
import hashlib

import numpy as np
import pytest
import torch
from data_helpers import MirrorServer, idx_bytes, mirror_server  # noqa: F401 - fixture

from digitlab.data import download, get_spec, load_dataset
from digitlab.data.registry import RemoteFile
from digitlab.errors import DatasetError

NAME = "tiny-images-idx3-ubyte.gz"


@pytest.fixture(autouse=True)
def fast_retries(monkeypatch):
    monkeypatch.setattr(download, "BACKOFF_S", 0.01)
    monkeypatch.setattr(download, "TIMEOUT_S", 5.0)


@pytest.fixture
def payload() -> bytes:
    images = np.random.default_rng(0).integers(0, 256, (50, 28, 28), dtype=np.uint8)
    return gzip.compress(idx_bytes(images), mtime=0)


def remote(payload: bytes, sha256: str | None = "auto", md5: str | None = None) -> RemoteFile:
    return RemoteFile(NAME, hashlib.sha256(payload).hexdigest() if sha256 == "auto" else sha256, md5)


def only_file(folder, name=NAME) -> None:
    assert sorted(p.name for p in folder.iterdir()) == [name]


def test_download_verified(mirror_server, payload, tmp_path):
    mirror_server.files[f"/m/{NAME}"] = payload
    path = download.fetch(remote(payload), tmp_path / "ds", [mirror_server.url + "/m/"])
    assert path == tmp_path / "ds" / NAME and path.read_bytes() == payload
    only_file(tmp_path / "ds")


def test_wrong_checksum_leaves_nothing(mirror_server, payload, tmp_path):
    mirror_server.files[f"/m/{NAME}"] = payload
    with pytest.raises(DatasetError) as e:
        download.fetch(remote(payload, sha256="0" * 64), tmp_path, [mirror_server.url + "/m"])
    msg = str(e.value)
    assert "sha256 mismatch" in msg and NAME in msg and "\n" not in msg
    assert list(tmp_path.iterdir()) == []
    assert len(mirror_server.requests) == 1  # a bad checksum is not retried on the same mirror


def test_md5_only(mirror_server, payload, tmp_path):
    mirror_server.files[f"/{NAME}"] = payload
    good = remote(payload, sha256=None, md5=hashlib.md5(payload).hexdigest())
    download.fetch(good, tmp_path, [mirror_server.url])
    only_file(tmp_path)
    (tmp_path / NAME).unlink()
    with pytest.raises(DatasetError, match="md5 mismatch"):
        download.fetch(remote(payload, sha256=None, md5="f" * 32), tmp_path, [mirror_server.url])
    assert list(tmp_path.iterdir()) == []


def test_server_errors_are_retried(mirror_server, payload, tmp_path):
    mirror_server.files[f"/{NAME}"] = payload
    mirror_server.fail_first = 2
    download.fetch(remote(payload), tmp_path, [mirror_server.url])
    assert len(mirror_server.requests) == 3
    only_file(tmp_path)


def test_persistent_errors_give_up(mirror_server, payload, tmp_path):
    mirror_server.files[f"/{NAME}"] = payload
    mirror_server.fail_first = 100
    with pytest.raises(DatasetError) as e:
        download.fetch(remote(payload), tmp_path, [mirror_server.url])
    assert "HTTP 500" in str(e.value) and f"after {download.RETRIES} attempts" in str(e.value)
    assert len(mirror_server.requests) == download.RETRIES
    assert list(tmp_path.iterdir()) == []


def test_dropped_connection_leaves_nothing(mirror_server, payload, tmp_path):
    mirror_server.files[f"/{NAME}"] = payload
    mirror_server.truncate_to = len(payload) // 3
    with pytest.raises(DatasetError) as e:
        download.fetch(remote(payload), tmp_path, [mirror_server.url])
    assert NAME in str(e.value) and "\n" not in str(e.value)
    assert len(mirror_server.requests) == download.RETRIES
    assert list(tmp_path.iterdir()) == []


def test_truncated_file_fails_checksum(mirror_server, payload, tmp_path):
    mirror_server.files[f"/{NAME}"] = payload[: len(payload) // 2]  # consistent length, wrong bytes
    with pytest.raises(DatasetError, match="sha256 mismatch"):
        download.fetch(remote(payload), tmp_path, [mirror_server.url])
    assert list(tmp_path.iterdir()) == []


def test_falls_back_to_next_mirror(mirror_server, payload, tmp_path):
    mirror_server.files[f"/good/{NAME}"] = payload
    download.fetch(remote(payload), tmp_path, [mirror_server.url + "/missing/", mirror_server.url + "/good/"])
    assert mirror_server.requests == [f"/missing/{NAME}", f"/good/{NAME}"]  # a 404 is not retried
    only_file(tmp_path)


def test_unreachable_mirror(payload, tmp_path):
    with MirrorServer() as server:
        url = server.url  # a port that is closed once the server is gone
    with pytest.raises(DatasetError) as e:
        download.fetch(remote(payload), tmp_path, [url])
    assert url in str(e.value)
    assert list(tmp_path.iterdir()) == []


def test_load_dataset_downloads_from_env_mirror(mirror_server, shared_data_dir, tmp_path, monkeypatch):
    """End to end with the real MNIST test files, served from the shared folder over 127.0.0.1."""
    for f in get_spec("mnist").files["test"]:
        mirror_server.files[f"/mnist/{f.name}"] = (shared_data_dir / "mnist" / f.name).read_bytes()
    monkeypatch.setenv("DIGITLAB_MIRROR", mirror_server.url + "/mnist/")
    with pytest.raises(DatasetError, match="download=True"):
        load_dataset("mnist", "test", tmp_path)
    assert mirror_server.requests == []  # nothing is fetched unless asked
    ds = load_dataset("mnist", "test", tmp_path, download=True)
    assert len(ds) == 10000 and torch.bincount(ds.labels)[0] == 980
    assert sorted(p.name for p in (tmp_path / "mnist").iterdir()) == ["t10k-images-idx3-ubyte.gz",
                                                                      "t10k-labels-idx1-ubyte.gz"]
    load_dataset("mnist", "test", tmp_path, download=True)
    assert len(mirror_server.requests) == 2  # files already there are not fetched again
