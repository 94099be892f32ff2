"""The `digitlab` command: a thin layer over the Python API; bad input ends in one line, not a traceback."""

from __future__ import annotations

import argparse
import dataclasses
import json
import sys
from pathlib import Path

from digitlab.errors import DigitlabError
from digitlab.table import format_table


def cmd_datasets(args: argparse.Namespace) -> None:
    from digitlab.data import dataset_status, list_datasets, resolve_data_dir

    print(f"data root: {resolve_data_dir(args.data_dir)}")
    rows = [("dataset", "split", "images", "present", "location")]
    for spec in list_datasets():
        status = dataset_status(spec.name, args.data_dir)
        for split, size in spec.splits.items():
            st = status.get(split, {})
            rows.append((spec.name, split, f"{size:,}", "yes" if st.get("present") else "no", st.get("path", "")))
    print(format_table(rows))


def cmd_download(args: argparse.Namespace) -> None:
    from digitlab.data import get_spec, load_dataset

    for name in args.names:
        spec = get_spec(name)
        for split in args.split or spec.splits:
            data = load_dataset(name, split, data_dir=args.data_dir, download=True, progress=True)
            print(f"{name}/{split}: {len(data):,} images ready")


def cmd_models(args: argparse.Namespace) -> None:
    from digitlab.models import list_models, model_info

    rows = [("model", "params", "MACs/image", "description")]
    for name in list_models(args.pattern):
        info = model_info(name)
        rows.append((name, f"{info.params:,}", f"{info.macs / 1e6:.2f}M", info.description))
    print(format_table(rows))


def cmd_presets(args: argparse.Namespace) -> None:
    from digitlab.train import PRESETS

    rows = [("preset", "model", "dataset", "epochs", "published")]
    for p in PRESETS.values():
        cfg = p.config()
        rows.append((p.name, cfg.model, cfg.dataset, str(cfg.epochs), p.published))
    print(format_table(rows))


def cmd_train(args: argparse.Namespace) -> None:
    from digitlab.train import TrainConfig, fit, get_preset

    overrides = {f.name: getattr(args, f.name) for f in dataclasses.fields(TrainConfig)
                 if getattr(args, f.name, None) is not None}
    if args.dry_run:
        overrides.update(epochs=1, limit=512)
    cfg = None
    if not args.resume:
        cfg = get_preset(args.preset).config(**overrides) if args.preset else TrainConfig.from_dict(overrides)
    elif overrides:
        raise DigitlabError("--resume continues the run with its saved config; drop the other options")
    summary = fit(cfg, args.out, resume=args.resume, download=args.download, progress=not args.no_progress,
                  name=args.preset)
    if args.preset and not summary["diverged"]:
        preset = get_preset(args.preset)
        value = summary.get(preset.target_metric)
        verdict = "reached" if value is not None and value >= preset.target else "NOT reached"
        shown = "-" if value is None else f"{100 * value:.2f}%"
        print(f"{preset.name}: {preset.target_metric} {shown} vs published {preset.published}: "
              f"target {100 * preset.target:.2f}% {verdict}")
    if summary["diverged"]:
        raise SystemExit(1)


def cmd_eval(args: argparse.Namespace) -> None:
    from digitlab.infer import evaluate_checkpoint

    out = args.out or (Path(args.checkpoint) if Path(args.checkpoint).is_dir() else Path(args.checkpoint).parent)
    report = evaluate_checkpoint(args.checkpoint, args.dataset, args.split, args.data_dir, out,
                                 download=args.download)
    if args.json:
        print(json.dumps(report, indent=2))
        return
    print(f"{report['dataset']}/{report['split']}: {report['images']:,} images, "
          f"accuracy {100 * report['accuracy']:.2f}%, loss {report['loss']:.4f}")
    per_class = [(c, f"{100 * a:.2f}%") for c, a in report["per_class_accuracy"].items()]
    print(format_table([("class", "accuracy"), *per_class]))
    pairs = ", ".join(f"{d['true']}->{d['predicted']} ({d['count']})" for d in report["most_confused"])
    print(f"most confused: {pairs or 'none'}")
    print(f"confusion matrix: {report['confusion_png']}")


def cmd_predict(args: argparse.Namespace) -> None:
    from digitlab.infer import predict

    predictions = predict(args.images, args.checkpoint)
    if args.json:
        print(json.dumps([dataclasses.asdict(p) for p in predictions], indent=2))
        return
    for p in predictions:
        probs = " ".join(f"{q:.3f}" for q in p.probabilities)
        print(f"{p.source}: {p.label} ({100 * p.confidence:.1f}%)  probabilities [{probs}]")


def cmd_ensemble(args: argparse.Namespace) -> None:
    from digitlab.train import build_ensemble

    s = build_ensemble(args.runs, args.out, args.data_dir)
    members = ", ".join(f"{100 * a:.2f}%" for a in s["member_test_accuracy"])
    print(f"ensemble of {len(args.runs)} saved to {args.out}: test accuracy {100 * s['test_accuracy']:.2f}% "
          f"(members {members}); temperature {s['temperature']:.3f} fitted on "
          f"{s['temperature_val_errors']} misread validation images")


