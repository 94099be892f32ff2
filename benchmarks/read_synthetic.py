"""Reading synthetic digit strings built from MNIST *test* digits: exact-match accuracy on the easy and
hard variants, with the failures sorted by pipeline stage.

The strings are drawn by digitlab.read.synth at fixed seeds (easy: seed 1, hard: seed 2; 500 images
each by default); see synth.EASY and synth.HARD for every nuisance and its strength. Exact match is
also broken down by the nuisances each image holds (Sample.nuisances). Prints a table and saves JSON +
Markdown under benchmarks/results/. ReadConfig's thresholds were tuned on other seeds (easy 11 and 21,
hard 12 and 13), never on the reported ones.

    python benchmarks/read_synthetic.py --data-dir ../shared/datasets   # the bundled MNIST reader
    python benchmarks/read_synthetic.py --checkpoint runs/lenet5-improved --data-dir ../shared/datasets
    python benchmarks/read_synthetic.py --checkpoint ... --write /tmp/synth   # also write the images
    python benchmarks/read_synthetic.py --checkpoint ... --verifier runs/verifier  # (digitlab train-verifier)
    python benchmarks/read_synthetic.py --checkpoint ... --line-reader none  # without the run's line reader
"""

from __future__ import annotations

import argparse
import dataclasses
import os
import platform
import time
from pathlib import Path

import numpy as np
import report as report_io
import torch

from digitlab.calibrate import fit_temperature, logit_reference
from digitlab.checkpoint import Checkpoint, load_checkpoint
from digitlab.data import load_dataset
from digitlab.infer import predict_logits
from digitlab.pretrained import bundled
from digitlab.read import ReadConfig, fieldreader, fields, linereader, synth, verifier
from digitlab.read.evaluate import FAILURES, evaluate_items

SEEDS = {"easy": 1, "hard": 2, "cheque": 3, "cell": 4}
NUISANCES = ("none of these", "touching", "overlapping", "ruling", "boxes", "inverted")
FIELD_NUISANCES = ("none of these", *fields.NUISANCES)
# --ablations: the hard variant with one group of nuisances taken out at a time (same seed), to show
# which stage loses the strings
ABLATIONS = {
    "hard without touching/overlapping pairs": dict(touch=0.0, overlap=0.0),
    "hard with one line": dict(lines=(1, 1)),
    "hard without ruling lines and boxes": dict(ruling=0.0, boxes=0.0),
    "hard with one line, no touching pairs": dict(lines=(1, 1), touch=0.0, overlap=0.0),
}


def calibrated_checkpoint(path: str, data_dir: str | None, log=print) -> Checkpoint:
    """Load a checkpoint; if it lacks meta["temperature"] or meta["logit_reference"], fit them on
    held-out MNIST *train* digits (the run's own validation split when splits.npz is there) and say so."""
    ckpt = load_checkpoint(path)
    missing = [k for k in ("temperature", "logit_reference") if k not in ckpt.meta]
    if not missing:
        return ckpt
    train = load_dataset(ckpt.meta.get("dataset", "mnist"), "train", data_dir=data_dir)
    splits = Path(path) / "splits.npz" if Path(path).is_dir() else Path(path).parent / "splits.npz"
    if splits.is_file():
        idx, where = torch.from_numpy(np.load(splits)["val"]), "the run's validation split (splits.npz)"
    else:
        idx, where = torch.arange(len(train) - 5000, len(train)), "the last 5000 train images (may have been seen)"
    logits = predict_logits(ckpt.model, train.images[idx], ckpt.normalization)
    if "temperature" in missing:
        ckpt.meta["temperature"] = fit_temperature(logits, train.labels[idx])
    if "logit_reference" in missing:
        ckpt.meta["logit_reference"] = logit_reference(logits)
    log(f"note: the checkpoint has no {' or '.join(missing)}; fitted on {len(idx)} held-out train digits "
        f"from {where}: temperature {ckpt.meta['temperature']:.3f}, logit reference "
        f"{ckpt.meta['logit_reference']:.2f}")
    return ckpt


def helper_path(given: str | None, checkpoint: str, kind: str) -> str | None:
    """Where the verifier or line reader (kind) in use came from, for the reports: the one named, else the
    one in the run folder (CHECKPOINT/verifier, CHECKPOINT/line-reader); None for none."""
    if given == "none":
        return None
    found = given or (verifier if kind == "verifier" else linereader).beside(checkpoint)
    return report_io.portable(found) if found else None


