"""Training and reading speed against torch's thread count, on an idle machine and beside busy processes.

digitlab's defaults must not make training crawl on a shared machine: torch's own default (threads 0)
takes every core, and when other processes want them too its threads wait on each other at every
operation. For each number of competing processes (each a CPU-bound Python loop, one core's worth of
work) and each thread count (0: torch's default, 1, 2), a fresh process trains a preset for a few
epochs on a real MNIST subset through `digitlab.train.fit` (throughput: train + val images per second of
epoch, epochs after the first, mean ± std) and another reads a 1-megapixel photo of 10 digits with the
bundled reader (median of repeated reads, as benchmarks/read_speed.py). Saves JSON + Markdown under
benchmarks/results/threads.{json,md}.

    python benchmarks/threads.py --data-dir ../shared/datasets [--loads 0,1,2] [--images 8192]
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import report as report_io

THREADS = (0, 1, 2)  # 0: torch's default
PRESETS = ("lenet5-classic", "mnist-fast")
BUSY = "while True: pass"  # one core's worth of competing work


def train_worker(preset: str, threads: int, data_dir: str | None, images: int, epochs: int) -> dict:
    """Epochs 2.. of a preset's run on `images` train (and val) images: images per second of epoch."""
    import torch

    from digitlab.train import fit, get_preset

    cfg = get_preset(preset).config(data_dir=data_dir, limit=images, epochs=epochs, threads=threads)
    with tempfile.TemporaryDirectory() as out:
        summary = fit(cfg, out, progress=False, log=lambda s: None)
        with open(Path(out) / "metrics.csv") as f:
            seconds = [float(row["seconds"]) for row in csv.DictReader(f)]
    per_epoch = summary["sizes"]["train"] + summary["sizes"]["val"]
    return {"torch_threads": torch.get_num_threads(), "images_per_s": [per_epoch / s for s in seconds[1:]]}


def read_worker(threads: int, data_dir: str | None, runs: int) -> dict:
    """Reads per second of the 1-megapixel photo with the bundled reader (median of `runs` after 3 warm-ups)."""
    import torch
    from read_speed import photo

    from digitlab.pretrained import bundled
    from digitlab.read import linereader, read, synth, verifier
    from digitlab.read.recognize import as_checkpoint

    if threads:
        torch.set_num_threads(threads)
    run = bundled()
    ckpt = as_checkpoint(str(run))
    checker = verifier.load_verifier(verifier.beside(run))
    second = linereader.load_line_reader(linereader.beside(run))
    img, _ = photo(*synth.load_test_digits(data_dir), seed=0)
    times = []
    for i in range(3 + runs):
        t0 = time.perf_counter()
        read(img, ckpt, verifier=checker, line_reader=second)
        if i >= 3:
            times.append(time.perf_counter() - t0)
    return {"torch_threads": torch.get_num_threads(), "median_ms": 1000 * statistics.median(times)}


def measure(args: argparse.Namespace, job: list[str]) -> dict:
    """Run this script as a worker in a fresh process (torch's thread pool starts with its default)."""
    load_before = os.getloadavg()[0]
    cmd = [sys.executable, __file__, "--worker", *job, "--images", str(args.images), "--epochs", str(args.epochs),
           "--runs", str(args.runs)]
    if args.data_dir:
        cmd += ["--data-dir", args.data_dir]
    done = subprocess.run(cmd, capture_output=True, text=True, check=True)
    return {**json.loads(done.stdout.strip().splitlines()[-1]), "load_before": load_before,
            "load_after": os.getloadavg()[0]}


def busy_processes(n: int) -> list[subprocess.Popen]:
    procs = [subprocess.Popen([sys.executable, "-c", BUSY]) for _ in range(n)]
    time.sleep(1.0)  # let them reach full speed
    return procs


