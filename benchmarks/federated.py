"""Federated benchmarks, through `digitlab.federated.run.federate` on Flower's simulation runtime:

    python benchmarks/federated.py tibetan --data-dir ../shared/datasets   # the published TibetanMNIST protocol

`tibetan`: MobileNetV3-small on 2 clients (IID halves of the 85% training pool) that exchange models every
K local iterations, batch 32, SGD lr 0.01, 5000 iterations in all, for K = 500, 1000 (the published set-up)
and 2500; each client tests its local model every 100 iterations (the published per-client curves). Saves
benchmarks/results/federated-tibetan.{json,md} (each run's `test_accuracy`) and its figures. The
federation folders stay under --root (default runs/bench/), so an interrupted benchmark resumes.
`--k 1000` runs one interval (the saved results of the others are kept). `--dry-run` checks the harness in a
minute (20 iterations, 2 rounds).

    python benchmarks/federated.py fedavg --data-dir ../shared/datasets [--partition iid|shards] [--rounds R]

`fedavg`: the FedAvg paper's MNIST set-up (its CNN, 100 clients, C = 0.1, E = 5, B = 10, SGD): test accuracy
every round and the first round at 99%, IID and pathological non-IID (label shards); resumable, so a long
non-IID run can be continued with a larger --rounds. Saves federated-fedavg-mnist.{json,md} and its figure.

    python benchmarks/federated.py faults --data-dir ../shared/datasets

`faults`: fastcnn on MNIST, 10 IID clients, 5 rounds of 100 local steps; per strategy (FedAvg and the robust
ones), test accuracy with no fault, with 20% of the clients dropping out each round, and with 1 malicious
client of 10 that sends its update scaled 50x. Saves federated-faults.{json,md}.

    python benchmarks/federated.py privacy --data-dir ../shared/datasets

`privacy`: (1) accuracy against epsilon: fastcnn (33,914 weights) on MNIST, 100 IID clients all in every
round, 10 rounds of 10 local steps, central DP (server-side clipping C = 0.5) at several noise multipliers, with the
accountant's client-level epsilon at delta = 1e-5; (2) overhead: 10 clients, 4 rounds of 50 local steps,
plain FedAvg against SecAgg+ and both DP clippings: seconds and bytes per round (rounds 2-4; round 1
carries the runtime's start). Saves federated-privacy.{json,md} and a figure. Time it on a quiet machine.
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


def federation(name: str, train: dict, federation: dict, args) -> dict:
    """One federation in args.root/name (resumed if it was interrupted; only read if it is complete)."""
    from digitlab.federated.config import FedConfig
    from digitlab.federated.history import read_rows
    from digitlab.federated.run import federate
    from digitlab.train.config import TrainConfig

    cfg = TrainConfig.from_dict({**train, "data_dir": args.data_dir})
    fed = FedConfig.from_dict(federation)
    out = args.root / name
    t0 = time.perf_counter()
    summary = federate(cfg, fed, out, progress=False, log=lambda line: None)
    wall = time.perf_counter() - t0
    rounds = [r for r in read_rows(out / "rounds.csv") if r["round"] >= 1]
    print(f"{name}: test accuracy {summary['test_accuracy']:.4f} after {summary['rounds']} rounds ({wall:.0f}s)")
    return {"name": name, "summary": summary, "rounds": rounds, "wall_seconds": wall,
            "folder": report_io.portable(out)}


CNN_MNIST = {"dataset": "mnist", "model": "fastcnn", "batch_size": 32, "optimizer": "sgd", "lr": 0.05,
               "momentum": 0.9}


def first_round_at(rounds: list[dict], target: float) -> int | None:
    return next((r["round"] for r in rounds if r["test_accuracy"] >= target), None)


FEDAVG_VARIANTS = {  # beside the paper's plain FedAvg: what digitlab tried to need fewer rounds
    "plain": ({}, {}),
    "lr0.1": ({"lr": 0.1}, {}),
    "fedavgm": ({}, {"strategy": "fedavgm", "server_lr": 1.0, "server_momentum": 0.5}),
    "fedprox": ({}, {"strategy": "fedprox", "proximal_mu": 0.01}),
}


def run_fedavg(args) -> None:
    """Rounds to 99% in the FedAvg paper's MNIST set-up."""
    from digitlab.federated.presets import get_fed_preset

    saved = report_io.RESULTS / "federated-fedavg-mnist.json"
    runs = {(r["partition"], r.get("variant", "plain")): r
            for r in json.loads(saved.read_text())["runs"]} if saved.is_file() else {}
    for partition in args.partition:
        for variant in args.variant:
            preset = get_fed_preset(f"fedavg-mnist-{partition}")
            train_changes, fed_changes = FEDAVG_VARIANTS[variant]
            rounds = 1 if args.dry_run else args.rounds or preset.federation["rounds"]
            fed = {**preset.federation, **fed_changes, "rounds": rounds}
            train = {**preset.train, **train_changes, **({"model": "lenet5"} if args.dry_run else {})}
            name = f"fedavg-mnist-{partition}" + ("" if variant == "plain" else f"-{variant}")
            run = federation(name, train, fed, args)
            curve = [(r["round"], r["test_accuracy"]) for r in run["rounds"]]
            runs[partition, variant] = {
                "partition": partition, "variant": variant, "preset": preset.name, "published": preset.published,
                "rounds": len(curve), "round_at_99": first_round_at(run["rounds"], 0.99),
                "test_accuracy": curve[-1][1], "best_test_accuracy": max(a for _, a in curve),
                "seconds_per_round": sum(r["seconds"] for r in run["rounds"][1:]) / max(1, len(curve) - 1),
                "wall_seconds": sum(r["seconds"] for r in run["rounds"]), "curve": curve, "train": train,
                "federation": fed, "folder": run["folder"]}
    if args.dry_run:
        print(json.dumps(list(runs.values()), indent=1)[:2000])
        return
    runs = dict(sorted(runs.items(), key=lambda kv: (kv[0][0], list(FEDAVG_VARIANTS).index(kv[0][1]))))
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7, 4))
    for r in runs.values():
        ax.plot([c[0] for c in r["curve"]], [100 * c[1] for c in r["curve"]],
                label=f"{r['partition']}, {r['variant']}", ls="-" if r["partition"] == "iid" else "--")
    ax.axhline(99, color="grey", ls=":", lw=0.8)
    ax.set(xlabel="round", ylabel="test accuracy (%)", ylim=(95, 100),
           title="FedAvg, the paper's MNIST CNN: 100 clients, C = 0.1, E = 5, B = 10")
    ax.legend(fontsize=8)
    FIGURES.mkdir(parents=True, exist_ok=True)
    fig.tight_layout()
    fig.savefig(FIGURES / "federated-fedavg-mnist.png", dpi=110)
    lines = ["# FedAvg on MNIST: the paper's set-up", "",
             "The FedAvg paper's CNN (conv 5x5 32, pool, conv 5x5 64, pool, FC 512, 10; 1,663,370 weights), 100 "
             "clients, C = 0.1, E = 5, B = 10, SGD (plain: lr 0.05, no momentum); the MNIST test set scored every "
             "round. Variants: `lr0.1` client lr 0.1; `fedavgm` server momentum 0.5 (server lr 1); `fedprox` mu "
             "0.01. The paper's own round counts to 99% (its Table 2, E = 5, B = 10) are quoted from memory of "
             "the paper and were not re-checked against it here.", "",
             "| partition | variant | rounds run | first round at 99% | paper (Table 2) | last round | best | "
             "s / round |", "|---|---|---:|---:|---|---:|---:|---:|"]
    for r in runs.values():
        at = r["round_at_99"] if r["round_at_99"] is not None else f"not within {r['rounds']}"
        lines.append(f"| {r['partition']} | {r['variant']} | {r['rounds']} | {at} | {r['published']} | "
                     f"{100 * r['test_accuracy']:.2f}% | {100 * r['best_test_accuracy']:.2f}% | "
                     f"{r['seconds_per_round']:.0f} |")
    lines += ["", "![test accuracy per round](figures/federated-fedavg-mnist.png)"]
    report_io.save("federated-fedavg-mnist", {"env": env(args), "runs": list(runs.values())}, "\n".join(lines))


