"""The inference engine: `Recognizer` classifies 28x28 digit images with a checkpoint's classifier on ONNX
Runtime (by default) or PyTorch, batched, with the checkpoint's normalisation and calibration temperature.

A checkpoint run on ONNX Runtime is exported once (`digitlab.export`, which checks the file against PyTorch)
into the cache, named by the weights' SHA-256, so later Recognizers of the same weights load it at once.

`LineEngine` does the same for a line or field reader (`digitlab.read.linereader`): line images of any
width in, CTC log-probabilities out; `line_engine` keeps the last few."""

from __future__ import annotations

import functools
import json
from pathlib import Path
from typing import Any

import numpy as np
import torch

from digitlab.data import Normalization, to_model_input
from digitlab.errors import ConfigError

BACKENDS = ("onnxruntime", "torch")


def default_backend() -> str:
    """ONNX Runtime when it is installed (pip install -e '.[onnx]'), else PyTorch."""
    import importlib.util

    needed = ("onnxruntime", "onnx", "onnxscript")  # running, and exporting a checkpoint first
    return "onnxruntime" if all(importlib.util.find_spec(m) for m in needed) else "torch"


def onnx_cache(meta: dict[str, Any]) -> Path:
    """Where the ONNX export of these weights is kept: <cache>/onnx/<sha256 prefix>-opset<k>.onnx (a line
    reader's: <sha256 prefix>-line-opset<k>.onnx)."""
    from digitlab.data.paths import resolve_cache_dir
    from digitlab.export import LINE_OPSET, OPSET

    kind = f"line-opset{LINE_OPSET}" if meta.get("model") == "line-reader" else f"opset{OPSET}"
    return resolve_cache_dir() / "onnx" / f"{meta['weights_sha256'][:20]}-{kind}.onnx"


def _session(path: Path, threads: int) -> Any:
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.intra_op_num_threads = threads
    options.inter_op_num_threads = 1
    return ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])


class Recognizer:
    """source: a checkpoint (run folder, .safetensors file or loaded Checkpoint), an .onnx file written by
    `digitlab export`, or None (the bundled MNIST classifier). backend: "onnxruntime" or "torch" (a
    checkpoint only). threads: intra-op threads of either backend."""

    def __init__(self, source: Any = None, *, backend: str = "onnxruntime", threads: int = 1,
                 batch_size: int = 1024):
        if backend not in BACKENDS:
            raise ConfigError(f"backend must be one of {', '.join(BACKENDS)}, got {backend!r}")
        if threads < 1 or batch_size < 1:
            raise ConfigError(f"threads and batch_size must be >= 1, got {threads} and {batch_size}")
        self.backend, self.threads, self.batch_size = backend, threads, batch_size
        self._model = self._session = None
        if isinstance(source, (str, Path)) and str(source).endswith(".onnx"):
            from digitlab.export import onnx_metadata

            if backend != "onnxruntime":
                raise ConfigError(f"{source}: an ONNX file runs on the onnxruntime backend only")
            self.meta, path = onnx_metadata(source), Path(source)
        else:
            from digitlab.infer import as_checkpoint

            ckpt = as_checkpoint(source)
            self.meta = ckpt.meta
            if backend == "torch":
                self._model = ckpt.model
            else:
                path = onnx_cache(ckpt.meta)
                if not path.is_file():
                    from digitlab.export import export_onnx

                    export_onnx(ckpt, path, images=256)
        if self._model is None:
            self._session = _session(path, threads)
            self._input = self._session.get_inputs()[0].name
        self.classes: list[str] = list(self.meta["classes"])
        self.normalization = Normalization(**self.meta["normalization"])
        self.temperature = float(self.meta.get("temperature", 1.0))

    def logits(self, images: torch.Tensor | np.ndarray) -> np.ndarray:
        """Logits (N, classes) of uint8 images (N, 28, 28), batch by batch."""
        images = torch.as_tensor(images)
        if self._session is None:  # PyTorch: the one batched path of digitlab.infer, in this many threads
            from digitlab.infer import predict_logits

            threads = torch.get_num_threads()
            torch.set_num_threads(self.threads)
            try:
                with torch.inference_mode():
                    logits = predict_logits(self._model, images, self.normalization, self.batch_size)
            finally:
                torch.set_num_threads(threads)
            return logits.numpy() if len(images) else np.empty((0, len(self.classes)), dtype=np.float32)
        out = [self._session.run(None, {self._input: to_model_input(images[i:i + self.batch_size],
                                                                     self.normalization).numpy()})[0]
               for i in range(0, len(images), self.batch_size)]
        return np.concatenate(out) if out else np.empty((0, len(self.classes)), dtype=np.float32)

    def forward(self, x: np.ndarray) -> np.ndarray:
        """Logits of normalised model input (N, 1, 28, 28) float32, in one call: the model alone (benchmarks)."""
        if self._session is None:
            threads = torch.get_num_threads()
            torch.set_num_threads(self.threads)
            try:
                with torch.inference_mode():
                    return self._model(torch.from_numpy(x)).numpy()
            finally:
                torch.set_num_threads(threads)
        return self._session.run(None, {self._input: x})[0]

    def probabilities(self, images: torch.Tensor | np.ndarray) -> np.ndarray:
        """Calibrated class probabilities: softmax(logits / temperature)."""
        z = self.logits(images) / self.temperature
        z = np.exp(z - z.max(1, keepdims=True))
        return z / z.sum(1, keepdims=True)

    def predict(self, images: torch.Tensor | np.ndarray) -> list[tuple[str, float]]:
        """(class name, calibrated confidence) of each image."""
        p = self.probabilities(images)
        return [(self.classes[i], float(p[k, i])) for k, i in enumerate(p.argmax(1))]


