"""The inference benchmark: compressed models and their speed, measured side by side in one run.

    python benchmarks/inference.py build --data-dir ../shared/datasets     # prune and train what is measured
    python benchmarks/inference.py measure --data-dir ../shared/datasets   # time it (on a quiet machine)

`build` makes, under --root (default runs/bench/inference/; each step is skipped when its folder is complete):
- from the most accurate MNIST model (mnist-best, the bundled classifier): `c50`, half of every layer's
  channels cut by the energy-aware schedule (layers in order of multiply-accumulates, a local fine-tune after
  each, a global one at the end); `c50-w80`, 80% of c50's remaining weights zeroed in 4 prune -> fine-tune
  steps, stored sparse with int8 weights (the compressed model: >= 40x smaller, <= 0.1 point lost, faster);
  `c75`, three quarters of the channels cut (the LeNet-class model: <= 0.5M multiply-accumulates, >= 99.0%);
- TibetanMNIST: MobileNetV3-small trained by the `mobilenetv3-tibetan` preset, and `tibetan-c50`, the
  published energy-aware pruning (half the channels of each layer, in order of the layers' energy estimate).

`measure` runs `digitlab.bench` over all of them (PyTorch eager fp32, ONNX Runtime fp32, ONNX Runtime int8):
bytes raw and gzipped, weights, MACs, full test-set accuracy, images/s at batch 1, 64 and 1024, p50/p99 at
batch 1; checks the targets; saves benchmarks/results/inference.{json,md}. `report` rewrites the Markdown from
the saved JSON. `--dry-run` checks the harness in a few minutes on sklearn digits and saves nothing.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
from pathlib import Path

import report as report_io  # beside this script

LENET_CLASS = {"macs": 500_000, "accuracy": 0.99, "images_per_s": 150_000, "p50_us": 30.0}
COMPRESSED = {"smaller": 40.0, "drop": 0.001}  # at least 40x fewer bytes, at most 0.1 point lost


def steps(args) -> list[tuple[str, str | None, dict]]:
    """(name, source name or None for the bundled classifier, prune settings) in build order."""
    if args.dry_run:
        return [("c50", "base", {"granularity": "channels", "schedule": "energy", "amount": 0.5,
                                 "local_epochs": 0.2, "finetune_epochs": 1}),
                ("c50-w80", "c50", {"amount": 0.8, "steps": 2, "finetune_epochs": 1, "storage": "sparse-int8"})]
    return [
        ("c50", None, {"granularity": "channels", "schedule": "energy", "amount": 0.5, "local_epochs": 0.25,
                       "finetune_epochs": 3}),
        ("c50-w80", "c50", {"amount": 0.8, "steps": 4, "finetune_epochs": 1, "storage": "sparse-int8"}),
        ("c75", None, {"granularity": "channels", "schedule": "energy", "amount": 0.75, "local_epochs": 0.25,
                       "finetune_epochs": 4}),
        ("tibetan-c50", "tibetan-mobilenetv3", {"granularity": "channels", "schedule": "energy", "cost": "energy",
                                    "amount": 0.5, "local_epochs": 0.25, "finetune_epochs": 8}),
    ]


def complete(folder: Path) -> bool:
    return (folder / "model.json").is_file() and ((folder / "prune.json").is_file() or
                                                  (folder / "summary.json").is_file())


def run_build(args) -> None:
    from digitlab.compress.config import PruneConfig
    from digitlab.compress.pruning import prune
    from digitlab.train import fit, get_preset
    from digitlab.train.config import TrainConfig

    root = args.root
    if args.dry_run:
        root = root / "dry-run"
        shutil.rmtree(root, ignore_errors=True)
        fit(TrainConfig(model="fastcnn", dataset="digits", epochs=3, batch_size=32, lr=3e-3), root / "base",
            progress=False)
    for name, source, settings in steps(args):
        if complete(root / name):
            print(f"{name}: done")
            continue
        if source == "tibetan-mobilenetv3" and not complete(root / source):  # trained first, resumable
            cfg = get_preset("mobilenetv3-tibetan").config(data_dir=args.data_dir, threads=args.threads)
            fit(cfg, root / source, resume=(root / source / "state.pt").is_file())
        shutil.rmtree(root / name, ignore_errors=True)
        config = PruneConfig(**settings, data_dir=args.data_dir, threads=args.threads)
        s = prune(None if source is None else root / source, root / name, config, progress=False)
        print(f"{name}: test accuracy {100 * s['test_accuracy_before']:.2f}% -> {100 * s['test_accuracy']:.2f}%, "
              f"{s['total_after']['nonzero']:,} weights, {s['total_after']['macs']:,} MACs, {s['bytes']:,} bytes")


def models(args) -> list[tuple[str, Path | None]]:
    root = args.root / "dry-run" if args.dry_run else args.root
    if args.dry_run:
        return [("base", root / "base"), ("c50", root / "c50"), ("c50-w80", root / "c50-w80")]
    named = [("mnist-best", None), ("mnist-best c50", root / "c50"), ("mnist-best c50-w80", root / "c50-w80"),
             ("mnist-best c75", root / "c75")]
    if complete(root / "tibetan-c50") or not args.skip_tibetan:
        named += [("tibetan mobilenetv3", root / "tibetan-mobilenetv3"),
                  ("tibetan mobilenetv3 c50", root / "tibetan-c50")]
    return named


def run_measure(args) -> None:
    import onnxruntime
    import torch

    from digitlab.bench import bench

    named = models(args)
    missing = [str(p) for _, p in named if p is not None and not (p / "model.json").is_file()]
    if missing:
        raise SystemExit(f"not built yet: {', '.join(missing)} (run `build` first)")
    rows = bench([p for _, p in named], labels=[n for n, _ in named], data_dir=args.data_dir,
                 seconds=0.2 if args.dry_run else args.seconds)
    by = {(r.model, r.format): r for r in rows}
    findings: dict = {}
    if not args.dry_run:
        findings = targets(by, args.root)
    report = {"env": {"cpus": os.cpu_count(), "cpu": platform.processor() or platform.machine(),
                      "torch": torch.__version__, "onnxruntime": onnxruntime.__version__,
                      "python": platform.python_version()},
              "rows": [r.to_dict() for r in rows], "targets": findings,
              "pruning": {} if args.dry_run else pruning_tables(args.root)}
    lines = markdown(rows, findings, report)
    if args.dry_run:
        print("\n".join(lines))
        return
    report_io.save("inference", report, "\n".join(lines))


def run_report(args) -> None:
    """Rewrite inference.md from the saved inference.json (after a change of wording, without timing again)."""
    from digitlab.bench import BenchRow

    report = json.loads((report_io.RESULTS / "inference.json").read_text())
    rows = [BenchRow(**{**r, "images_per_s": {int(b): v for b, v in r["images_per_s"].items()}})
            for r in report["rows"]]
    report_io.save("inference", report, "\n".join(markdown(rows, report["targets"], report)))


def best_speed(row) -> float:
    return max(v for b, v in row.images_per_s.items() if b > 1)


def targets(by: dict, root: Path) -> dict:
    """The issue's three targets, each with the figures that decide it."""
    lenet = by["mnist-best c75", "onnx"]
    eager = by["mnist-best c75", "pytorch"]
    base, small = by["mnist-best", "pytorch"], by["mnist-best c50-w80", "pytorch"]
    fast_base, fast_small = by["mnist-best", "onnx"], by["mnist-best c50-w80", "onnx"]
    found = {
        "tibetan": None if ("tibetan mobilenetv3", "onnx") not in by else {
            "test_accuracy": (tib := by["tibetan mobilenetv3", "onnx"]).test_accuracy,
            "test_accuracy_pruned": (tib_pruned := by["tibetan mobilenetv3 c50", "onnx"]).test_accuracy,
            "macs": tib.macs, "macs_pruned": tib_pruned.macs, "speedup_onnx": best_speed(tib_pruned) / best_speed(tib)}}
    return found | {
        "lenet_class": {
            "model": lenet.model, "macs": lenet.macs, "test_accuracy": lenet.test_accuracy,
            "images_per_s": best_speed(lenet), "p50_us": lenet.p50_us,
            "vs_pytorch_eager_batched": best_speed(lenet) / best_speed(eager),
            "vs_pytorch_eager_batch1": eager.p50_us / lenet.p50_us,
            "met": lenet.macs <= LENET_CLASS["macs"] and lenet.test_accuracy >= LENET_CLASS["accuracy"]
            and best_speed(lenet) >= LENET_CLASS["images_per_s"] and lenet.p50_us <= LENET_CLASS["p50_us"]},
        "compressed": {
            "model": small.model, "bytes": small.bytes, "bytes_fp32": base.bytes, "smaller": base.bytes / small.bytes,
            "test_accuracy": small.test_accuracy, "test_accuracy_fp32": base.test_accuracy,
            "drop": base.test_accuracy - small.test_accuracy,
            "speedup_onnx": best_speed(fast_small) / best_speed(fast_base),
            "speedup_batch1": fast_base.p50_us / fast_small.p50_us,
            "met": base.bytes / small.bytes >= COMPRESSED["smaller"]
            and base.test_accuracy - small.test_accuracy <= COMPRESSED["drop"] + 1e-9
            and best_speed(fast_small) > best_speed(fast_base)},
    }