def markdown(report: dict) -> str:
    env = report["env"]
    md = [f"# Thread count on a busy machine ({env['cpus']} CPUs, torch {env['torch']})", "",
          f"Training: `digitlab.train.fit` on {report['images']} MNIST train (and val) images per epoch, "
          f"{report['epochs']} epochs, the first left out; train + val images per second of epoch, mean ± std "
          f"over the epochs. Reading: the bundled reader on the 1 MP photo of benchmarks/read_speed.py, "
          f"median of {report['runs']} reads. Competing processes: each a CPU-bound Python loop (one core). "
          f"Other users of the machine load it too: the last column is the 1-minute load average before the "
          f"row's measurements (mean), its competing processes included.", "",
          "| competing processes | threads | " + " | ".join(f"{p} images/s" for p in report["presets"])
          + " | read ms (1 MP photo) | load before |", "|---:|---:|" + "---:|" * (len(report["presets"]) + 2)]
    for r in report["results"]:
        shown = "0 (torch default: " + str(r["torch_threads"]) + ")" if r["threads"] == 0 else str(r["threads"])
        cells = []
        for p in report["presets"]:
            rates = r["train"][p]["images_per_s"]
            sd = statistics.stdev(rates) if len(rates) > 1 else 0.0
            cells.append(f"{statistics.mean(rates):.0f} ± {sd:.0f}")
        load = statistics.mean([r["read"]["load_before"], *(r["train"][p]["load_before"] for p in report["presets"])])
        md.append(f"| {r['load']} | {shown} | " + " | ".join(cells) + f" | {r['read']['median_ms']:.1f} | {load:.2f} |")
    return "\n".join(md)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data-dir", default=os.environ.get("DIGITLAB_DATA"))
    parser.add_argument("--loads", default="0,1,2", help="numbers of competing CPU-bound processes")
    parser.add_argument("--presets", default=",".join(PRESETS), help="training presets to time")
    parser.add_argument("--images", type=int, default=4096, help="train (and val) images per epoch")
    parser.add_argument("--epochs", type=int, default=3, help="epochs per run; the first is left out")
    parser.add_argument("--runs", type=int, default=15, help="timed reads per measurement")
    parser.add_argument("--dry-run", action="store_true", help="one load, tiny runs, nothing saved")
    parser.add_argument("--worker", nargs="+", help=argparse.SUPPRESS)  # train PRESET THREADS | read THREADS
    args = parser.parse_args()
    if args.worker:
        kind, *rest = args.worker
        result = (train_worker(rest[0], int(rest[1]), args.data_dir, args.images, args.epochs) if kind == "train"
                  else read_worker(int(rest[0]), args.data_dir, args.runs))
        print(json.dumps(result))
        return
    if args.dry_run:
        args.loads, args.images, args.epochs, args.runs = "1", 512, 2, 2
    presets = args.presets.split(",")

    import torch

    started, load_at_start = time.perf_counter(), os.getloadavg()[0]
    results = []
    for load in (int(n) for n in args.loads.split(",")):
        procs = busy_processes(load)
        try:
            for threads in THREADS:
                row = {"load": load, "threads": threads,
                       "train": {p: measure(args, ["train", p, str(threads)]) for p in presets},
                       "read": measure(args, ["read", str(threads)])}
                row["torch_threads"] = row["read"]["torch_threads"]
                results.append(row)
                rates = "  ".join(f"{p} {statistics.mean(row['train'][p]['images_per_s']):.0f} img/s" for p in presets)
                print(f"competing {load}  threads {threads}:  {rates}  read {row['read']['median_ms']:.1f} ms",
                      flush=True)
        finally:
            for proc in procs:
                proc.kill()
                proc.wait()

    env = {"machine": platform.machine(), "processor": platform.processor() or platform.machine(),
           "cpus": os.cpu_count(), "torch": torch.__version__}
    report = {"benchmark": "threads", "env": env, "presets": presets, "images": args.images, "epochs": args.epochs,
              "runs": args.runs, "load_at_start": load_at_start, "results": results,
              "seconds": time.perf_counter() - started}
    md = markdown(report)
    if not args.dry_run:
        report_io.save("threads", report, md)
    print(md)


if __name__ == "__main__":
    main()