FAULT_STRATEGIES = ["fedavg", "fedmedian", "fedtrimmedavg", "krum", "multikrum", "bulyan"]
FAULTS = {"none": {}, "20% dropout": {"dropout": 0.2}, "1 malicious of 10": {"malicious": 1, "attack_scale": 50.0}}


def run_faults(args) -> None:
    base = {"clients": 10, "rounds": 2 if args.dry_run else 5, "local_steps": 5 if args.dry_run else 100}
    rows = []
    for strategy in (["fedavg", "krum"] if args.dry_run else FAULT_STRATEGIES):
        for fault, values in FAULTS.items():
            name = f"faults-{strategy}-{fault.split()[0].replace('%', '')}"
            run = federation(name, CNN_MNIST, {**base, "strategy": strategy, **values}, args)
            rows.append({"strategy": strategy, "fault": fault, "test_accuracy": run["summary"]["test_accuracy"],
                         "curve": [r["test_accuracy"] for r in run["rounds"]],
                         "failed_replies": run["summary"]["failed_replies"], "folder": run["folder"]})
    lines = ["# Federated training under faults", "",
             f"fastcnn (33,914 weights) on MNIST, 10 IID clients, {base['rounds']} rounds of "
             f"{base['local_steps']} local steps (batch "
             "32, SGD lr 0.05, momentum 0.9), every client in every round. Faults: 20% of the clients fail each "
             "round after training (a seeded coin per client and round); one client of 10 sends its update scaled "
             "50x every round. Test accuracy after the last round (MNIST test set):", "",
             "| strategy | " + " | ".join(FAULTS) + " |", "|---|" + "---:|" * len(FAULTS)]
    for strategy in dict.fromkeys(r["strategy"] for r in rows):
        cells = [next(r for r in rows if r["strategy"] == strategy and r["fault"] == f) for f in FAULTS]
        lines.append(f"| {strategy} | " + " | ".join(f"{100 * c['test_accuracy']:.2f}%" for c in cells) + " |")
    if args.dry_run:
        print("\n".join(lines))
        return
    report_io.save("federated-faults", {"env": env(args), "train": CNN_MNIST, "federation": base, "rows": rows},
                   "\n".join(lines))


