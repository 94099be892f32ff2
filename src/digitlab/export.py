"""Export a checkpoint's classifier to ONNX (`digitlab export CHECKPOINT --format onnx --out FILE`).

torch's dynamo exporter writes the model with a dynamic batch axis, the weights inside the one file (no
external data: digit models are small). The checkpoint's model.json (classes, normalisation, calibration
temperature, ...) travels in the file's metadata under "digitlab", so the ONNX file is as self-describing
as the checkpoint. Before the file is kept, ONNX Runtime runs it beside PyTorch on real test images (the
checkpoint's own test split when it can be found); a mismatch beyond `tolerance` fails the export.

A line or field reader (CNN + BiLSTM, `digitlab.read.linereader`) is exported by `export_line_onnx`, with
dynamic batch and width, by torch's TorchScript exporter: the dynamo exporter fixes the LSTM's sequence
length at the example's (torch 2.13), so a line of another width fails in ONNX Runtime."""

from __future__ import annotations

import contextlib
import copy
import json
import logging
import math
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from digitlab.atomic import atomic_path
from digitlab.errors import DatasetError, DigitlabError

OPSET = 18
LINE_OPSET = 17  # the TorchScript exporter's newest well-trodden opset
METADATA_KEY = "digitlab"


class ExportError(DigitlabError):
    """An export that failed or whose file does not compute what the checkpoint computes."""


@dataclass(frozen=True)
class ExportReport:
    path: Path
    bytes: int
    opset: int
    images: int  # images the parity check ran on
    source: str  # where they came from
    max_abs_diff: float  # largest |logit(onnx) - logit(torch)|
    agreement: float  # share of images whose predicted class is the same


def check_images(ckpt, data_dir: str | Path | None, count: int) -> tuple[torch.Tensor, str]:
    """Up to `count` test images of the checkpoint's dataset (uint8, (N, 28, 28)) and where they came from:
    its test split, or for a one-split dataset (digits, TibetanMNIST) the test share the run held out;
    uniform noise, said so, when the dataset is not at hand and no `data_dir` was given."""
    from digitlab.data import load_dataset
    from digitlab.infer import held_out_test, recorded_data_dir

    dataset = ckpt.meta.get("dataset")
    root = data_dir or recorded_data_dir(ckpt)
    try:
        if (held := held_out_test(ckpt, dataset, "test", root)) is not None:
            images, where = held.images, "test share held out by the run"
        else:
            images, where = load_dataset(dataset, "test", data_dir=root).images, "test split"
        return images[:count], f"{dataset} {where} ({min(count, len(images))} images)"
    except (DatasetError, KeyError, ValueError):
        if data_dir is not None:  # asked for: its absence is an error
            raise
        gen = torch.Generator().manual_seed(0)
        return (torch.randint(0, 256, (count, 28, 28), generator=gen, dtype=torch.uint8),
                f"{count} images of uniform noise ({dataset} test images not found: give --data-dir)")


def export_onnx(checkpoint: Any, out: str | Path, *, data_dir: str | Path | None = None,
                images: int = 1000, opset: int = OPSET, tolerance: float = 1e-3) -> ExportReport:
    """Write the checkpoint's model (a path, a loaded Checkpoint, or None: the bundled MNIST classifier) as
    ONNX to `out`, checked against PyTorch on `images` test images."""
    try:
        import onnx
        import onnxruntime as ort
    except ImportError:
        raise ExportError("ONNX export needs onnx, onnxscript and onnxruntime: pip install -e '.[onnx]'") from None

    from digitlab.data import to_model_input
    from digitlab.infer import as_checkpoint

    ckpt = as_checkpoint(checkpoint)
    # a copy: the loaded checkpoint is shared (load_checkpoint caches it) and keeps its channels-last layout
    model = copy.deepcopy(ckpt.model).to(memory_format=torch.contiguous_format).eval()
    size = tuple(ckpt.meta.get("input_size", (1, 28, 28)))
    example = torch.zeros((2, *size))
    batch = torch.export.Dim("batch", min=1, max=1 << 20)
    out = Path(out)
    with atomic_path(out) as tmp:
        try:
            with _quiet_exporter():
                program = torch.onnx.export(model, (example,), dynamo=True, external_data=False,
                                            opset_version=opset, dynamic_shapes=({0: batch},), verbose=False,
                                            input_names=["images"], output_names=["logits"], optimize=True)
        except Exception as e:  # the exporter's own errors are many and long: one line of it
            raise ExportError(f"{ckpt.meta['model']}: ONNX export failed: {str(e).strip().splitlines()[0]}") from e
        proto = program.model_proto
        meta = {k: v for k, v in ckpt.meta.items() if k not in ("config",)}
        onnx.helper.set_model_props(proto, {METADATA_KEY: json.dumps(meta)})
        onnx.checker.check_model(proto)
        onnx.save(proto, str(tmp))
        pixels, source = check_images(ckpt, data_dir, images)
        x = to_model_input(pixels, ckpt.normalization)
        with torch.inference_mode():
            expected = model(x).numpy()
        session = ort.InferenceSession(str(tmp), providers=["CPUExecutionProvider"])
        got = session.run(None, {session.get_inputs()[0].name: x.numpy()})[0]
        diff = float(np.abs(got - expected).max()) if len(x) else 0.0
        agreement = float((got.argmax(1) == expected.argmax(1)).mean()) if len(x) else 1.0
        if not math.isfinite(diff) or diff > tolerance:
            raise ExportError(f"{out}: ONNX Runtime and PyTorch differ by {diff:.3g} on {source} (tolerance "
                              f"{tolerance:g}); the file was not written")
    return ExportReport(out, out.stat().st_size, opset, len(x), source, diff, agreement)