def add_reader_options(parser: argparse.ArgumentParser) -> None:
    """The options the reading benchmarks share: the checkpoint, the data and the thread count."""
    parser.add_argument("--checkpoint", default=os.environ.get("DIGITLAB_CHECKPOINT") or str(bundled()),
                        help="run folder or .safetensors (default $DIGITLAB_CHECKPOINT, else the bundled MNIST "
                             "reader)")
    parser.add_argument("--data-dir", default=os.environ.get("DIGITLAB_DATA"))
    parser.add_argument("--threads", type=int, default=1, help="torch threads (default 1: the machine is shared)")
    parser.add_argument("--verifier", default=os.environ.get("DIGITLAB_VERIFIER"),
                        help="verifier checkpoint (`digitlab train-verifier`); default $DIGITLAB_VERIFIER, else "
                             "CHECKPOINT/verifier when it exists; 'none': without one")
    parser.add_argument("--line-reader", default=os.environ.get("DIGITLAB_LINE_READER"),
                        help="line reader checkpoint (`digitlab train-line-reader`); default $DIGITLAB_LINE_READER, "
                             "else CHECKPOINT/line-reader when it exists; 'none': without one")


def open_reader(args) -> tuple[Checkpoint, Checkpoint | None, Checkpoint | None, np.ndarray, np.ndarray]:
    """The calibrated checkpoint, the verifier and the line reader (each or None) and the MNIST *test*
    digits the synthetic images are drawn from."""
    torch.set_num_threads(args.threads)
    ckpt = calibrated_checkpoint(args.checkpoint, args.data_dir)
    checker = helper_path(args.verifier, args.checkpoint, "verifier")
    second = helper_path(args.line_reader, args.checkpoint, "line-reader")
    images, labels = synth.load_test_digits(args.data_dir)
    return (ckpt, checker and verifier.load_verifier(checker), second and linereader.load_line_reader(second),
            images, labels)