DP_NOISE = [0.0, 0.3, 1.0, 3.0]
OVERHEAD_MODES = {"plain FedAvg": {}, "SecAgg+": {"secure_aggregation": True},
                  "DP, server-side clipping": {"dp_noise": 1.0, "dp_clip": 0.5},
                  "DP, client-side clipping": {"dp_noise": 1.0, "dp_clip": 0.5, "dp_clipping": "client"}}


def run_privacy(args) -> None:
    dp_base = {"clients": 20 if args.dry_run else 100, "rounds": 2 if args.dry_run else 10, "local_steps": 10}
    sweep = []
    for noise in (DP_NOISE[:2] if args.dry_run else DP_NOISE):
        values = {**dp_base, "dp_noise": noise, "dp_clip": 0.5} if noise else dp_base
        run = federation(f"privacy-dp-z{noise:g}", CNN_MNIST, values, args)
        sweep.append({"noise_multiplier": noise, "clip": 0.5 if noise else None,
                      "epsilon": run["summary"]["epsilon"], "delta": run["summary"]["delta"],
                      "test_accuracy": run["summary"]["test_accuracy"],
                      "curve": [r["test_accuracy"] for r in run["rounds"]], "folder": run["folder"]})
    over_base = {"clients": 10, "rounds": 2 if args.dry_run else 4, "local_steps": 5 if args.dry_run else 50}
    overhead = []
    for mode, values in OVERHEAD_MODES.items():
        slug = mode.split(",")[0].lower().replace(" ", "-").replace("+", "plus") + (
            "-client" if values.get("dp_clipping") == "client" else "")
        run = federation(f"privacy-overhead-{slug}", CNN_MNIST, {**over_base, **values}, args)
        later = run["rounds"][1:]  # round 1 includes the simulation runtime's start
        overhead.append({"mode": mode, "test_accuracy": run["summary"]["test_accuracy"],
                         "seconds_per_round": sum(r["seconds"] for r in later) / len(later),
                         "bytes_sent_per_round": sum(r["bytes_sent"] for r in later) / len(later),
                         "bytes_received_per_round": sum(r["bytes_received"] for r in later) / len(later),
                         "epsilon": run["summary"]["epsilon"], "folder": run["folder"]})
    plain = overhead[0]
    lines = ["# Federated privacy: accuracy against epsilon, and the cost of SecAgg+ and DP", "",
             "## Accuracy against epsilon", "",
             f"fastcnn (33,914 weights) on MNIST, {dp_base['clients']} IID clients all in every round, "
             f"{dp_base['rounds']} rounds of "
             f"{dp_base['local_steps']} local steps (batch 32, SGD lr 0.05, momentum 0.9). Central DP through "
             "Flower's DifferentialPrivacyServerSideFixedClipping: each client's update clipped to L2 norm 0.5, "
             "Gaussian noise of std z x 0.5 / clients added to the average; epsilon is client-level, from "
             "Flower's RDP accountant at delta = 1e-5 with no amplification by sampling claimed.", "",
             "| noise multiplier z | epsilon (delta = 1e-5) | test accuracy |", "|---:|---:|---:|"]
    for r in sweep:
        eps = "no DP (infinite)" if r["epsilon"] is None else f"{r['epsilon']:.3g}"
        lines.append(f"| {r['noise_multiplier']:g} | {eps} | {100 * r['test_accuracy']:.2f}% |")
    lines += ["", "![accuracy against epsilon](figures/federated-privacy.png)", "",
              "## Overhead per round", "",
              f"10 IID clients, {over_base['rounds']} rounds of {over_base['local_steps']} local steps; means over "
              "rounds 2 onwards. Bytes: every record of every message of the round (SecAgg+'s four stages "
              "included), framing aside.", "",
              "| mode | s / round | vs plain | bytes sent / round | bytes received / round | vs plain (received) | "
              "test accuracy |", "|---|---:|---:|---:|---:|---:|---:|"]
    for r in overhead:
        lines.append(f"| {r['mode']} | {r['seconds_per_round']:.2f} | "
                     f"{r['seconds_per_round'] / plain['seconds_per_round']:.2f}x | "
                     f"{r['bytes_sent_per_round'] / 1e6:.2f} MB | {r['bytes_received_per_round'] / 1e6:.2f} MB | "
                     f"{r['bytes_received_per_round'] / plain['bytes_received_per_round']:.2f}x | "
                     f"{100 * r['test_accuracy']:.2f}% |")
    lines += ["", "The DP rows' accuracy shows why client-level DP needs many clients: with 10 clients the noise on "
              "the average has std z C / 10 = 0.05 per weight, which no model survives; the sweep above uses 100."]
    if args.dry_run:
        print("\n".join(lines))
        return
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6, 4))
    private = [r for r in sweep if r["epsilon"] is not None]
    ax.plot([r["epsilon"] for r in private], [100 * r["test_accuracy"] for r in private], "o-", label="central DP")
    for r in private:
        ax.annotate(f"z = {r['noise_multiplier']:g}", (r["epsilon"], 100 * r["test_accuracy"]),
                    textcoords="offset points", xytext=(4, 4), fontsize=8)
    no_dp = next((r for r in sweep if r["epsilon"] is None), None)
    if no_dp:
        ax.axhline(100 * no_dp["test_accuracy"], color="grey", ls="--", lw=0.8, label="no DP")
    ax.set(xscale="log", xlabel="epsilon (client level, delta = 1e-5)", ylabel="test accuracy (%)",
           title=f"fastcnn, MNIST, {dp_base['clients']} clients, {dp_base['rounds']} rounds")
    ax.legend()
    FIGURES.mkdir(parents=True, exist_ok=True)
    fig.tight_layout()
    fig.savefig(FIGURES / "federated-privacy.png", dpi=110)
    report_io.save("federated-privacy", {"env": env(args), "train": CNN_MNIST, "dp": dp_base, "sweep": sweep,
                                         "overhead_federation": over_base, "overhead": overhead},
                   "\n".join(lines))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("which", choices=["tibetan", "fedavg", "faults", "privacy"])
    parser.add_argument("--data-dir", default=os.environ.get("DIGITLAB_DATA"))
    parser.add_argument("--root", type=Path, default=Path("runs/bench"))
    parser.add_argument("--dry-run", action="store_true", help="a minute's check of the harness; saves nothing")
    parser.add_argument("--k", type=lambda t: [int(v) for v in t.split(",")], default=[500, 1000, 2500],
                        help="tibetan: the exchange intervals to run, e.g. 1000 (default 500,1000,2500; results "
                             "of other K already saved are kept)")
    parser.add_argument("--partition", type=lambda t: t.split(","), default=["iid", "shards"],
                        help="fedavg: iid, shards or both (default iid,shards)")
    parser.add_argument("--rounds", type=int, help="fedavg: rounds to run (default: the preset's)")
    parser.add_argument("--variant", type=lambda t: t.split(","), default=["plain"],
                        help=f"fedavg: {', '.join(FEDAVG_VARIANTS)} (default plain)")
    args = parser.parse_args()
    if args.dry_run:
        args.root = args.root / "dry-run"
    {"tibetan": run_tibetan, "fedavg": run_fedavg, "faults": run_faults, "privacy": run_privacy}[args.which](args)


if __name__ == "__main__":
    main()
