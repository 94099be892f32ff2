"""Reading digit strings in other scripts: the same pipeline with a TibetanMNIST or Kannada-MNIST model.

Each checkpoint (a training run folder) reads strings drawn by digitlab.read.synth from its own test
digits (synth.held_out_digits: the run's test split, never trained or selected on), at the synthetic
benchmark's seeds (easy 1, hard 2), with the run's own verifier when it has one (RUN/verifier, made by
`digitlab train-verifier --out RUN/verifier --run RUN` from the run's training digits) and line reader
(RUN/line-reader, `digitlab train-line-reader --out RUN/line-reader --run RUN`). The field variants
(cheque 3, cell 4: digitlab.read.fields) are read in field mode by the run's field reader
(RUN/field-reader, `digitlab train-field-reader --out RUN/field-reader --run RUN`), or by the page reader
when it has none. For comparison, pass an MNIST run too. Prints a table and saves JSON + Markdown under
benchmarks/results/.

    python benchmarks/read_scripts.py --data-dir ../shared/datasets \\
        --checkpoint runs/tibetan --checkpoint runs/kannada --checkpoint runs/lenet5-improved
    python benchmarks/read_scripts.py --data-dir ../shared/datasets --checkpoint runs/tibetan \\
        --checkpoint runs/kannada --variants cheque,cell --name read_scripts-fields
"""

from __future__ import annotations

import argparse
import os
import platform
import time

import numpy as np
import report as report_io
import torch
from read_synthetic import SEEDS, calibrated_checkpoint

from digitlab.infer import predict_logits
from digitlab.read import ReadConfig, fieldreader, fields, linereader, synth, verifier
from digitlab.read.evaluate import evaluate_items


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--checkpoint", action="append", required=True, help="a training run folder (repeat)")
    parser.add_argument("--data-dir", default=os.environ.get("DIGITLAB_DATA"))
    parser.add_argument("--threads", type=int, default=1, help="torch threads (default 1: the machine is shared)")
    parser.add_argument("--n", type=int, default=500, help="images per variant")
    parser.add_argument("--variants", default="easy,hard")
    parser.add_argument("--dry-run", action="store_true", help="20 images per variant, nothing saved")
    parser.add_argument("--name", default="read_scripts", help="results file name (default read_scripts)")
    args = parser.parse_args()
    if args.dry_run:
        args.n = 20
    torch.set_num_threads(args.threads)
    cfg = ReadConfig()
    started = time.perf_counter()
    rows = []
    for run in args.checkpoint:
        ckpt = calibrated_checkpoint(run, args.data_dir)
        images, labels = synth.held_out_digits(run, args.data_dir)
        folder, lines = verifier.beside(run), linereader.beside(run)
        checker = verifier.load_verifier(folder) if folder else None
        second = linereader.load_line_reader(lines) if lines else None
        right = predict_logits(ckpt.model, torch.from_numpy(images), ckpt.normalization).argmax(1).numpy() == labels
        field_reader = fieldreader.beside(run)
        for name in args.variants.split(","):
            field = name in fields.VARIANTS and field_reader is not None
            if name in fields.VARIANTS:
                samples = fields.generate_fields(images, labels, fields.VARIANTS[name], args.n, SEEDS[name])
            else:
                samples = synth.generate(images, labels, synth.VARIANTS[name], args.n, SEEDS[name])
            report, _ = evaluate_items(((str(i), s.image, s.text) for i, s in enumerate(samples)), ckpt, cfg,
                                       verifier=checker, line_reader=second, field=field,
                                       field_reader=str(field_reader) if field else None)
            ceiling = float(np.mean([all(right[i] for line in s.indices for i in line) for s in samples]))
            row = {"run": report_io.portable(run), "weights_sha256": ckpt.meta["weights_sha256"],
                   "dataset": ckpt.meta["dataset"], "model": ckpt.meta["model"], "variant": name,
                   "seed": SEEDS[name], "n": args.n, "verifier": checker is not None,
                   "line_reader": second is not None, "field_reader": field, "held_out_digits": len(labels),
                   "digit_accuracy_28x28": float(right.mean()), "ceiling": ceiling,
                   **{k: report[k] for k in ("exact_match", "digit_accuracy", "rejection_rate", "failures",
                                             "median_seconds")}}
            rows.append(row)
            print(f"{row['dataset']:<14} {name:<5} exact match {100 * row['exact_match']:.1f}% (ceiling "
                  f"{100 * ceiling:.1f}%), digit accuracy {100 * row['digit_accuracy']:.2f}%, rejection "
                  f"{100 * row['rejection_rate']:.2f}%", flush=True)

    env = {"machine": platform.machine(), "cpus": os.cpu_count(), "torch": torch.__version__,
           "threads": torch.get_num_threads(), "load_average": os.getloadavg()}
    md = ["# Reading digit strings in other scripts", "",
          "Strings drawn by `digitlab.read.synth` (easy and hard variants, their usual seeds) or fields drawn "
          "by `digitlab.read.fields` (cheque and cell) from each run's "
          "own test digits (`synth.held_out_digits`), read by `digitlab.read.read` with the default "
          "`ReadConfig`, with the run's own verifier (`RUN/verifier`) and line reader (`RUN/line-reader`) "
          "where it has them; fields in field mode by the run's field reader (`RUN/field-reader`) where it "
          "has one. Ceiling: images "
          "whose every digit the model reads right on its own 28x28 test image. Failures by the first stage "
          "that went wrong (see read_synthetic.md).", "",
          "| dataset | model | run | verifier | line reader | field reader | held-out digits | 28x28 accuracy | "
          "variant | images | exact match | ceiling | digit accuracy | rejected | lines | too few | too many | "
          "misread |",
          "|---|---|---|---|---|---|---:|---:|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|"]
    for r in rows:
        f = r["failures"]
        md.append(f"| {r['dataset']} | {r['model']} | {r['run']} | {'yes' if r['verifier'] else 'no'} | "
                  f"{'yes' if r['line_reader'] else 'no'} | {'yes' if r.get('field_reader') else 'no'} | "
                  f"{r['held_out_digits']} | "
                  f"{100 * r['digit_accuracy_28x28']:.2f}% | {r['variant']} | {r['n']} | "
                  f"{100 * r['exact_match']:.1f}% | {100 * r['ceiling']:.1f}% | {100 * r['digit_accuracy']:.2f}% | "
                  f"{100 * r['rejection_rate']:.2f}% | "
                  + " | ".join(str(f[k]) for k in ("lines", "too_few", "too_many", "misread")) + " |")
    md += ["", f"torch {env['torch']}, {env['threads']} thread(s), load average {env['load_average'][0]:.1f} on "
               f"{env['cpus']} CPUs."]
    if not args.dry_run:
        report_io.save(args.name, {"benchmark": "read_scripts", "config": cfg.to_dict(), "env": env,
                                        "results": rows, "seconds": time.perf_counter() - started}, "\n".join(md))
    print("\n".join(md))


if __name__ == "__main__":
    main()