def score_variant(samples, name, seed, n, field, ckpt, cfg, checker, second, field_reader, raw_predictions,
                  labels) -> dict:
    """Read one variant's samples (field: in field mode, with the field reader) and score them."""
    report, items = evaluate_items(((str(i), s.image, s.text) for i, s in enumerate(samples)), ckpt, cfg,
                                   verifier=checker, line_reader=second, field=field,
                                   field_reader=field_reader if field else None)
    if field:  # what was written, separators and marks included
        raws = [s.raw[0] if s.raw else s.text for s in samples]
        report["raw_exact_match"] = float(np.mean([r.raw == t for r, t in zip(items, raws)]))
    digits = [len(s.text.replace(" ", "")) for s in samples]
    # The ceiling: images whose every digit the model reads right on its own 28x28 MNIST image
    used = np.array(sorted({i for s in samples for line in s.indices for i in line}))
    right = dict(zip(used.tolist(), (raw_predictions[used] == labels[used]).tolist()))
    ceiling = float(np.mean([all(right[i] for line in s.indices for i in line) for s in samples]))
    model_failed = sum(1 for s, r in zip(samples, items)
                       if r.failure and not all(right[i] for line in s.indices for i in line))
    # Exact match per nuisance the generator put in (an image counts under each of its nuisances)
    groups: dict[str, list[bool]] = {}
    for s, r in zip(samples, items):
        for kind in s.nuisances or ("none of these",):
            groups.setdefault(kind, []).append(r.failure is None)
    report["by_nuisance"] = {k: {"images": len(v), "exact_match": float(np.mean(v))}
                             for k, v in sorted(groups.items())}
    report.update(variant=name, seed=seed, n=n, mean_digits=float(np.mean(digits)),
                  ceiling=ceiling, failures_with_a_model_error=model_failed,
                  mean_lines=float(np.mean([len(s.lines) for s in samples])),
                  megapixels=float(np.mean([s.image.size for s in samples]) / 1e6))
    f = report["failures"]
    print(f"{name:<5} seed {seed} n {n}: exact match {100 * report['exact_match']:.1f}% (ceiling "
          f"{100 * ceiling:.1f}%), digit accuracy "
          f"{100 * report['digit_accuracy']:.2f}%, rejection {100 * report['rejection_rate']:.2f}%, "
          f"median {1000 * report['median_seconds']:.0f} ms; failures "
          + ", ".join(f"{k} {v}" for k, v in f.items() if v), flush=True)
    return report


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    add_reader_options(parser)
    parser.add_argument("--n", type=int, default=500, help="images per variant")
    parser.add_argument("--variants", default="easy,hard,cheque,cell",
                        help="easy and hard: pages of strings (digitlab.read.synth); cheque and cell: one number "
                             "in its field (digitlab.read.fields)")
    parser.add_argument("--write", metavar="DIR", help="also write the images and labels.csv (for eval-read)")
    parser.add_argument("--ablations", action="store_true", help="also the hard variant minus one nuisance group")
    parser.add_argument("--field-reader", default=os.environ.get("DIGITLAB_FIELD_READER"),
                        help="also read the cheque and cell fields in field mode with this field reader "
                             "(`digitlab train-field-reader`); default $DIGITLAB_FIELD_READER, else "
                             "CHECKPOINT/field-reader when it exists; 'none': without")
    parser.add_argument("--dry-run", action="store_true", help="20 images per variant, nothing saved")
    args = parser.parse_args()
    if args.field_reader is None:
        found = fieldreader.beside(args.checkpoint)
        args.field_reader = str(found) if found else "none"
    if args.dry_run:
        args.n = 20
    ckpt, checker, second, images, labels = open_reader(args)
    raw_predictions = predict_logits(ckpt.model, torch.from_numpy(images), ckpt.normalization).argmax(1).numpy()
    cfg = ReadConfig()

    started = time.perf_counter()
    results = {}
    runs = [(name, synth.VARIANTS.get(name) or fields.VARIANTS[name], SEEDS[name]) for name in args.variants.split(",")]
    if args.ablations:
        runs += [(name, dataclasses.replace(synth.HARD, **change), SEEDS["hard"]) for name, change in ABLATIONS.items()]
    for name, spec, seed in runs:
        samples = fields.generate_fields(images, labels, spec, args.n, seed) if name in fields.VARIANTS \
            else synth.generate(images, labels, spec, args.n, seed)
        if args.write and name in (*synth.VARIANTS, *fields.VARIANTS):
            synth.write_samples(Path(args.write) / name, samples, name, seed)
        modes = [(name, False)]
        if name in fields.VARIANTS and args.field_reader != "none":
            modes.append((f"{name}, field reader", True))
        for label, field in modes:
            results[label] = score_variant(samples, label, seed, args.n, field, ckpt, cfg, checker, second,
                                           args.field_reader, raw_predictions, labels)

    env = {"machine": platform.machine(), "cpus": os.cpu_count(), "torch": torch.__version__,
           "threads": torch.get_num_threads(), "load_average": os.getloadavg()}
    verifying = {"path": helper_path(args.verifier, args.checkpoint, "verifier"), "model": checker.meta["model"],
                 "weights_sha256": checker.meta["weights_sha256"], "metrics": checker.meta["metrics"]} \
        if checker is not None else None
    lines = {"path": helper_path(args.line_reader, args.checkpoint, "line-reader"),
             "weights_sha256": second.meta["weights_sha256"], "metrics": second.meta["metrics"]} \
        if second is not None else None
    out = {"benchmark": "read_synthetic", "checkpoint": report_io.portable(args.checkpoint),
           "weights_sha256": ckpt.meta["weights_sha256"], "model": ckpt.meta["model"],
           "verifier": verifying, "line_reader": lines,
           "temperature": ckpt.meta["temperature"], "logit_reference": ckpt.meta["logit_reference"],
           "config": cfg.to_dict(), "env": env, "results": results,
           "field_reader": report_io.portable(args.field_reader) if args.field_reader != "none" else None,
           "seconds": time.perf_counter() - started}
    md = [f"# Reading synthetic digit strings ({ckpt.meta['model']}, {report_io.portable(args.checkpoint)})", "",
          "Strings of 1-10 MNIST *test* digits drawn by `digitlab.read.synth` (see `EASY`, `HARD`) and numbers in "
          "their fields by `digitlab.read.fields` (`CHEQUE`: courtesy amounts, `CELL`: register cells), read by "
          "`digitlab.read.read` with the default `ReadConfig`, "
          + (f"verifier {verifying['model']} ({verifying['path']}, trained on crops of MNIST *train* strings; "
             f"one-digit-or-not accuracy {100 * verifying['metrics']['val_single_accuracy']:.1f}% on held-out "
             f"crops)" if verifying else "no verifier")
          + (f", line reader {lines['path']} (trained on lines of MNIST *train* strings; "
             f"{100 * lines['metrics']['val_line_accuracy']:.1f}% of held-out lines read exactly on its own)"
             if lines else ", no line reader") + ". Exact match: the whole image's string right "
          "(all lines). Ceiling: images whose every digit the model reads right on its own clean 28x28 "
          "MNIST image (what a perfect pipeline would reach). Digit accuracy: 1 - edit distance / digits.", "",
          "| variant | seed | images | digits/image | lines/image | exact match | ceiling | digit accuracy | "
          "rejected | median ms |", "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|"]
    for name, r in results.items():
        md.append(f"| {name} | {r['seed']} | {r['n']} | {r['mean_digits']:.1f} | {r['mean_lines']:.1f} | "
                  f"{100 * r['exact_match']:.1f}% | {100 * r['ceiling']:.1f}% | {100 * r['digit_accuracy']:.2f}% | "
                  f"{100 * r['rejection_rate']:.2f}% | {1000 * r['median_seconds']:.0f} |")
    md += ["", "Failures by stage (each failed image counted once, at the first stage that went wrong):", "",
           "| variant | " + " | ".join(FAILURES) + " |", "|---|" + "---:|" * len(FAILURES)]
    md += [f"| {name} | " + " | ".join(str(r["failures"][k]) for k in FAILURES) + " |" for name, r in results.items()]
    md += ["", "Exact match by nuisance (`Sample.nuisances`; an image counts under each one it has):", "",
           "| variant | " + " | ".join(NUISANCES) + " |", "|---|" + "---:|" * len(NUISANCES)]
    for name, r in results.items():
        if name.split(",")[0] in fields.VARIANTS:
            continue
        cells = [r["by_nuisance"].get(k) for k in NUISANCES]
        md.append(f"| {name} | " + " | ".join(f"{100 * c['exact_match']:.0f}% of {c['images']}" if c else "-"
                                              for c in cells) + " |")
    md += ["", "Exact match when the least confident images are rejected (to a person, as a cheque desk does), "
               "and, in field mode, the number as written (separators and marks) read exactly; then the mean "
               "confidence and how far it is from the share read exactly (expected calibration error, 10 bins):", "",
           "| variant | 0% rejected | 5% | 10% | as written (field mode) | mean confidence | calibration error |",
           "|---|---:|---:|---:|---:|---:|---:|"]
    for name, r in results.items():
        at = r["exact_at_rejection"]
        raw = f"{100 * r['raw_exact_match']:.1f}%" if "raw_exact_match" in r else "-"
        md.append(f"| {name} | {100 * at['0']:.1f}% | {100 * at['0.05']:.1f}% | {100 * at['0.1']:.1f}% | {raw} | "
                  f"{100 * r['mean_confidence']:.1f}% | {100 * r['calibration_error']:.1f} pt |")
    field_runs = [name for name in results if name.split(",")[0] in fields.VARIANTS]
    if field_runs:
        md += ["", "Fields (`digitlab.read.fields`): exact match by nuisance (an image counts under each one it has; "
                   "the text is the digits only):", "",
               "| nuisance | " + " | ".join(field_runs) + " |", "|---|" + "---:|" * len(field_runs)]
        for k in FIELD_NUISANCES:
            cells = [results[name]["by_nuisance"].get(k) for name in field_runs]
            if any(cells):
                md.append(f"| {k} | " + " | ".join(f"{100 * c['exact_match']:.0f}% of {c['images']}" if c else "-"
                                                   for c in cells) + " |")
    md += ["", "Failed images that hold a digit the model misreads even on its clean 28x28 image: " + ", ".join(
        f"{name} {r['failures_with_a_model_error']} of {sum(r['failures'].values())}" for name, r in results.items())]
    md += ["", *(f"- {k}: {v}" for k, v in FAILURES.items()), "",
           f"Temperature {ckpt.meta['temperature']:.3f}, logit reference {ckpt.meta['logit_reference']:.2f}; "
           f"torch {env['torch']}, {env['threads']} thread(s), load average {env['load_average'][0]:.1f} "
           f"on {env['cpus']} CPUs."]
    if not args.dry_run:
        report_io.save("read_synthetic", out, "\n".join(md))
    print("\n".join(md))


if __name__ == "__main__":
    main()