def as_recognizer(source: Any = None, backend: str | None = None, threads: int = 1) -> Recognizer:
    """A Recognizer: the one given, else one of `source` (as Recognizer takes it) on `backend` (None:
    default_backend()). The bundled classifier's are made once per process, per backend and threads."""
    if isinstance(source, Recognizer):
        if backend is not None and backend != source.backend:
            raise ConfigError(f"the Recognizer given runs on {source.backend}, not {backend}")
        return source
    backend = backend or default_backend()
    if source is None:
        return _bundled(backend, threads)
    if isinstance(source, (str, Path)) and str(source).endswith(".onnx"):
        return Recognizer(source, backend=backend, threads=threads)
    from digitlab.infer import as_checkpoint

    ckpt = as_checkpoint(source)
    if ckpt.meta.get("weights_sha256") is None:
        return Recognizer(ckpt, backend=backend, threads=threads)
    key = (json.dumps(ckpt.meta, sort_keys=True, default=str), backend, threads)  # the weights' hash is in it
    if key not in _RECENT:
        if len(_RECENT) >= 8:
            del _RECENT[next(iter(_RECENT))]
        _RECENT[key] = Recognizer(ckpt, backend=backend, threads=threads)
    return _RECENT[key]


_RECENT: dict[tuple[str, str, int], Recognizer] = {}  # the last few checkpoints' Recognizers, by metadata


@functools.cache
def _bundled(backend: str, threads: int) -> Recognizer:
    return Recognizer(None, backend=backend, threads=threads)


class LineEngine:
    """A line or field reader checkpoint's network ((N, 1, height, W) float32 line images, ink 1 on 0
    -> (W / STRIDE, N, classes + 1) log-probabilities) on ONNX Runtime or PyTorch. backend "torch" runs the
    checkpoint's model in the process's torch threads; "onnxruntime" exports it once into the cache (by its
    weights' SHA-256) and runs that in `threads` threads. A checkpoint without a weights hash (a network
    being trained) runs on PyTorch."""

    def __init__(self, ckpt: Any, *, backend: str = "onnxruntime", threads: int = 1):
        if backend not in BACKENDS:
            raise ConfigError(f"backend must be one of {', '.join(BACKENDS)}, got {backend!r}")
        self.meta, self._model, self._session = ckpt.meta, ckpt.model, None
        self.backend = backend if ckpt.meta.get("weights_sha256") else "torch"
        if self.backend == "onnxruntime":
            path = onnx_cache(ckpt.meta)
            if not path.is_file():
                from digitlab.export import export_line_onnx

                export_line_onnx(ckpt, path)
            self._session = _session(path, threads)

    def __call__(self, x: np.ndarray) -> np.ndarray:
        if self._session is None:
            with torch.inference_mode():
                return self._model(torch.from_numpy(x)).numpy()
        return self._session.run(None, {"lines": x})[0]


def line_engine(ckpt: Any, backend: str | None = None, threads: int = 1) -> LineEngine:
    """A LineEngine of a loaded line or field reader checkpoint on `backend` (None: default_backend()); the
    last few made are kept, by weights and backend."""
    backend = backend or default_backend()
    sha = ckpt.meta.get("weights_sha256")
    if sha is None:
        return LineEngine(ckpt, backend=backend, threads=threads)
    key = (sha, backend, threads)
    if key not in _LINES:
        if len(_LINES) >= 8:
            del _LINES[next(iter(_LINES))]
        _LINES[key] = LineEngine(ckpt, backend=backend, threads=threads)
    return _LINES[key]


_LINES: dict[tuple[str, str, int], LineEngine] = {}
