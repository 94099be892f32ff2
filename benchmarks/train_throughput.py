"""Training throughput of every registered model through digitlab's own trainer, on this machine.

For each model: two epochs of `fit` on a real MNIST subset (the first warms up), then the second
epoch's seconds give training images/s and an extrapolated full MNIST epoch (48k train + 12k val,
the lenet5-classic split). Prints a table and saves JSON + Markdown under benchmarks/results/.

    python benchmarks/train_throughput.py --data-dir ../shared/datasets [--images 4096] [--models 'lenet*']

With --compile each model is also trained through torch.compile (TrainConfig.compile): the second
epoch gives the compiled throughput, the first epoch's extra seconds the (cold) compile time, and the table
says after how many MNIST epochs compiling pays for itself. Saved as train_throughput_compile.
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


def measure(model: str, data_dir: str, images: int, batch_size: int, compile: bool = False,
            threads: int = 0) -> dict:
    if compile:  # measure a first (cold) compile, not a hit in inductor's on-disk cache of an earlier run
        import torch._inductor.config

        torch._inductor.config.force_disable_caches = True
    cfg = TrainConfig(model=model, dataset="mnist", data_dir=data_dir, epochs=2, limit=images,
                      batch_size=batch_size, optimizer="adam", lr=1e-3, split=(4, 1), compile=compile,
                      threads=threads)
    with tempfile.TemporaryDirectory() as out:
        fit(cfg, out, progress=False, log=lambda s: None)
        rows = (Path(out) / "metrics.csv").read_text().strip().splitlines()
    first, seconds = (float(row.split(",")[-1]) for row in rows[1:3])  # `images` train steps + val images
    train_val = images + min(images, 12_000)
    info = model_info(model)
    return {"model": model, "params": info.params, "macs": info.macs, "batch_size": batch_size,
            "compile": compile, "images_per_s": train_val / seconds,
            "mnist_epoch_s": seconds * (48_000 + 12_000) / train_val, "warmup_s": first - seconds}


def compile_row(eager: dict, compiled: dict) -> str:
    """A Markdown row: eager and compiled throughput, compile time, epochs until compiling pays off."""
    saved = eager["mnist_epoch_s"] - compiled["mnist_epoch_s"]
    pays = f"{compiled['warmup_s'] / saved:.1f}" if saved > 0 else "never"
    return (f"| {eager['model']} | {eager['images_per_s']:.0f} | {compiled['images_per_s']:.0f} | "
            f"{compiled['images_per_s'] / eager['images_per_s']:.2f}x | {compiled['warmup_s']:.1f} | {pays} |")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data-dir", default=os.environ.get("DIGITLAB_DATA"))
    parser.add_argument("--images", type=int, default=4096, help="train (and val) images per epoch")
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--models", default=None, help="shell-style filter on model names")
    parser.add_argument("--compile", action="store_true", help="also measure each model through torch.compile")
    parser.add_argument("--dry-run", action="store_true", help="256 images, first two models only")
    parser.add_argument("--threads", type=int, default=0,
                        help="torch threads of each training run (default 0: every core, as the figures of "
                             "record were measured on a quiet machine; digitlab's own default is 1)")
    args = parser.parse_args()
    models = list_models(args.models)
    if args.dry_run:
        models, args.images = models[:2], 256

    started = time.perf_counter()
    results = []
    for name in models:
        for compile in (False, True) if args.compile else (False,):
            r = measure(name, args.data_dir, args.images, args.batch_size, compile, args.threads)
            results.append(r)
            print(f"{name:<18} {'compiled' if compile else 'eager':<8} {r['images_per_s']:>8.0f} img/s  "
                  f"{r['mnist_epoch_s']:>7.1f} s/MNIST epoch", flush=True)

    env = {"machine": platform.machine(), "processor": platform.processor() or platform.machine(),
           "cpus": os.cpu_count(), "torch": torch.__version__, "threads": torch.get_num_threads()}
    report = {"benchmark": "train_throughput", "env": env, "images_per_epoch": args.images,
              "batch_size": args.batch_size, "results": results, "seconds": time.perf_counter() - started}
    md = [f"# Training throughput ({env['cpus']} CPUs, torch {env['torch']}, {env['threads']} threads)", "",
          f"Through `digitlab.train.fit`, batch {args.batch_size}, Adam; second of two epochs on "
          f"{args.images} MNIST train + val images; a full epoch is 48k train + 12k val.", "",
          "| model | params | MACs/image | images/s | s per MNIST epoch |", "|---|---:|---:|---:|---:|"]
    md += [f"| {r['model']} | {r['params']:,} | {r['macs'] / 1e6:.2f}M | {r['images_per_s']:.0f} | "
           f"{r['mnist_epoch_s']:.1f} |" for r in results if not r["compile"]]
    if args.compile:
        md += ["", "torch.compile (inductor): the second epoch's throughput; compile time is the first epoch's "
               "extra seconds.", "",
               "| model | eager images/s | compiled images/s | speed-up | compile s | MNIST epochs to pay off |",
               "|---|---:|---:|---:|---:|---:|"]
        md += [compile_row(eager, compiled) for eager, compiled in zip(results[::2], results[1::2])]
    if not args.dry_run:
        report_io.save("train_throughput_compile" if args.compile else "train_throughput", report, "\n".join(md))
    print("\n".join(md))


if __name__ == "__main__":
    main()
