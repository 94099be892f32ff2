"""Federated benchmarks, through `digitlab.federated.run.federate` on Flower's simulation runtime:

    python benchmarks/federated.py tibetan --data-dir ../shared/datasets   # the published TibetanMNIST protocol

`tibetan`: MobileNetV3-small on 2 clients (IID halves of the 85% training pool) that exchange models every
K local iterations, batch 32, SGD lr 0.01, 5000 iterations in all, for K = 500, 1000 (the published set-up)
and 2500; each client tests its local model every 100 iterations (the published per-client curves). Saves
benchmarks/results/federated-tibetan.{json,md} (each run's `test_accuracy`) and its figures. The
federation folders stay under --root (default runs/bench/), so an interrupted benchmark resumes.
`--k 1000` runs one interval (the saved results of the others are kept). `--dry-run` checks the harness in a
minute (20 iterations, 2 rounds).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import time
from pathlib import Path

import report as report_io  # beside this script

FIGURES = report_io.RESULTS / "figures"
PUBLISHED_TIBETAN = 0.9594  # test accuracy, 2 clients exchanging every 1000 iterations


def env(args) -> dict:
    import flwr
    import torch

    return {"cpus": os.cpu_count(), "torch": torch.__version__, "flwr": flwr.__version__,
            "python": platform.python_version(), "dry_run": args.dry_run}


def run_tibetan(args) -> None:
    from digitlab.federated.config import FedConfig
    from digitlab.federated.presets import get_fed_preset
    from digitlab.federated.run import federate
    from digitlab.train.config import TrainConfig

    preset = get_fed_preset("tibetan-exchange")
    total = 40 if args.dry_run else 5000
    runs = []
    for k in ((20,) if args.dry_run else args.k):
        cfg = TrainConfig.from_dict({**preset.train, "data_dir": args.data_dir})
        fed = FedConfig.from_dict({**preset.federation, "local_steps": k, "rounds": total // k,
                                   "eval_every": 10 if args.dry_run else 100})
        out = args.root / f"federated-tibetan-k{k}"
        resumed = out.exists()
        t0 = time.perf_counter()
        summary = federate(cfg, fed, out, progress=False)
        wall = time.perf_counter() - t0
        figures = []
        FIGURES.mkdir(parents=True, exist_ok=True)
        for name in ("rounds.png", "client-curves.png"):
            if (out / name).is_file() and not args.dry_run:
                shutil.copyfile(out / name, FIGURES / f"federated-tibetan-k{k}-{name}")
                figures.append(f"figures/federated-tibetan-k{k}-{name}")
        runs.append({"exchange_every": k, "rounds": summary["rounds"], "iterations": k * summary["rounds"],
                     "test_accuracy": summary["test_accuracy"], "best_test_accuracy": summary["best_test_accuracy"],
                     "wall_seconds": wall, "resumed": resumed, "bytes_sent": summary["bytes_sent"],
                     "bytes_received": summary["bytes_received"], "folder": report_io.portable(out),
                     "figures": figures})
        print(f"K={k}: test accuracy {summary['test_accuracy']:.4f} in {wall:.0f}s")
    saved = report_io.RESULTS / "federated-tibetan.json"
    if saved.is_file() and not args.dry_run:  # runs of other K measured before stay
        done = {r["exchange_every"] for r in runs}
        runs = sorted([r for r in json.loads(saved.read_text())["runs"] if r["exchange_every"] not in done] + runs,
                      key=lambda r: r["exchange_every"])
    config = {**preset.train, "data_dir": Path(args.data_dir).name if args.data_dir else None}
    report = {"protocol": preset.name, "description": preset.description, "train": config,
              "federation": preset.federation, "published_test_accuracy": PUBLISHED_TIBETAN, "env": env(args),
              "runs": runs}
    lines = ["# Federated TibetanMNIST: model exchange every K iterations", "",
             f"{preset.description}. Test set: the 15% of TibetanMNIST's one split held out of both clients. "
             f"Published: {100 * PUBLISHED_TIBETAN:.2f}% test with K = 1000.", "",
             "| K (iterations between exchanges) | rounds | test accuracy | best round | vs published | wall |",
             "|---:|---:|---:|---:|---|---:|"]
    for r in runs:
        verdict = "above" if r["test_accuracy"] > PUBLISHED_TIBETAN else "below"
        lines.append(f"| {r['exchange_every']} | {r['rounds']} | {100 * r['test_accuracy']:.2f}% | "
                     f"{100 * r['best_test_accuracy']:.2f}% | {verdict} | {r['wall_seconds'] / 60:.1f} min |")
    lines += ["", f"{report['env']['cpus']} CPUs, one thread per client, Flower {report['env']['flwr']}."]
    for r in runs:
        lines += [f"![K={r['exchange_every']}]({f})" for f in r["figures"]]
    if args.dry_run:
        print("\n".join(lines))
        return
    report_io.save("federated-tibetan", report, "\n".join(lines))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("which", choices=["tibetan"])
    parser.add_argument("--data-dir", default=os.environ.get("DIGITLAB_DATA"))
    parser.add_argument("--root", type=Path, default=Path("runs/bench"))
    parser.add_argument("--dry-run", action="store_true", help="a minute's check of the harness; saves nothing")
    parser.add_argument("--k", type=lambda t: [int(v) for v in t.split(",")], default=[500, 1000, 2500],
                        help="tibetan: the exchange intervals to run, e.g. 1000 (default 500,1000,2500; results "
                             "of other K already saved are kept)")
    args = parser.parse_args()
    if args.dry_run:
        args.root = args.root / "dry-run"
    {"tibetan": run_tibetan}[args.which](args)


if __name__ == "__main__":
    main()