def cmd_runs(args: argparse.Namespace) -> None:
    from digitlab.train import format_runs, list_runs

    rows = list_runs(args.root)
    print(format_runs(rows) if rows else f"no runs under {args.root}")


def _add_config_options(parser: argparse.ArgumentParser) -> None:
    """One --option per TrainConfig field; values are checked by TrainConfig.from_dict."""
    from digitlab.train.config import TrainConfig

    group = parser.add_argument_group("config (each overrides the preset; see `digitlab presets`)")
    for f in dataclasses.fields(TrainConfig):
        default = f.default_factory() if f.default_factory is not dataclasses.MISSING else f.default
        shown = ":".join(f"{r:g}" for r in default) if isinstance(default, tuple) else default
        group.add_argument(f"--{f.name.replace('_', '-')}", dest=f.name, default=None, metavar="V",
                           help=f"(default {shown!r})")


def build_parser() -> argparse.ArgumentParser:
    from digitlab import __version__

    parser = argparse.ArgumentParser(prog="digitlab", description="Handwritten digit recognition.")
    parser.add_argument("--version", action="version", version=f"digitlab {__version__}")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    p = sub.add_parser("datasets", help="list datasets, their splits and whether their files are present")
    p.add_argument("--data-dir", help="data root (default: $DIGITLAB_DATA, then the per-user cache)")
    p.set_defaults(func=cmd_datasets)

    p = sub.add_parser("download", help="fetch datasets from their mirrors (SHA-256 checked)")
    p.add_argument("names", nargs="+", help="dataset names, e.g. mnist fashion-mnist")
    p.add_argument("--split", action="append", help="only this split (repeatable; default all)")
    p.add_argument("--data-dir", help="data root (default: $DIGITLAB_DATA, then the per-user cache)")
    p.set_defaults(func=cmd_download)

    p = sub.add_parser("models", help="list models with parameter count and multiply-accumulates")
    p.add_argument("pattern", nargs="?", help="shell-style filter, e.g. 'lenet*'")
    p.set_defaults(func=cmd_models)

    p = sub.add_parser("presets", help="list training presets and the published figures they reproduce")
    p.set_defaults(func=cmd_presets)

    p = sub.add_parser("train", help="train a model (from a preset and/or options)")
    p.add_argument("--preset", help="start from this preset (see `digitlab presets`)")
    p.add_argument("--out", help="run folder (default runs/<time>-<name>/)")
    p.add_argument("--resume", action="store_true", help="continue the interrupted run in --out")
    p.add_argument("--dry-run", action="store_true", help="quick check: 1 epoch on 512 images per split")
    p.add_argument("--no-progress", action="store_true", help="no progress bar; one line per epoch")
    p.add_argument("--download", action="store_true", help="fetch missing dataset files from the mirrors")
    _add_config_options(p)
    p.set_defaults(func=cmd_train)

    p = sub.add_parser("eval", help="evaluate a checkpoint on a dataset split")
    p.add_argument("checkpoint", help="run folder or model.safetensors")
    p.add_argument("--dataset", help="default: the checkpoint's dataset")
    p.add_argument("--split", default="test")
    p.add_argument("--data-dir")
    p.add_argument("--out", help="folder for the confusion matrix PNG (default: the checkpoint's folder)")
    p.add_argument("--download", action="store_true", help="fetch missing dataset files from the mirrors")
    p.add_argument("--json", action="store_true", help="print the report as JSON")
    p.set_defaults(func=cmd_eval)

    p = sub.add_parser("predict", help="classify single-digit image files")
    p.add_argument("checkpoint", help="run folder or model.safetensors")
    p.add_argument("images", nargs="+", help="image files (any size, either polarity)")
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=cmd_predict)

    p = sub.add_parser("ensemble", help="average the logits of finished runs into one calibrated checkpoint")
    p.add_argument("runs", nargs="+", help="run folders of one dataset, trained with the same --split and --split-seed")
    p.add_argument("--out", required=True, help="folder for the ensemble checkpoint")
    p.add_argument("--data-dir", help="data root (default: the runs' own)")
    p.set_defaults(func=cmd_ensemble)

    from digitlab.read.cli import add_commands  # read, eval-read, train-verifier

    add_commands(sub)

    p = sub.add_parser("runs", help="list runs in a table")
    p.add_argument("root", nargs="?", default="runs", help="folder holding run folders (default runs/)")
    p.set_defaults(func=cmd_runs)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        args.func(args)
    except DigitlabError as e:
        print(f"digitlab: error: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("digitlab: interrupted (a training run continues with `digitlab train --resume --out DIR`)",
              file=sys.stderr)
        return 130
    except BrokenPipeError:
        return 0
    return 0


if __name__ == "__main__":
    sys.exit(main())
