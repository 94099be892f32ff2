"""End-to-end latency of `digitlab.read.read` on a 1-megapixel photo holding 10 digits, on this machine.

The photo (1155 x 866 JPEG, quality 85) holds a line of 10 MNIST *test* digits about 70 px tall on
textured paper under a light gradient, with sensor noise. One process reads the file again and again
(decode included) after a few warm-up runs; the median and 95th percentile are reported, and one
more run is broken down by stage. Prints and saves JSON + Markdown under benchmarks/results/.

    python benchmarks/read_speed.py --checkpoint runs/lenet5-improved --data-dir ../shared/datasets
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import tempfile
import time
from pathlib import Path

import cv2
import numpy as np
import report as report_io
import torch
from read_synthetic import add_reader_options, helper_path, open_reader

from digitlab.engine import as_recognizer, default_backend
from digitlab.read import ReadConfig, read, segment, synth
from digitlab.read.image import load_gray, prepare
from digitlab.read.recognize import recognize

SIZE = (1155, 866)  # (width, height): 1.0 megapixel, 4:3


def photo(images: np.ndarray, labels: np.ndarray, seed: int) -> tuple[np.ndarray, str]:
    """A 1-megapixel grayscale photo of 10 handwritten digits and its label."""
    rng = np.random.default_rng(seed)
    picks = rng.integers(0, len(images), 10)
    ink = synth.line_ink(list(images[picks]), height=70, gaps=list(rng.uniform(0.15, 0.5, 9)), margin=0.3)
    w, h = SIZE
    canvas = np.zeros((h, w), np.float32)
    y0, x0 = (h - ink.shape[0]) // 2, (w - ink.shape[1]) // 2
    canvas[y0:y0 + ink.shape[0], x0:x0 + ink.shape[1]] = ink
    coarse = rng.normal(0, 1, (h // 24, w // 24)).astype(np.float32)
    blotches = cv2.resize(coarse, (w, h), interpolation=cv2.INTER_CUBIC)
    light = np.linspace(1.0, 0.7, w, dtype=np.float32)[None, :]  # lit from the left
    paper = (215 + 6 * blotches) * light
    img = paper * (1 - canvas) + 35 * canvas + rng.normal(0, 4, (h, w))
    return np.clip(img, 0, 255).astype(np.uint8), "".join(str(int(c)) for c in labels[picks])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    add_reader_options(parser)
    parser.add_argument("--runs", type=int, default=50)
    parser.add_argument("--backend", choices=["onnxruntime", "torch"], default=None,
                        help="engine of the classifier and the line reader (default: ONNX Runtime when installed)")
    parser.add_argument("--dry-run", action="store_true", help="5 runs, nothing saved")
    args = parser.parse_args()
    if args.dry_run:
        args.runs = 5
    ckpt, checker, second, images, labels = open_reader(args)
    backend = args.backend or default_backend()
    engine = as_recognizer(ckpt, backend, threads=args.threads)
    img, truth = photo(images, labels, seed=0)
    cfg = ReadConfig()
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "meter.jpg"
        cv2.imwrite(str(path), img, [cv2.IMWRITE_JPEG_QUALITY, 85])
        for _ in range(3):  # warm-up: first calls allocate, fill caches
            reading = read(path, engine, cfg, checker, second)
        times = []
        for _ in range(args.runs):
            t = time.perf_counter()
            reading = read(path, engine, cfg, checker, second)
            times.append(time.perf_counter() - t)
        # One more run, stage by stage
        t0 = time.perf_counter()
        gray, scale, name = load_gray(path, cfg)
        t1 = time.perf_counter()
        page = prepare(gray, cfg, scale, name)
        t2 = time.perf_counter()
        lay = segment.layout(page, cfg)
        cands = segment.candidates(lay, cfg, page.text_height)
        t3 = time.perf_counter()
        recognize(page, engine, cfg, verifier=checker, line_reader=second)
        t4 = time.perf_counter()
    stages = {"decode": t1 - t0, "clean (polarity, flatten, binarize, deskew, lines, slant)": t2 - t1,
              "layout and candidates": t3 - t2, "crops, model, best path (incl. layout again)": t4 - t3}
    median, p95 = statistics.median(times), float(np.percentile(times, 95))
    env = {"machine": platform.machine(), "processor": platform.processor() or platform.machine(),
           "cpus": os.cpu_count(), "torch": torch.__version__, "threads": torch.get_num_threads(), "backend": backend,
           "opencv": cv2.__version__, "load_average": os.getloadavg()}
    report = {"benchmark": "read_speed", "checkpoint": report_io.portable(args.checkpoint),
              "weights_sha256": ckpt.meta["weights_sha256"], "model": ckpt.meta["model"],
              "verifier": helper_path(args.verifier, args.checkpoint, "verifier"),
              "line_reader": helper_path(args.line_reader, args.checkpoint, "line-reader"),
              "image": {"width": SIZE[0], "height": SIZE[1], "format": "JPEG q85", "digits": 10},
              "truth": truth, "read": reading.text, "candidates": len(cands), "runs": args.runs,
              "median_ms": 1000 * median, "p95_ms": 1000 * p95, "min_ms": 1000 * min(times),
              "stages_ms": {k: 1000 * v for k, v in stages.items()}, "env": env}
    md = [f"# Reading a 1-megapixel photo of 10 digits ({env['cpus']} CPUs, {env['threads']} thread(s), "
          f"{backend})", "",
          f"`digitlab.read.read` on a {SIZE[0]}x{SIZE[1]} JPEG (file decode included), {args.runs} runs after 3 "
          f"warm-up runs, one process; {ckpt.meta['model']}"
          + (f", verifier {checker.meta['model']}" if checker else ", no verifier")
          + (", line reader" if second else ", no line reader") + ".", "",
          "| median | p95 | min | read | truth |", "|---:|---:|---:|---|---|",
          f"| {1000 * median:.1f} ms | {1000 * p95:.1f} ms | {1000 * min(times):.1f} ms | {reading.text} | {truth} |",
          "", "One run by stage:", "", "| stage | ms |", "|---|---:|"]
    md += [f"| {k} | {1000 * v:.1f} |" for k, v in stages.items()]
    calls = "one model call" + (", one verifier call" if checker else "") + (", one line reader call" if second else "")
    md += ["", f"{len(cands)} candidate crops in {calls}; load average {env['load_average'][0]:.1f} during "
               f"the run (other jobs share the machine)."]
    if not args.dry_run:
        report_io.save("read_speed", report, "\n".join(md))
    print("\n".join(md))


if __name__ == "__main__":
    main()