def export_line_onnx(checkpoint: Any, out: str | Path, *, opset: int = LINE_OPSET,
                     tolerance: float = 1e-3) -> ExportReport:
    """Write a line or field reader checkpoint's network ((N, 1, height, W) line images -> (W / STRIDE,
    N, classes + 1) log-probabilities) as ONNX to `out`, batch and width dynamic, checked against PyTorch on
    lines of several widths (rows of drawn strokes over noise; the network's output, not its reading, is
    compared)."""
    try:
        import onnx
        import onnxruntime as ort
    except ImportError:
        raise ExportError("ONNX export needs onnx, onnxscript and onnxruntime: pip install -e '.[onnx]'") from None
    from digitlab.infer import as_checkpoint
    from digitlab.models.linereader import LINE_HEIGHT

    ckpt = as_checkpoint(checkpoint)
    if ckpt.meta.get("model") != "line-reader":
        raise ExportError(f"{ckpt.meta.get('model')}: not a line or field reader (export it with export_onnx)")
    model = copy.deepcopy(ckpt.model).eval()
    height = int(ckpt.meta.get("line_height", LINE_HEIGHT))
    out = Path(out)
    with atomic_path(out) as tmp:
        try:
            with _quiet_exporter():
                torch.onnx.export(model, (torch.zeros(2, 1, height, 96),), str(tmp), dynamo=False,
                                  opset_version=opset, input_names=["lines"], output_names=["logp"],
                                  dynamic_axes={"lines": {0: "batch", 3: "width"}, "logp": {0: "frames", 1: "batch"}})
        except Exception as e:
            raise ExportError(f"line reader: ONNX export failed: {str(e).strip().splitlines()[0]}") from e
        proto = onnx.load(str(tmp))
        onnx.helper.set_model_props(proto, {METADATA_KEY: json.dumps({k: v for k, v in ckpt.meta.items()
                                                                      if k not in ("config",)})})
        onnx.checker.check_model(proto)
        onnx.save(proto, str(tmp))
        session = ort.InferenceSession(str(tmp), providers=["CPUExecutionProvider"])
        gen = torch.Generator().manual_seed(0)
        diff, same, lines = 0.0, 0, 0
        for n, width in ((1, 8), (1, 100), (3, 240)):
            x = 0.2 * torch.rand(n, 1, height, width, generator=gen)
            x[:, :, height // 4: 3 * height // 4: 3] = 1.0  # strokes the network answers to
            with torch.inference_mode():
                expected = model(x).numpy()
            got = session.run(None, {"lines": x.numpy()})[0]
            if got.shape != expected.shape:
                raise ExportError(f"{out}: ONNX Runtime gives {got.shape} for a line {width} pixels wide, PyTorch "
                                  f"{expected.shape}; the file was not written")
            diff = max(diff, float(np.abs(got - expected).max()))
            same += int((got.argmax(2) == expected.argmax(2)).all(0).sum())
            lines += n
        if not math.isfinite(diff) or diff > tolerance:
            raise ExportError(f"{out}: ONNX Runtime and PyTorch differ by {diff:.3g} on line images (tolerance "
                              f"{tolerance:g}); the file was not written")
    return ExportReport(out, out.stat().st_size, opset, lines, "lines of noise and strokes, 8-240 pixels wide",
                        diff, same / lines)


@contextlib.contextmanager
def _quiet_exporter():
    """torch's exporter logs each stage, warns that torchvision is absent and that a pytree API is
    deprecated: none of it is the user's business."""
    logger = logging.getLogger("torch.onnx")
    level = logger.level
    logger.setLevel(logging.ERROR)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            yield
    finally:
        logger.setLevel(level)


def onnx_metadata(path: str | Path) -> dict[str, Any]:
    """The checkpoint meta stored in an ONNX file written by export_onnx."""
    import onnx

    model = onnx.load(str(path), load_external_data=False)
    props = {p.key: p.value for p in model.metadata_props}
    if METADATA_KEY not in props:
        raise ExportError(f"{path}: not an ONNX file written by digitlab export (no {METADATA_KEY!r} metadata)")
    return json.loads(props[METADATA_KEY])
