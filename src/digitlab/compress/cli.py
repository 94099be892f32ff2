"""The `digitlab prune` and `digitlab quantize` commands, added to digitlab's parser by ``add_commands``.
Building the parser imports no torch and no ONNX Runtime; each command loads them when it runs."""

from __future__ import annotations

import argparse

from digitlab.errors import DigitlabError


def add_commands(command) -> None:
    add_prune(command)
    add_quantize(command)


def add_prune(command) -> None:
    from digitlab.compress.config import COSTS, GRANULARITIES, SCHEDULES, STORAGES, PruneConfig
    from digitlab.configs import add_config_options

    p = command("prune", "prune a trained classifier: zero weights or cut channels, fine-tuning as it goes",
                cmd_prune,
                description="Prune a classifier checkpoint and fine-tune it with the one training loop: single "
                            "weights (unstructured magnitude pruning; the checkpoint stores only the survivors) or "
                            "whole channels (structured: the layers shrink, so the model also runs faster), every "
                            "layer at once in steps or layer by layer in order of cost (the energy-aware "
                            "schedule). Prints the per-layer table; writes the checkpoint, prune.json and "
                            "layers.png to --out.")
    p.add_argument("checkpoint", nargs="?", metavar="RUN",
                   help="a run folder or .safetensors file (default: the bundled MNIST classifier)")
    p.add_argument("--out", metavar="DIR", required=True, help="folder for the pruned checkpoint")
    p.add_argument("--no-progress", action="store_true", help="no progress bars")
    add_config_options(p, PruneConfig, "pruning settings", {"granularity": GRANULARITIES, "schedule": SCHEDULES,
                                                            "cost": COSTS, "storage": STORAGES})


def cmd_prune(args: argparse.Namespace) -> None:
    from digitlab.compress.config import PruneConfig
    from digitlab.compress.pruning import format_layer_table, prune
    from digitlab.configs import config_from_dict, config_values
    from digitlab.table import format_table

    config = config_from_dict(PruneConfig, config_values(args, PruneConfig), "prune")
    s = prune(args.checkpoint, args.out, config, progress=not args.no_progress)
    print(format_table(format_layer_table(s["layers_before"], s["layers_after"])))
    size = f"{s['bytes']:,} bytes" + (f" ({s['bytes_before'] / s['bytes']:.1f}x smaller than {s['bytes_before']:,})"
                                      if s["bytes_before"] else "")
    print(f"saved {args.out}: {size}; test accuracy {100 * s['test_accuracy_before']:.2f}% -> "
          f"{100 * s['test_accuracy']:.2f}%; {s['seconds']:.0f}s")


def add_quantize(command) -> None:
    p = command("quantize", "8-bit quantization through ONNX Runtime, checked on test images",
                cmd_quantize,
                description="Quantize a classifier to 8 bits (QDQ: uint8 weights and activations) with ONNX "
                            "Runtime, the activation ranges calibrated on real training images of its dataset. "
                            "The file keeps the model's meta (classes, normalisation, calibration) and runs in "
                            "`digitlab.engine.Recognizer`; fp32 and int8 are then compared on real test images.")
    p.add_argument("source", nargs="?", metavar="SOURCE",
                   help="a run folder, .safetensors file or .onnx file written by `digitlab export` (default: the "
                        "bundled MNIST classifier)")
    p.add_argument("--out", metavar="FILE", required=True, help="the int8 file to write, e.g. model-int8.onnx")
    p.add_argument("--data-dir", metavar="DIR", help="where the model's dataset is (default: where its run found "
                                                     "it, then $DIGITLAB_DATA, then the cache)")
    p.add_argument("--calibration", type=int, default=1000, metavar="N",
                   help="training images that set the activation ranges (default 1000)")
    p.add_argument("--method", choices=("minmax", "entropy", "percentile"), default="minmax",  # quantize.METHODS
                   help="how the ranges come from them: the extremes (minmax, default), the least KL divergence "
                        "(entropy) or the 99.999th percentile (percentile)")
    p.add_argument("--no-per-channel", dest="per_channel", action="store_false",
                   help="one weight scale per tensor (default: one per output channel)")
    p.add_argument("--eval-images", type=int, default=0, metavar="N",
                   help="test images to compare fp32 and int8 on (default 0: all of them)")
    p.add_argument("--max-drop", type=float, default=0.1, metavar="PT",
                   help="accuracy points int8 may lose (on the run's validation images: quantization-aware "
                        "fine-tuning; on the test images: a warning) (default 0.1)")
    p.add_argument("--qat", choices=("auto", "always", "never"), default="auto",  # quantization.QAT_MODES
                   help="quantization-aware fine-tuning of a run's model: when post-training int8 loses more than "
                        "--max-drop on validation (auto, default), always, or never; the int8 file that does "
                        "better on validation is written")
    p.add_argument("--qat-epochs", type=float, default=1.0, metavar="E",
                   help="passes over the run's training images (default 1)")
    p.add_argument("--qat-lr", type=float, default=0.0, metavar="LR",
                   help="its learning rate, cosine-decayed (default 0: a tenth of the run's)")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")


def cmd_quantize(args: argparse.Namespace) -> None:
    import sys

    from digitlab.compress.quantization import METHODS, quantize

    if args.calibration < 1:
        raise DigitlabError(f"--calibration must be >= 1, got {args.calibration}")
    r = quantize(args.source, args.out, data_dir=args.data_dir, calibration=args.calibration, method=args.method,
                 per_channel=args.per_channel, eval_images=args.eval_images, max_drop=args.max_drop, qat=args.qat,
                 qat_epochs=args.qat_epochs, qat_lr=args.qat_lr, progress=not args.no_progress)
    if r.qat is not None:
        print(qat_line(r.qat))
    print(f"wrote {r.path} ({r.bytes:,} bytes, {r.fp32_bytes / r.bytes:.1f}x smaller than fp32 {r.fp32_bytes:,} "
          f"bytes); {r.source}: fp32 {100 * r.fp32_accuracy:.2f}%, int8 {100 * r.int8_accuracy:.2f}% "
          f"({0.0 - r.drop:+.2f} pt), same class for {100 * r.agreement:.2f}%")
    if r.degraded:
        others = " or ".join(m for m in METHODS if m != args.method)
        tune = ", or the run's checkpoint (it can be fine-tuned)" if str(args.source).endswith(".onnx") else ""
        print(f"digitlab: warning: int8 lost {r.drop:.2f} points, more than --max-drop {args.max_drop:g}: try "
              f"--method {others}, or more --calibration images{tune}", file=sys.stderr)


def qat_line(qat: dict) -> str:
    """One line on the quantization-aware fine-tune of a QuantizeReport: what ran, or why not."""
    if not qat["ran"]:
        return f"quantization-aware fine-tuning: not run ({qat['why']})"
    chosen = "the fine-tuned model's" if qat["chosen"] == "qat" else "the post-training one (it did no worse)"
    return (f"quantization-aware fine-tuning: {qat['epochs']:g} epochs ({qat['steps']} steps, lr {qat['lr']:g}); on "
            f"{qat['decided_on']}: fp32 {100 * qat['fp32_val_accuracy']:.2f}%, post-training int8 "
            f"{100 * qat['post_training_val_accuracy']:.2f}%, after fine-tuning {100 * qat['qat_val_accuracy']:.2f}%; "
            f"wrote {chosen}")
