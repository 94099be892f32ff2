"""The HTTP service: `create_app(ServeConfig) -> FastAPI`, run by `digitlab serve` under uvicorn.

    POST /v1/predict?script=mnist   one digit image -> label, confidence, probabilities
    POST /v1/read?script=mnist      an image of digit strings -> strings, boxes, confidences (&annotate=true:
                                    the annotated image too, as a base64 PNG)
    GET  /v1/models                 the scripts served and their models
    GET  /healthz                   liveness
    GET  /                          the page: draw a digit, or drop, paste or choose a photo
    GET  /docs, /openapi.json       FastAPI's own

The image is the multipart field `image`, or the whole body with an image content type. Each worker loads
its models once, at start-up: the classifiers as `digitlab.engine.Recognizer`s (ONNX Runtime when installed),
the reader's verifier and line reader beside them; predictions go through `digitlab.data.read_digit` and
readings through `digitlab.read.read`, the pipelines of `digitlab predict` and `digitlab read`. Model calls
run in the thread pool, off the event loop, each under the request timeout. Every error is JSON
{"error": message} with its 4xx/5xx code; a body over the limit is refused from its Content-Length (or once
that many bytes arrived) without being read.
"""

from __future__ import annotations

import asyncio
import base64
import functools
import gc
import hmac
import io
import json
import logging
import sys
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import anyio
from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse
from starlette.concurrency import run_in_threadpool

from digitlab.errors import DigitlabError
from digitlab.serve.config import ServeConfig

STATIC = Path(__file__).parent / "static"  # the page: index.html, app.js, style.css (no CDN: works offline)
IMAGE_TYPES = ("image/png", "image/jpeg", "image/bmp", "image/tiff", "image/webp", "image/gif", "image/x-ms-bmp")

log = logging.getLogger("digitlab.serve")


class ApiError(Exception):
    def __init__(self, status: int, message: str):
        super().__init__(message)
        self.status, self.message = status, message


@dataclass
class Script:
    """One served script: its classifier on the engine and the reader's helpers."""
    name: str
    source: str  # where the model came from, for /v1/models
    recognizer: Any  # digitlab.engine.Recognizer
    verifier: Any  # Checkpoint or None
    line_reader: Any  # Checkpoint or None
    field_reader: Any = None  # Checkpoint or None: reads /v1/read?field=true

    def describe(self) -> dict[str, Any]:
        meta = self.recognizer.meta
        metrics = meta.get("metrics") or {}
        return {"script": self.name, "source": self.source, "model": meta.get("model"), "dataset": meta.get("dataset"),
                "classes": self.recognizer.classes, "test_accuracy": metrics.get("test_accuracy"),
                "backend": self.recognizer.backend, "verifier": self.verifier is not None,
                "line_reader": self.line_reader is not None, "field_reader": self.field_reader is not None}


def load_scripts(config: ServeConfig) -> dict[str, Script]:
    """The configured models (default: every bundled set), loaded and ready."""
    from digitlab import pretrained
    from digitlab.engine import as_recognizer
    from digitlab.read import fieldreader, linereader, verifier

    # every bundled set, the default one (MNIST) first: the first is what a request naming no script gets
    models = config.models or {name: None for name in sorted(pretrained.names(), key=lambda n: n != pretrained.DEFAULT)}
    if not models:
        raise DigitlabError("no models to serve: none is bundled and none was given (--model NAME=RUN)")
    scripts = {}
    for name, source in models.items():
        folder = str(pretrained.bundled(name)) if source is None else source
        recognizer = as_recognizer(folder, config.backend, config.threads)
        helpers = []
        for module, load in ((verifier, verifier.load_verifier), (linereader, linereader.load_line_reader),
                             (fieldreader, fieldreader.load_field_reader)):
            found = None if folder.endswith(".onnx") else module.beside(folder)
            helpers.append(load(found) if found else None)
        scripts[name] = Script(name, "bundled" if source is None else source, recognizer, *helpers)
    return scripts


