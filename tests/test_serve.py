"""The web service: /v1/predict and /v1/read answer real digit images through the bundled models, every bad input
gets a JSON 4xx with a clear message and the server goes on serving, API keys guard /v1/ and never reach the
log, and `digitlab serve` runs as a real process that a plain HTTP client reaches."""

import base64
import io
import json
import zlib
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from serve_helpers import running_server

pytest.importorskip("fastapi")
pytest.importorskip("multipart")
from fastapi.testclient import TestClient  # noqa: E402

from digitlab.data import load_dataset  # noqa: E402
from digitlab.serve import ServeConfig, create_app  # noqa: E402

SAMPLES = Path(__file__).parent.parent / "samples"


def png(array: np.ndarray) -> bytes:
    buffer = io.BytesIO()
    Image.fromarray(array).save(buffer, format="PNG")
    return buffer.getvalue()


@pytest.fixture(scope="module")
def client(serve_cache):
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("DIGITLAB_CACHE", str(serve_cache))  # the ONNX exports, not the user's
        with TestClient(create_app(ServeConfig(max_bytes=2_000_000, max_pixels=4_000_000))) as c:
            yield c


@pytest.fixture(scope="module")
def mnist_digits(shared_data_dir):
    """Real MNIST test digits, dark on white and 4x larger, as a user's scan of one digit would be."""
    test = load_dataset("mnist", "test", data_dir=shared_data_dir)
    images = [np.kron(255 - test.images[i].numpy(), np.ones((4, 4), np.uint8)) for i in range(40)]
    return images, [str(int(test.labels[i])) for i in range(40)]


def test_predict_labels_real_digits_sent_either_way(client, mnist_digits):
    images, labels = mnist_digits
    got = []
    for k, (image, label) in enumerate(zip(images, labels)):
        data = png(image)
        if k % 2:  # the multipart field
            r = client.post("/v1/predict", files={"image": ("digit.png", data, "image/png")})
        else:  # the raw body with its content type
            r = client.post("/v1/predict?script=mnist", content=data, headers={"content-type": "image/png"})
        assert r.status_code == 200, r.text
        body = r.json()
        assert body["script"] == "mnist" and body["note"] is None
        assert set(body["probabilities"]) == set("0123456789")
        assert sum(body["probabilities"].values()) == pytest.approx(1.0, abs=1e-4)
        assert body["confidence"] == pytest.approx(body["probabilities"][body["best"]], abs=1e-5)
        got.append(body["label"])
    assert sum(g == t for g, t in zip(got, labels)) >= 39  # the bundled classifier: 99.6% on MNIST test


def test_read_returns_the_strings_boxes_and_the_annotated_image(client):
    truth = dict(line.strip().split(",") for line in (SAMPLES / "labels.csv").read_text().splitlines()[1:])
    for name in ("amount.png", "postcode.png"):
        data = (SAMPLES / name).read_bytes()
        r = client.post("/v1/read?annotate=true", files={"image": (name, data, "image/png"), "script": (None, "mnist")})
        assert r.status_code == 200, r.text
        body = r.json()
        assert body["text"] == truth[name] and 0 < body["confidence"] <= 1
        digits = [d for line in body["lines"] for d in line["digits"]]
        assert "".join(d["text"] for d in digits) == truth[name].replace(" ", "")
        width, height = Image.open(io.BytesIO(data)).size
        assert all(0 <= d["box"][0] and d["box"][0] + d["box"][2] <= width and d["box"][1] + d["box"][3] <= height
                   for d in digits)
        annotated = Image.open(io.BytesIO(base64.b64decode(body["annotated_png"])))
        assert annotated.size == (width, height) and annotated.mode == "RGB"
    r = client.post("/v1/read", content=(SAMPLES / "amount.png").read_bytes(), headers={"content-type": "image/png"})
    assert "annotated_png" not in r.json()


def test_a_string_sent_to_predict_is_pointed_to_read(client):
    r = client.post("/v1/predict", content=(SAMPLES / "amount.png").read_bytes(), headers={"content-type": "image/png"})
    assert r.status_code == 200 and r.json()["label"] is None
    assert r.json()["note"] == "holds 6 digits: use /v1/read"


