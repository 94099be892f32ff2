"""Time to 99.0% and 99.5% MNIST test accuracy on this machine: digitlab against the canonical example.

Measured per seed, each run in a fresh process, wall time from process start to the moment the
target test accuracy is reported (test set checked at fixed intervals; the checks' cost is counted):

  (a) baseline: a faithful re-implementation of pytorch/examples mnist/main.py on the CPU (conv 32 ->
      conv 64 -> max-pool -> dropout -> FC 128 -> dropout -> FC 10, Adadelta lr 1.0, StepLR gamma 0.7,
      batch 64, a torch.utils.data.DataLoader over a per-item Dataset, test after every epoch, at most
      its default 14 epochs). Without an accelerator the example passes no shuffle flag; neither do we.
  (b) digitlab: `digitlab train --preset PRESET --stop-at TARGET` through the normal trainer, with the
      preset made for that target (PRESETS below).

    python benchmarks/time_to_accuracy.py --data-dir ../shared/datasets [--seeds 5] [--baseline-seeds 5]

The baseline runs for the --baseline-targets only (default 99.0%): its recipe is not built for 99.5%,
and one run of its 14 epochs costs about a quarter of an hour here.

Saves benchmarks/results/time_to_accuracy.{json,md}. `--dry-run` checks the harness in seconds.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import report as report_io  # beside this script

TARGETS = (0.99, 0.995)
PRESETS = {0.99: "mnist-fast", 0.995: "mnist-fast-995"}  # digitlab's preset for each target


# --- (a) the canonical example, kept as close to mnist/main.py as plain PyTorch allows ---------------

def baseline(seed: int, goal: float, data_dir: str, epochs: int, limit: int) -> dict:
    import numpy as np
    import torch
    import torch.nn as nn
    import torch.nn.functional as F
    import torch.optim as optim
    from PIL import Image
    from torch.optim.lr_scheduler import StepLR

    from digitlab.data import load_dataset  # only to read the IDX files; items are served like torchvision's

    class MNIST(torch.utils.data.Dataset):
        """torchvision.datasets.MNIST + ToTensor + Normalize((0.1307,), (0.3081,)), item by item."""

        def __init__(self, split):
            ds = load_dataset("mnist", split, data_dir=data_dir)
            self.data, self.targets = ds.images[:limit or None], ds.labels[:limit or None]

        def __len__(self):
            return len(self.data)

        def __getitem__(self, i):
            img = Image.fromarray(self.data[i].numpy(), mode="L")
            x = torch.from_numpy(np.array(img, np.uint8)).float().div(255).unsqueeze(0)
            return (x - 0.1307) / 0.3081, int(self.targets[i])

    class Net(nn.Module):
        def __init__(self):
            super().__init__()
            self.conv1 = nn.Conv2d(1, 32, 3, 1)
            self.conv2 = nn.Conv2d(32, 64, 3, 1)
            self.dropout1 = nn.Dropout(0.25)
            self.dropout2 = nn.Dropout(0.5)
            self.fc1 = nn.Linear(9216, 128)
            self.fc2 = nn.Linear(128, 10)

        def forward(self, x):
            x = F.max_pool2d(F.relu(self.conv2(F.relu(self.conv1(x)))), 2)
            x = torch.flatten(self.dropout1(x), 1)
            x = self.fc2(self.dropout2(F.relu(self.fc1(x))))
            return F.log_softmax(x, dim=1)

    torch.manual_seed(seed)
    train_loader = torch.utils.data.DataLoader(MNIST("train"), batch_size=64)
    test_loader = torch.utils.data.DataLoader(MNIST("test"), batch_size=1000)
    model = Net()
    optimizer = optim.Adadelta(model.parameters(), lr=1.0)
    scheduler = StepLR(optimizer, step_size=1, gamma=0.7)
    accuracy = 0.0
    for epoch in range(1, epochs + 1):
        model.train()
        for data, target in train_loader:
            optimizer.zero_grad()
            loss = F.nll_loss(model(data), target)
            loss.backward()
            optimizer.step()
        model.eval()
        correct = 0
        with torch.no_grad():
            for data, target in test_loader:
                correct += model(data).argmax(dim=1).eq(target).sum().item()
        accuracy = correct / len(test_loader.dataset)
        if accuracy >= goal:
            return {"reached": True, "unix_time": time.time(), "epochs": epoch, "test_accuracy": accuracy}
        scheduler.step()
    return {"reached": False, "unix_time": time.time(), "epochs": epochs, "test_accuracy": accuracy}


# --- measuring runs in fresh processes --------------------------------------------------------------

def timed(cmd: list[str]) -> tuple[float, int, str]:
    """Start time (unix), peak RSS in MB and stdout of a child process; a failing child aborts the benchmark."""
    with tempfile.TemporaryFile("w+") as out, tempfile.TemporaryFile("w+") as err:
        start = time.time()
        proc = subprocess.Popen(cmd, stdout=out, stderr=err, text=True)
        _, status, rusage = os.wait4(proc.pid, 0)  # this child's own rusage, unlike RUSAGE_CHILDREN
        proc.returncode = os.waitstatus_to_exitcode(status)
        out.seek(0), err.seek(0)
        if proc.returncode != 0:
            sys.exit(f"benchmark child failed ({' '.join(cmd)}):\n{err.read()[-2000:]}")
        return start, rusage.ru_maxrss // 1024, out.read()


def run_baseline(seed: int, target: float, args) -> dict:
    cmd = [sys.executable, __file__, "--data-dir", args.data_dir, "baseline", "--seed", str(seed),
           "--target", str(target), "--epochs", str(args.baseline_epochs), "--limit", str(args.limit)]
    start, peak, out = timed(cmd)
    r = json.loads(out.strip().splitlines()[-1])
    return {"seed": seed, "reached": r["reached"], "seconds": r["unix_time"] - start, "epochs": r["epochs"],
            "test_accuracy": r["test_accuracy"], "peak_mb": peak}


def run_digitlab(seed: int, target: float, args) -> dict:
    preset = args.preset or PRESETS.get(target, "mnist-fast")
    with tempfile.TemporaryDirectory() as tmp:
        cmd = [sys.executable, "-m", "digitlab.cli", "train", "--preset", preset, "--data-dir", args.data_dir,
               "--seed", str(seed), "--stop-at", str(target), "--out", f"{tmp}/run", "--no-progress",
               "--threads", str(args.threads)]
        if args.limit:
            cmd += ["--limit", str(args.limit)]
        start, peak, _ = timed(cmd)
        summary = json.loads(Path(f"{tmp}/run/summary.json").read_text())
    reached = summary["stopped_at_target"]
    return {"seed": seed, "preset": preset, "reached": reached is not None,
            "seconds": (reached["unix_time"] if reached else time.time()) - start,
            "epochs": reached["epochs"] if reached else summary["epochs"],
            "test_accuracy": summary["test_accuracy"], "peak_mb": peak}


def startup_seconds(repeats: int = 3) -> float:
    """Median wall time of a fresh Python that imports torch and torch._dynamo (which every torch.optim
    optimizer imports on its first step): the floor under any training process here."""
    times = []
    for _ in range(repeats):
        t = time.perf_counter()
        subprocess.run([sys.executable, "-c", "import torch, torch._dynamo"], check=True)
        times.append(time.perf_counter() - t)
    return statistics.median(times)


def aggregate(runs: list[dict]) -> dict:
    hit = [r for r in runs if r["reached"]]
    stats = {"runs": len(runs), "reached": len(hit)}
    for key in ("seconds", "epochs", "peak_mb"):
        values = [r[key] for r in hit]
        stats[key] = {"mean": statistics.fmean(values) if values else None,
                      "std": statistics.stdev(values) if len(values) > 1 else 0.0 if values else None}
    return stats


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data-dir", default=os.environ.get("DIGITLAB_DATA"))
    sub = parser.add_subparsers(dest="mode")
    child = sub.add_parser("baseline", help="(internal) one baseline run, printing a JSON line")
    child.add_argument("--seed", type=int, required=True)
    child.add_argument("--target", type=float, required=True)
    child.add_argument("--epochs", type=int, default=14)
    child.add_argument("--limit", type=int, default=0)
    parser.add_argument("--seeds", type=int, default=5, help="seeds for digitlab")
    parser.add_argument("--threads", type=int, default=0,
                        help="torch threads of each training run (default 0: every core, as the figures of "
                             "record were measured on a quiet machine; digitlab's own default is 1)")
    parser.add_argument("--baseline-seeds", type=int, default=5, help="seeds for the baseline (0: skip it)")
    parser.add_argument("--baseline-epochs", type=int, default=14, help="the example's default epoch count")
    parser.add_argument("--preset", help="one preset for every target (default: each target's own, PRESETS)")
    parser.add_argument("--targets", type=float, nargs="+", default=list(TARGETS))
    parser.add_argument("--baseline-targets", type=float, nargs="*", default=[0.99],
                        help="the targets the baseline runs for")
    parser.add_argument("--limit", type=int, default=0, help=argparse.SUPPRESS)
    parser.add_argument("--dry-run", action="store_true", help="tiny data, one seed, target 0.5: harness check")
    args = parser.parse_args()
    if args.mode == "baseline":
        print(json.dumps(baseline(args.seed, args.target, args.data_dir, args.epochs, args.limit)))
        return
    if args.dry_run:
        args.seeds, args.baseline_seeds, args.baseline_epochs, args.limit = 1, 1, 1, 2048
        args.targets = args.baseline_targets = [0.5]

    results: dict = {"targets": {}}
    for target in args.targets:
        entry = {}
        for name, runner, seeds in (("baseline", run_baseline, args.baseline_seeds),
                                    ("digitlab", run_digitlab, args.seeds)):
            if name == "baseline" and target not in args.baseline_targets:
                continue
            runs = []
            for seed in range(1, seeds + 1):
                r = runner(seed, target, args)
                runs.append(r)
                state = f"{r['seconds']:.1f}s" if r["reached"] else f"not reached ({r['test_accuracy']:.4f})"
                print(f"{name:<9} target {target:.3f} seed {seed}: {state}, {r['epochs']:.2f} epochs, "
                      f"{r['peak_mb']} MB", flush=True)
            entry[name] = {"seeds": runs, **aggregate(runs)}
            if name == "digitlab":
                entry[name]["preset"] = runs[0]["preset"]
        b, d = entry.get("baseline", {}), entry["digitlab"]
        if b.get("reached") and d["reached"]:
            entry["speedup"] = b["seconds"]["mean"] / d["seconds"]["mean"]
        results["targets"][f"{target:.3f}"] = entry

    import torch

    results["env"] = {"machine": platform.machine(), "cpus": os.cpu_count(), "torch": torch.__version__,
                      "python": platform.python_version(), "startup_seconds": startup_seconds(1 if args.dry_run else 3),
                      "baseline_targets": args.baseline_targets}
    md = render(results)
    print(md)
    if not args.dry_run:
        report_io.save("time_to_accuracy", results, md)


def render(results: dict) -> str:
    def cell(stats: dict, key: str, fmt: str) -> str:
        if not stats or not stats.get("reached"):
            return "not reached"
        return f"{stats[key]['mean']:{fmt}} ± {stats[key]['std']:{fmt}}"

    env = results["env"]
    lines = [f"# Time to accuracy on MNIST ({env['cpus']} CPUs, torch {env['torch']})", "",
             "Wall seconds from process start until the target test accuracy is reported; mean ± std over "
             "the seeds that reached it.", "",
             "| target | runner | reached | seconds | epochs | peak MB | speed-up |",
             "|---|---|---:|---:|---:|---:|---:|"]
    for target, entry in results["targets"].items():
        for name in ("baseline", "digitlab"):
            s = entry.get(name)
            if not s:
                continue
            label = "pytorch/examples mnist" if name == "baseline" else f"digitlab --preset {s['preset']}"
            speedup = f"{entry['speedup']:.1f}x" if name == "digitlab" and "speedup" in entry else ""
            lines.append(f"| {float(target):.1%} | {label} | {s['reached']}/{s['runs']} | "
                         f"{cell(s, 'seconds', '.1f')} | {cell(s, 'epochs', '.2f')} | {cell(s, 'peak_mb', '.0f')} | "
                         f"{speedup} |")
    skipped = [t for t in results["targets"] if float(t) not in env["baseline_targets"]]
    if skipped:
        lines += ["", f"The baseline ran for {', '.join(f'{t:.1%}' for t in env['baseline_targets'])} only."]
    lines += ["", f"Starting Python and importing torch and torch._dynamo (which every torch.optim optimizer "
                  f"imports on its first step) takes {env['startup_seconds']:.2f} s here."]
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    main()
