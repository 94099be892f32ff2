"""The inference benchmark (`digitlab bench`): each checkpoint in each format, measured side by side in one run.

Formats: "pytorch" (eager fp32, the checkpoint as loaded), "onnx" (ONNX Runtime fp32, the engine's export),
"int8" (ONNX Runtime, static int8 QDQ from digitlab.compress.quantization). For each: the file's bytes, raw and
gzipped (pytorch: model.safetensors as stored, sparse or int8 when pruned); conv/linear weights (all, and
non-zero) and multiply-accumulates per image; accuracy on the full test set; images/s at each batch size; and
p50/p99 latency at batch 1. Timings are of the model call on normalised input (N, 1, 28, 28): batch 1 on one
thread (a request), larger batches on `threads` threads; each is the median over calls during `seconds`."""

from __future__ import annotations

import gzip
import os
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from digitlab.errors import ConfigError

FORMATS = ("pytorch", "onnx", "int8")
BATCHES = (1, 64, 1024)


@dataclass(frozen=True)
class BenchRow:
    model: str  # the checkpoint's label
    format: str  # pytorch, onnx or int8
    file: str  # the file whose size is given
    bytes: int
    gzip_bytes: int
    weights: int  # conv + linear weights
    nonzero: int  # of which non-zero
    macs: int  # multiply-accumulates per image (dense)
    test_images: int
    test_accuracy: float
    images_per_s: dict[int, float] = field(default_factory=dict)  # batch size -> images/s
    p50_us: float = 0.0  # batch 1, one thread
    p99_us: float = 0.0

    def to_dict(self) -> dict[str, Any]:
        return asdict(self) | {"images_per_s": {str(k): v for k, v in self.images_per_s.items()}}


def file_sizes(path: Path) -> tuple[int, int]:
    data = path.read_bytes()
    return len(data), len(gzip.compress(data, compresslevel=9))


def time_calls(run: Callable[[], Any], seconds: float, min_calls: int = 20) -> np.ndarray:
    """Seconds of each call of `run` during about `seconds` (after a warm-up), at least `min_calls`."""
    for _ in range(5):
        run()
    times: list[float] = []
    end = time.perf_counter() + seconds
    while time.perf_counter() < end or len(times) < min_calls:
        t0 = time.perf_counter()
        run()
        times.append(time.perf_counter() - t0)
    return np.array(times)


def int8_path(meta: dict[str, Any]) -> Path:
    """Where the engine keeps the int8 copy of these weights (beside the fp32 export)."""
    from digitlab.engine import onnx_cache

    fp32 = onnx_cache(meta)
    return fp32.with_name(fp32.stem + "-int8.onnx")


def bench(sources: list[Any], *, labels: list[str] | None = None, formats: tuple[str, ...] = FORMATS,
          data_dir: str | Path | None = None, batches: tuple[int, ...] = BATCHES, threads: int = 0,
          seconds: float = 2.0, calibration: int = 1000, log: Callable[[str], None] = print) -> list[BenchRow]:
    """Measure each checkpoint (run folder, .safetensors file; None: the bundled MNIST classifier) in each
    format. threads: for the batched timings (0: every core). Returns one row per checkpoint and format."""
    from digitlab.checkpoint import resolve
    from digitlab.compress.pruning import layer_table, total_row
    from digitlab.data import to_model_input
    from digitlab.engine import Recognizer, onnx_cache
    from digitlab.infer import as_checkpoint, held_out_test, recorded_data_dir
    from digitlab.pretrained import bundled

    unknown = [f for f in formats if f not in FORMATS]
    if unknown or not formats:
        raise ConfigError(f"formats must be among {', '.join(FORMATS)}, got {', '.join(formats) or 'none'}")
    if any(b < 1 for b in batches) or seconds <= 0:
        raise ConfigError("batch sizes must be >= 1 and seconds > 0")
    threads = threads or os.cpu_count() or 1
    labels = labels or [str(s) if s is not None else "bundled" for s in sources]
    rows: list[BenchRow] = []
    for label, source in zip(labels, sources):
        path = Path(source) if source is not None else bundled()
        ckpt = as_checkpoint(path)
        root = data_dir or recorded_data_dir(ckpt)
        test = held_out_test(ckpt, ckpt.meta["dataset"], "test", root)
        if test is None:
            from digitlab.data import load_dataset

            test = load_dataset(ckpt.meta["dataset"], "test", data_dir=root)
        x_test = to_model_input(test.images, ckpt.normalization).numpy()
        totals = total_row(layer_table(ckpt.model, tuple(ckpt.meta.get("input_size", (1, 28, 28)))))
        for fmt in formats:
            if fmt == "int8":
                file = int8_path(ckpt.meta)
                if not file.is_file():
                    from digitlab.compress.quantization import quantize

                    # post-training, as the benchmark's rows say: a fine-tune would measure another model
                    quantize(ckpt, file, data_dir=root, calibration=calibration, eval_images=1, qat="never")
                engines = {b: Recognizer(file, threads=1 if b == 1 else threads) for b in batches}
            elif fmt == "onnx":
                engines = {b: Recognizer(ckpt, threads=1 if b == 1 else threads) for b in batches}
                file = onnx_cache(ckpt.meta)
            else:
                engines = {b: Recognizer(ckpt, backend="torch", threads=1 if b == 1 else threads) for b in batches}
                file = resolve(path)[0]
            logits = engines[max(batches)].forward(x_test)
            accuracy = float((logits.argmax(1) == test.labels.numpy()).mean())
            speed, p50, p99 = {}, 0.0, 0.0
            for b in batches:
                x = x_test[:b] if b <= len(x_test) else np.resize(x_test, (b, *x_test.shape[1:]))
                times = time_calls(lambda e=engines[b], x=x: e.forward(x), seconds)
                speed[b] = b / float(np.median(times))
                if b == 1:
                    p50, p99 = (float(np.percentile(times, q)) * 1e6 for q in (50, 99))
            raw, packed = file_sizes(file)
            row = BenchRow(label, fmt, file.name, raw, packed, totals["weights"], totals["nonzero"], totals["macs"],
                           len(test), accuracy, speed, p50, p99)
            rows.append(row)
            log(f"{label} {fmt}: {raw:,} bytes, test accuracy {100 * accuracy:.2f}%, "
                + ", ".join(f"batch {b}: {v:,.0f}/s" for b, v in speed.items())
                + (f", p50 {p50:.0f} us, p99 {p99:.0f} us" if 1 in speed else ""))
    return rows


def format_rows(rows: list[BenchRow]) -> list[tuple[str, ...]]:
    """Rows for digitlab.table.format_table (or a Markdown table)."""
    batches = sorted({b for r in rows for b in r.images_per_s})
    out = [("model", "format", "bytes", "gzip", "weights (non-zero)", "MACs", "test accuracy",
            *(f"img/s @{b}" for b in batches), "p50 us", "p99 us")]
    for r in rows:
        out.append((r.model, r.format, f"{r.bytes:,}", f"{r.gzip_bytes:,}", f"{r.weights:,} ({r.nonzero:,})",
                    f"{r.macs:,}", f"{100 * r.test_accuracy:.2f}%",
                    *(f"{r.images_per_s[b]:,.0f}" if b in r.images_per_s else "" for b in batches),
                    f"{r.p50_us:.0f}" if r.p50_us else "", f"{r.p99_us:.0f}" if r.p99_us else ""))
    return out