def pruning_tables(root: Path) -> dict:
    """Each pruned model's per-layer table (before -> after) and its steps, from its prune.json."""
    out = {}
    for name in ("c50", "c50-w80", "c75", "tibetan-c50"):
        if not (root / name / "prune.json").is_file():
            continue
        s = json.loads((root / name / "prune.json").read_text())
        out[name] = {k: s[k] for k in ("config", "layers_before", "layers_after", "total_before", "total_after",
                                       "steps", "test_accuracy_before", "test_accuracy", "seconds")}
    return out


def markdown(rows, findings: dict, report: dict) -> list[str]:
    from digitlab.bench import format_rows

    table = format_rows(rows)
    env = report["env"]
    lines = ["# Inference: compressed models and their speed", "",
             f"{env['cpus']} CPU cores, torch {env['torch']}, ONNX Runtime {env['onnxruntime']}; all rows measured in "
             "one run. Batch 1 on one thread (p50/p99 of single calls); batches 64 and 1024 on every core. "
             "Timings are of the model call on normalised input; accuracy on the full test set (TibetanMNIST: the "
             "15% test share its run held out). `pytorch` bytes: the checkpoint's weights file as stored (the "
             "pruned ones sparse, c50-w80 also with int8 weights); `onnx`/`int8`: the ONNX file.", "",
             "| " + " | ".join(table[0]) + " |", "|" + "---|" * len(table[0])]
    lines += ["| " + " | ".join(r) + " |" for r in table[1:]]
    if findings:
        lc, cp, tb = findings["lenet_class"], findings["compressed"], findings["tibetan"]
        lines += ["", "## Targets", "",
                  f"- LeNet-class ({lc['model']}, {lc['macs']:,} MACs, {100 * lc['test_accuracy']:.2f}%): "
                  f"{lc['images_per_s']:,.0f} images/s batched (target 150,000), p50 {lc['p50_us']:.0f} µs at batch 1 "
                  f"(target 30); {lc['vs_pytorch_eager_batched']:.1f}x PyTorch eager batched, "
                  f"{lc['vs_pytorch_eager_batch1']:.1f}x at batch 1: **{'met' if lc['met'] else 'not met'}**.",
                  f"- Most accurate MNIST model compressed ({cp['model']}): {cp['bytes']:,} bytes against "
                  f"{cp['bytes_fp32']:,} (**{cp['smaller']:.1f}x smaller**, target 40x), test accuracy "
                  f"{100 * cp['test_accuracy']:.2f}% against {100 * cp['test_accuracy_fp32']:.2f}% "
                  f"({100 * cp['drop']:.2f} point lost, target <= 0.1), ONNX Runtime {cp['speedup_onnx']:.1f}x "
                  f"faster batched, {cp['speedup_batch1']:.1f}x at batch 1: **{'met' if cp['met'] else 'not met'}**."]
        if tb:
            lines.append(f"- TibetanMNIST MobileNetV3-small, energy-aware pruning (half the channels): test accuracy "
                         f"{100 * tb['test_accuracy']:.2f}% -> {100 * tb['test_accuracy_pruned']:.2f}%, MACs "
                         f"{tb['macs']:,} -> {tb['macs_pruned']:,}, ONNX Runtime {tb['speedup_onnx']:.1f}x faster "
                         "batched.")
    for name, p in report["pruning"].items():
        lines += ["", f"## Pruning {name}: {p['config']['granularity']}, {p['config']['schedule']} schedule, "
                  f"amount {p['config']['amount']}", "",
                  f"Test accuracy {100 * p['test_accuracy_before']:.2f}% -> {100 * p['test_accuracy']:.2f}%; "
                  f"{p['seconds'] / 60:.1f} min of pruning and fine-tuning.", "",
                  "| layer | shape | sparsity | weights (non-zero) | MACs (non-zero) |", "|---|---|---:|---:|---:|"]
        after = {r["layer"]: r for r in p["layers_after"]}
        for r in p["layers_before"] + [p["total_before"]]:
            a = after.get(r["layer"], p["total_after"])
            shape = "x".join(map(str, r["shape"]))
            if a["shape"] != r["shape"]:
                shape += " → " + "x".join(map(str, a["shape"]))
            lines.append(f"| {r['layer']} | {shape} | {100 * a['sparsity']:.1f}% | {r['nonzero']:,} → "
                         f"{a['nonzero']:,} | {r['nonzero_macs']:,} → {a['nonzero_macs']:,} |")
        if p["config"]["schedule"] == "energy":
            lines += ["", "Order and validation accuracy after each step: " + "; ".join(
                f"{s['step']} {100 * s['val_accuracy']:.2f}%" for s in p["steps"]) + "."]
    return lines


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("which", choices=["build", "measure", "report"])
    parser.add_argument("--data-dir", default=os.environ.get("DIGITLAB_DATA"))
    parser.add_argument("--root", type=Path, default=Path("runs/bench/inference"))
    parser.add_argument("--threads", type=int, default=2, help="training threads of build")
    parser.add_argument("--seconds", type=float, default=2.0, help="time per measurement")
    parser.add_argument("--skip-tibetan", action="store_true", help="leave out TibetanMNIST until it is built")
    parser.add_argument("--dry-run", action="store_true", help="a few minutes' check on digits; saves nothing")
    args = parser.parse_args()
    {"build": run_build, "measure": run_measure, "report": run_report}[args.which](args)


if __name__ == "__main__":
    main()