def test_models_health_and_docs(client):
    from digitlab.pretrained import names

    health = client.get("/healthz").json()  # every bundled set, the default one (what no ?script= gets) first
    assert health["status"] == "ok" and health["scripts"][0] == "mnist" and sorted(health["scripts"]) == names()
    models = {m["script"]: m for m in client.get("/v1/models").json()["models"]}
    assert sorted(models) == names()
    model = models["mnist"]
    assert model["source"] == "bundled" and model["dataset"] == "mnist" and model["classes"] == list("0123456789")
    assert model["test_accuracy"] > 0.99 and model["verifier"] and model["line_reader"]
    spec = client.get("/openapi.json").json()
    assert {"/v1/predict", "/v1/read", "/v1/models", "/healthz"} <= set(spec["paths"])
    assert "multipart/form-data" in spec["paths"]["/v1/predict"]["post"]["requestBody"]["content"]
    assert client.get("/docs").status_code == 200


def bomb_png() -> bytes:
    """A valid PNG header that declares 100,000 x 100,000 pixels (10 gigapixels), with a tiny body."""
    def chunk(kind: bytes, data: bytes) -> bytes:
        return len(data).to_bytes(4, "big") + kind + data + zlib.crc32(kind + data).to_bytes(4, "big")

    header = (100_000).to_bytes(4, "big") * 2 + bytes([8, 0, 0, 0, 0])
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", zlib.compress(b"\0" * 1000)) + \
        chunk(b"IEND", b"")


def deflate_bomb_png() -> bytes:
    """A real 5,000 x 5,000 PNG (25 megapixels, over the 4 MP limit of these tests) that compresses to ~25 kB."""
    buffer = io.BytesIO()
    Image.new("L", (5000, 5000), 255).save(buffer, format="PNG", optimize=True)
    return buffer.getvalue()