def create_app(config: ServeConfig | None = None):
    """The FastAPI app serving `config`'s models (loaded when the app starts, once per worker)."""
    import digitlab

    config = config or ServeConfig()

    limiter = anyio.CapacityLimiter(config.concurrency)

    @asynccontextmanager
    async def lifespan(app):
        app.state.scripts = await run_in_threadpool(load_scripts, config)
        if config.tune_process:
            tune_process()
        log.info("serving %s", ", ".join(app.state.scripts))
        yield

    app = FastAPI(title="digitlab", version=digitlab.__version__, lifespan=lifespan,
                  description="Handwritten digit recognition: single digits and digit strings, several scripts.")

    @app.exception_handler(ApiError)
    async def api_error(request: Request, e: ApiError):
        return JSONResponse({"error": e.message}, status_code=e.status)

    async def compute(fn, *args):
        """fn(*args) in the thread pool, under the request timeout; bad input becomes a 4xx."""
        try:
            return await asyncio.wait_for(anyio.to_thread.run_sync(fn, *args, limiter=limiter), config.timeout)
        except TimeoutError:
            raise ApiError(504, f"the request took longer than {config.timeout:g} s") from None
        except DigitlabError as e:
            raise ApiError(422, str(e)) from None

    def script_of(request: Request, name: str | None) -> Script:
        scripts = request.app.state.scripts
        name = name or next(iter(scripts))
        if name not in scripts:
            raise ApiError(404, f"no model for script {name!r}; served: {', '.join(scripts)}")
        return scripts[name]

    from fastapi.responses import FileResponse
    from fastapi.staticfiles import StaticFiles

    app.mount("/static", StaticFiles(directory=STATIC), name="static")

    @app.get("/", include_in_schema=False)
    async def page() -> FileResponse:
        return FileResponse(STATIC / "index.html")

    @app.get("/healthz")
    async def healthz(request: Request) -> dict[str, Any]:
        return {"status": "ok", "scripts": list(request.app.state.scripts)}

    @app.get("/v1/models")
    async def models(request: Request) -> dict[str, Any]:
        return {"models": [s.describe() for s in request.app.state.scripts.values()]}

    # JSONResponse straight from the dict: FastAPI's validation and encoding of a returned dict cost more than
    # the model call (about 1 ms a request)
    @app.post("/v1/predict", openapi_extra=image_body(), response_class=JSONResponse)
    async def predict(request: Request, script: str | None = None) -> JSONResponse:
        """Classify one digit: label (null when the image holds several digits), calibrated confidence and
        probability of each class."""
        data, form_script = await image_bytes(request, config.max_bytes)
        chosen = script_of(request, script or form_script)
        return JSONResponse(await compute(predict_one, chosen, data, config))

    @app.post("/v1/read", openapi_extra=image_body(), response_class=JSONResponse)
    async def read(request: Request, script: str | None = None, annotate: bool = False,
                   field: bool = False) -> JSONResponse:
        """Read every digit string: text, confidence, lines with each digit's box and confidence; with
        annotate=true also the image with boxes and digits drawn, as a base64 PNG. field=true: the image is
        one number in its field (a cheque amount, a table cell), read whole by the script's field reader;
        `raw` is the number as written (separators and marks kept)."""
        data, form_script = await image_bytes(request, config.max_bytes)
        chosen = script_of(request, script or form_script)
        if field and chosen.field_reader is None:
            raise ApiError(404, f"script {chosen.name!r} has no field reader: read without field=true")
        return JSONResponse(await compute(read_one, chosen, data, config, annotate, field))

    return Guard(app, config.max_bytes, config.api_keys)


def tune_process() -> None:
    """Settings of a process that only serves (`digitlab serve` sets ServeConfig.tune_process; they are the
    process's, so an app made inside another program leaves them alone). One thread inside each model call
    (PyTorch, OpenCV): requests are computed in the limiter's threads, and nested pools under them only spin
    against each other (measured: half the CPU time went to the kernel). The GIL is handed over every
    millisecond instead of every 5, so the event loop is not kept waiting that long behind a model call. The
    loaded models' objects are frozen out of the garbage collector's generations, so its pauses stay short."""
    import cv2
    import torch

    torch.set_num_threads(1)
    cv2.setNumThreads(1)
    sys.setswitchinterval(0.001)
    gc.collect()
    gc.freeze()


def bearer(header: bytes) -> bytes | None:
    scheme, _, token = header.partition(b" ")
    return token.strip() if scheme.lower() == b"bearer" and token.strip() else None


async def image_bytes(request, limit: int) -> tuple[bytes, str | None]:
    """The uploaded image's bytes (multipart field `image`, or the body itself under an image content type)
    and a `script` form field if one came; a body over `limit` bytes is refused as it arrives."""
    kind = request.headers.get("content-type", "").split(";")[0].strip().lower()
    if kind != "multipart/form-data" and kind not in IMAGE_TYPES:
        raise ApiError(415, f"content type {kind or 'missing'!r}: send an image ({', '.join(IMAGE_TYPES[:5])}, ...) "
                            f"as the body or as the multipart field 'image'")
    chunks, seen = [], 0
    async for chunk in request.stream():
        seen += len(chunk)
        if seen > limit:
            raise ApiError(413, too_large(limit))
        chunks.append(chunk)
    data, script = b"".join(chunks), None
    if kind == "multipart/form-data":
        async def replay():
            return {"type": "http.request", "body": data, "more_body": False}

        try:
            form = await Request(request.scope, replay).form(max_files=2, max_fields=10)
        except Exception as e:  # noqa: BLE001 - the multipart parser's errors: all mean a malformed form
            raise ApiError(400, f"malformed multipart form ({type(e).__name__})") from None
        upload, script = form.get("image"), form.get("script")
        if upload is None or isinstance(upload, str):
            raise ApiError(422, "no image: send the image file as the multipart field 'image'")
        data = await upload.read()
        script = script if isinstance(script, str) and script else None
    if not data:
        raise ApiError(400, "the image is empty (0 bytes)")
    return data, script


