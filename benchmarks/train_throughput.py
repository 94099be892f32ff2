"""Training throughput of every registered model through digitlab's own trainer, on this machine.

For each model: two epochs of `fit` on a real MNIST subset (the first warms up), then the second
epoch's seconds give training images/s and an extrapolated full MNIST epoch (48k train + 12k val,
the lenet5-classic split). Prints a table and saves JSON + Markdown under benchmarks/results/.

    python benchmarks/train_throughput.py --data-dir ../shared/datasets [--images 4096] [--models 'lenet*']
"""

from __future__ import annotations

import argparse
import os
import platform
import tempfile
import time
from pathlib import Path

import report as report_io
import torch

from digitlab.models import list_models, model_info
from digitlab.train import TrainConfig, fit


def measure(model: str, data_dir: str, images: int, batch_size: int) -> dict:
    cfg = TrainConfig(model=model, dataset="mnist", data_dir=data_dir, epochs=2, limit=images,
                      batch_size=batch_size, optimizer="adam", lr=1e-3, split=(4, 1))
    with tempfile.TemporaryDirectory() as out:
        fit(cfg, out, progress=False, log=lambda s: None)
        rows = (Path(out) / "metrics.csv").read_text().strip().splitlines()
    seconds = float(rows[-1].split(",")[-1])  # epoch 2: `images` train steps + `images` val images
    train_val = images + min(images, 12_000)
    info = model_info(model)
    return {"model": model, "params": info.params, "macs": info.macs, "batch_size": batch_size,
            "images_per_s": train_val / seconds,
            "mnist_epoch_s": seconds * (48_000 + 12_000) / train_val}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data-dir", default=os.environ.get("DIGITLAB_DATA"))
    parser.add_argument("--images", type=int, default=4096, help="train (and val) images per epoch")
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--models", default=None, help="shell-style filter on model names")
    parser.add_argument("--dry-run", action="store_true", help="256 images, first two models only")
    args = parser.parse_args()
    models = list_models(args.models)
    if args.dry_run:
        models, args.images = models[:2], 256

    started = time.perf_counter()
    results = []
    for name in models:
        r = measure(name, args.data_dir, args.images, args.batch_size)
        results.append(r)
        print(f"{name:<18} {r['images_per_s']:>8.0f} img/s  {r['mnist_epoch_s']:>7.1f} s/MNIST epoch", flush=True)

    env = {"machine": platform.machine(), "processor": platform.processor() or platform.machine(),
           "cpus": os.cpu_count(), "torch": torch.__version__, "threads": torch.get_num_threads()}
    report = {"benchmark": "train_throughput", "env": env, "images_per_epoch": args.images,
              "batch_size": args.batch_size, "results": results, "seconds": time.perf_counter() - started}
    md = [f"# Training throughput ({env['cpus']} CPUs, torch {env['torch']}, {env['threads']} threads)", "",
          f"Through `digitlab.train.fit`, batch {args.batch_size}, Adam; second of two epochs on "
          f"{args.images} MNIST train + val images; a full epoch is 48k train + 12k val.", "",
          "| model | params | MACs/image | images/s | s per MNIST epoch |", "|---|---:|---:|---:|---:|"]
    md += [f"| {r['model']} | {r['params']:,} | {r['macs'] / 1e6:.2f}M | {r['images_per_s']:.0f} | "
           f"{r['mnist_epoch_s']:.1f} |" for r in results]
    if not args.dry_run:
        report_io.save("train_throughput", report, "\n".join(md))
    print("\n".join(md))


if __name__ == "__main__":
    main()