def bad_requests(good: bytes) -> list[tuple[str, dict, int, str]]:
    """(what, request keyword arguments, status, part of the message) for each kind of bad input."""
    return [
        ("non-image bytes", {"content": b"GIF89a? no, just text", "headers": {"content-type": "image/png"}}, 422,
         "not an image file"),
        ("truncated PNG", {"content": good[: len(good) // 2], "headers": {"content-type": "image/png"}}, 422,
         "truncated or corrupt image"),
        ("0 bytes", {"content": b"", "headers": {"content-type": "image/png"}}, 400, "empty (0 bytes)"),
        ("a body over the limit", {"content": b"\0" * 2_500_000, "headers": {"content-type": "image/png"}}, 413,
         "over the limit of 2,000,000 bytes"),
        ("a decompression bomb", {"content": deflate_bomb_png(), "headers": {"content-type": "image/png"}}, 422,
         "25.0 megapixels is over the limit of 4"),
        ("a huge-dimension header", {"content": bomb_png(), "headers": {"content-type": "image/png"}}, 422,
         "is over the limit of 4"),
        ("a wrong content type", {"content": good, "headers": {"content-type": "text/plain"}}, 415,
         "content type 'text/plain'"),
        ("no content type", {"content": good, "headers": {"content-type": ""}}, 415, "content type 'missing'"),
        ("a missing field", {"files": {"picture": ("d.png", good, "image/png")}}, 422,
         "multipart field 'image'"),
        ("an unknown script", {"content": good, "headers": {"content-type": "image/png"}, "params": {"script": "x"}},
         404, "no model for script 'x'; served: mnist"),
    ]


def test_every_bad_input_gets_a_json_4xx_and_the_server_keeps_serving(client, mnist_digits):
    good = png(mnist_digits[0][0])
    for path in ("/v1/predict", "/v1/read"):
        for what, kwargs, status, message in bad_requests(good):
            r = client.post(path, **kwargs)
            assert r.status_code == status, (path, what, r.text)
            assert message in r.json()["error"], (path, what, r.json())
        r = client.post(path, content=good, headers={"content-type": "image/png"})
        assert r.status_code == 200 and (r.json().get("label") or r.json().get("text")) == mnist_digits[1][0]


def test_api_keys_guard_the_api_and_stay_out_of_the_log(serve_cache, monkeypatch, caplog):
    monkeypatch.setenv("DIGITLAB_CACHE", str(serve_cache))
    secret = "k-" + "7" * 30
    good = (SAMPLES / "digit.png").read_bytes()
    with TestClient(create_app(ServeConfig(api_keys=(secret, "second-key")))) as c, caplog.at_level("DEBUG"):
        post = {"content": good, "headers": {"content-type": "image/png"}}
        for headers in ({}, {"x-api-key": "wrong"}, {"authorization": f"Basic {secret}"}):
            r = c.post("/v1/predict", content=good, headers={"content-type": "image/png", **headers})
            assert r.status_code == 401 and "API key" in r.json()["error"]
        assert c.get("/v1/models").status_code == 401
        assert c.post("/v1/predict", **post | {"headers": {**post["headers"], "x-api-key": secret}}).status_code == 200
        assert c.post("/v1/predict", **post | {"headers": {**post["headers"],
                                                           "authorization": "Bearer second-key"}}).status_code == 200
        assert c.get("/healthz").status_code == 200  # liveness and the docs stay open
    assert secret not in caplog.text and "second-key" not in caplog.text


def test_digitlab_serve_runs_as_a_process_and_survives_bad_requests(tmp_path, serve_cache, mnist_digits):
    import httpx

    args = ("--max-bytes", "2000000", "--max-pixels", "4000000")
    with running_server(tmp_path, *args, cache=serve_cache, env={"DIGITLAB_API_KEYS": "serve-test-key"}) as url:
        key = {"x-api-key": "serve-test-key"}
        good = png(mnist_digits[0][0])
        with httpx.Client(base_url=url, headers=key, timeout=30) as http:
            for what, kwargs, status, message in bad_requests(good):
                kwargs = {**kwargs, "headers": {**kwargs.get("headers", {}), **key}}
                r = http.post("/v1/predict", **kwargs)
                assert r.status_code == status and message in r.json()["error"], (what, r.text)
            with httpx.Client(base_url=url, headers=key, timeout=30) as fresh:  # a 100 MB body, declared
                r = fresh.post("/v1/predict", content=b"\0" * 100_000_000, headers={"content-type": "image/png"})
                assert r.status_code == 413
            r = http.post("/v1/predict", files={"image": ("d.png", good, "image/png")})
            assert r.status_code == 200 and r.json()["label"] == mnist_digits[1][0]
        assert httpx.post(f"{url}/v1/predict", content=good, headers={"content-type": "image/png"}).status_code == 401
    printed = (tmp_path / "serve.log").read_text()
    assert "serving mnist" in printed and f"on {url} " in printed and "API key required" in printed
    assert "POST /v1/predict" in printed and "serve-test-key" not in printed


def test_bad_settings_fail_in_one_line(capsys):
    from digitlab.cli import main

    for argv, message in [(["--model", "tibetan"], "--model takes SCRIPT=RUN"),
                          (["--workers", "0"], "--workers must be >= 1"),
                          (["--max-bytes", "0"], "max_bytes, max_pixels, threads and concurrency must be >= 1"),
                          (["--model", "x=/no/such/run"], "/no/such/run")]:
        assert main(["serve", *argv]) == 2
        err = capsys.readouterr().err
        assert message in err and err.count("\n") == 1 and "Traceback" not in err, err
    assert json.loads(ServeConfig(api_keys=("a",)).to_env())["api_keys"] == ["a"]


def test_read_in_field_mode_with_the_bundled_field_readers(client, shared_data_dir, digits_run, tmp_path,
                                                           monkeypatch):
    from digitlab.read import fields, synth

    sample = fields.make_field(*synth.load_test_digits(shared_data_dir), fields.CELL, np.random.default_rng(3),
                               only={"rules", "fullstop"})
    r = client.post("/v1/read?field=true", files={"image": ("cell.png", png(sample.image), "image/png")})
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["text"] == "".join(c for c in body["raw"] if c.isdigit()) and 0 <= body["confidence"] <= 1
    models = {m["script"]: m for m in client.get("/v1/models").json()["models"]}
    assert all(m["field_reader"] for m in models.values())  # each bundled script has its own
    r = client.post("/v1/read?field=true&script=tibetan", content=png(sample.image),
                    headers={"content-type": "image/png"})
    assert r.status_code == 200 and 0 <= r.json()["confidence"] <= 1, r.text
    monkeypatch.setenv("DIGITLAB_CACHE", str(tmp_path))
    with TestClient(create_app(ServeConfig(models={"plain": str(digits_run)}))) as plain:  # a run without one
        r = plain.post("/v1/read?field=true", content=png(sample.image), headers={"content-type": "image/png"})
        assert r.status_code == 404 and "no field reader" in r.json()["error"]