def predict_one(script: Script, data: bytes, config: ServeConfig) -> dict[str, Any]:
    from digitlab.data.preprocess import read_digit
    from digitlab.read.image import open_image

    image, _ = open_image(data, read_config(config.max_pixels))
    x, digits = read_digit(image)
    p = script.recognizer.probabilities(x[None])[0]
    best = int(p.argmax())
    classes = script.recognizer.classes
    note = None
    if digits > 1:
        digits = len(reading_of(script, data, config).digits) or digits
        note = f"holds {digits} digits: use /v1/read" if digits > 1 else None
    return {"script": script.name, "label": None if note else classes[best], "best": classes[best],
            "confidence": float(p[best]), "probabilities": {c: round(float(q), 6) for c, q in zip(classes, p)},
            "note": note}


@functools.lru_cache(maxsize=4)
def read_config(max_pixels: int):
    """The reading settings of every request, made and checked once rather than per request."""
    from digitlab.read.config import ReadConfig

    return ReadConfig(max_pixels=max_pixels)


def reading_of(script: Script, data: bytes, config: ServeConfig):
    import warnings

    from digitlab.read import read

    with warnings.catch_warnings():  # the helpers' caveats are the operator's business, said at start-up
        warnings.simplefilter("ignore")
        return read(data, script.recognizer, read_config(config.max_pixels), script.verifier,
                    script.line_reader)


def read_one(script: Script, data: bytes, config: ServeConfig, annotate: bool, field: bool = False,
             ) -> dict[str, Any]:
    if field:
        from digitlab.read import read

        reading = read(data, config=read_config(config.max_pixels), field=True, field_reader=script.field_reader)
    else:
        reading = reading_of(script, data, config)
    out = {"script": script.name, **reading.to_dict()}
    out.pop("source", None)
    if annotate:
        from PIL import Image

        from digitlab.read.render import annotate as draw

        buffer = io.BytesIO()
        Image.fromarray(draw(reading, data)).save(buffer, format="PNG")
        out["annotated_png"] = base64.b64encode(buffer.getvalue()).decode()
    return out


def image_body() -> dict[str, Any]:
    """The OpenAPI description of the image upload (the endpoints read the request themselves)."""
    binary = {"type": "string", "format": "binary"}
    return {"requestBody": {"required": True, "content": {
        "multipart/form-data": {"schema": {"type": "object", "required": ["image"], "properties": {
            "image": binary, "script": {"type": "string"}}}},
        **{kind: {"schema": binary} for kind in IMAGE_TYPES[:5]}}}}


class Guard:
    """ASGI middleware in front of the app (plain ASGI: Starlette's BaseHTTPMiddleware costs about a millisecond
    a request): with API keys, a request to /v1/ without a valid one gets 401 (the page, docs and /healthz stay
    open); a request whose Content-Length is over max_bytes gets 413 before any of its body is read (a body
    without a length is counted as it arrives, by image_bytes)."""

    def __init__(self, app, max_bytes: int, api_keys: tuple[str, ...] = ()):
        self.app, self.max_bytes, self.keys = app, max_bytes, [k.encode() for k in api_keys]

    def __getattr__(self, name: str):  # the FastAPI app's own attributes (state, routes, ...) stay reachable
        return getattr(self.app, name)

    async def __call__(self, scope, receive, send):
        if scope["type"] == "http":
            headers = dict(scope.get("headers") or [])
            if self.keys and scope["path"].startswith("/v1/"):
                given = headers.get(b"x-api-key") or bearer(headers.get(b"authorization", b""))
                if not given or not any(hmac.compare_digest(given, k) for k in self.keys):
                    return await answer(send, 401, "a valid API key is needed: send it as the X-API-Key header",
                                        [(b"www-authenticate", b"Bearer")])
            length = headers.get(b"content-length")
            if length is not None and (not length.isdigit() or int(length) > self.max_bytes):
                return await answer(send, 413, too_large(self.max_bytes), [(b"connection", b"close")])
        await self.app(scope, receive, send)


async def answer(send, status: int, message: str, headers: list[tuple[bytes, bytes]]) -> None:
    """A JSON error response {"error": message}, sent straight through ASGI."""
    body = json.dumps({"error": message}).encode()
    await send({"type": "http.response.start", "status": status, "headers": [
        (b"content-type", b"application/json"), (b"content-length", str(len(body)).encode()), *headers]})
    await send({"type": "http.response.body", "body": body})


def too_large(limit: int) -> str:
    return f"the request body is over the limit of {limit:,} bytes"


def app_from_env():
    """The app of the settings `digitlab serve` put in the environment: uvicorn's factory for each worker."""
    return create_app(ServeConfig.from_env())
