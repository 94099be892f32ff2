"""Latency of field mode (`digitlab read --field`) on a 150x50 field, on each inference engine, in one run.

The fields are synthetic register cells and cheque amounts (`digitlab.read.fields`) drawn from MNIST *test*
digits and scaled to 150x50 pixels. One process reads each field with `read(image, field=True)` (the
bundled field reader unless one is named), the engines taking turns field by field so that a change in
the machine's load falls on both alike. It reports the median and 95th percentile per engine and field
kind, the network's share, and whether the two engines read every field the same.

    python benchmarks/field_speed.py --data-dir ../shared/datasets
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import time

import cv2
import numpy as np
import report as report_io
import torch

from digitlab.engine import BACKENDS, default_backend, line_engine
from digitlab.read import fields, synth
from digitlab.read.fieldreader import field_image
from digitlab.read.linereader import batch
from digitlab.read.recognize import field_reader_of, read_field

SIZE = (150, 50)  # (width, height) of the target's field
SEED = 99


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--field-reader", default=None, help="field reader checkpoint (default: the bundled one)")
    parser.add_argument("--data-dir", default=None, help="where MNIST is (its test digits draw the fields)")
    parser.add_argument("--images", type=int, default=300, help="fields of each kind")
    parser.add_argument("--threads", type=int, default=1, help="torch and ONNX Runtime threads (default 1)")
    parser.add_argument("--dry-run", action="store_true", help="30 fields of each kind, nothing saved")
    args = parser.parse_args()
    if args.dry_run:
        args.images = 30
    torch.set_num_threads(args.threads)
    backends = [b for b in BACKENDS if b == "torch" or default_backend() == "onnxruntime"]
    reader = field_reader_of(args.field_reader)
    images, labels = synth.load_test_digits(args.data_dir)
    kinds = {"cell": fields.CELL, "cheque": fields.CHEQUE}
    results, same = {}, {}
    for kind, spec in kinds.items():
        cells = [cv2.resize(f.image, SIZE, interpolation=cv2.INTER_AREA)
                 for f in fields.generate_fields(images, labels, spec, args.images, SEED)]
        engines = {b: line_engine(reader, b, args.threads) for b in backends}
        for b in backends:  # loading (and the ONNX export, once per weights), then warm caches
            for cell in cells[:5]:
                read_field(cell, reader, backend=b)
        total = {b: [] for b in backends}
        network = {b: [] for b in backends}
        texts = {b: [] for b in backends}
        for cell in cells:
            x = batch([field_image(cell, reader.meta["line_height"])]).numpy()
            for b in backends:
                t = time.perf_counter()
                reading = read_field(cell, reader, backend=b)
                total[b].append(time.perf_counter() - t)
                t = time.perf_counter()
                engines[b](x)
                network[b].append(time.perf_counter() - t)
                texts[b].append(reading.raw)
        results[kind] = {b: {"median_ms": 1000 * statistics.median(total[b]),
                             "p95_ms": 1000 * float(np.percentile(total[b], 95)),
                             "network_median_ms": 1000 * statistics.median(network[b])} for b in backends}
        same[kind] = sum(len(set(t)) == 1 for t in zip(*texts.values()))
        print(kind, {b: f"{r['median_ms']:.2f} ms" for b, r in results[kind].items()}, flush=True)
    default = default_backend()
    env = {"machine": platform.machine(), "cpus": os.cpu_count(), "torch": torch.__version__,
           "threads": args.threads, "load_average": os.getloadavg()}
    try:
        import onnxruntime

        env["onnxruntime"] = onnxruntime.__version__
    except ImportError:
        pass
    report = {"benchmark": "field_speed", "field_reader": report_io.portable(args.field_reader or "bundled"),
              "weights_sha256": reader.meta["weights_sha256"], "size": list(SIZE), "images": args.images,
              "seed": SEED, "backend": default, "median_ms": results["cell"][default]["median_ms"],
              "p95_ms": results["cell"][default]["p95_ms"], "results": results, "same_reading": same, "env": env}
    md = [f"# Field mode on a {SIZE[0]}x{SIZE[1]} field ({env['cpus']} CPUs, {args.threads} thread(s))", "",
          f"`read(image, field=True)` with the {'bundled' if args.field_reader is None else 'named'} field reader on "
          f"{args.images} synthetic fields of each kind from MNIST test digits (seed {SEED}), the engines taking "
          f"turns field by field; the time includes turning the image into the network's input, decoding and "
          f"the digits' boxes.", "",
          "| fields | engine | median | p95 | network alone (median) | same reading as the other engine |",
          "|---|---|---:|---:|---:|---:|"]
    for kind, by in results.items():
        md += [f"| {kind} | {b}{' (default)' if b == default else ''} | {r['median_ms']:.2f} ms | "
               f"{r['p95_ms']:.2f} ms | {r['network_median_ms']:.2f} ms | "
               f"{same[kind]} of {args.images} |" for b, r in by.items()]
    md += ["", f"torch {env['torch']}" + (f", ONNX Runtime {env['onnxruntime']}" if "onnxruntime" in env else "")
           + f", load average {env['load_average'][0]:.1f} on {env['cpus']} CPUs."]
    if not args.dry_run:
        report_io.save("field_speed", report, "\n".join(md))
    print("\n".join(md))


if __name__ == "__main__":
    main()
