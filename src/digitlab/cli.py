"""The `digitlab` command: a thin layer over the Python API; bad input ends in one line, not a traceback.

Every command takes its arguments the same way: its inputs are positional (images, a folder, runs), a
trained checkpoint is `--checkpoint RUN`, an output folder `--out DIR`, and the fields of its config
dataclass are `--field-name VALUE` options (configs.add_config_options). Building the parser imports
no torch, so that --help and --version answer at once.
"""

from __future__ import annotations

import argparse
import dataclasses
import difflib
import json
import os
import sys
from collections.abc import Iterable
from pathlib import Path

from digitlab.configs import add_config_options, config_values
from digitlab.errors import DigitlabError
from digitlab.table import format_table

CHECKPOINT_ENV = "DIGITLAB_CHECKPOINT"
DATA_DIR_HELP = "data root (default: $DIGITLAB_DATA, then the per-user cache)"


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

    if args.pretrained:
        from digitlab.pretrained import card, list_pretrained

        rows = [("pretrained", "dataset", "test accuracy", "bytes", "verifier", "line reader")]
        for name in list_pretrained(args.pattern):
            c = card(name.split(".", 1)[1])
            rows.append((name, c["dataset"], f"{100 * c['test_accuracy']:.2f}%" if c["test_accuracy"] else "-",
                         f"{c['bytes']:,}", "yes" if c["verifier"] else "no", "yes" if c["line_reader"] else "no"))
        print(format_table(rows))
        return

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

    values = config_values(args, TrainConfig)
    cfg = None
    if not refuse_settings_with_resume(args, values, args.preset, args.dry_run, args.from_study):
        if args.from_study and args.preset:
            raise DigitlabError("--from-study brings the whole config; drop --preset")
        if args.from_study:
            from digitlab.experiments.search import config_from_study

            storage = args.storage or os.environ.get("DIGITLAB_STORAGE")
            cfg = config_from_study(args.from_study, storage).replace(**values)
        else:
            cfg = get_preset(args.preset).config(**values) if args.preset else TrainConfig.from_dict(values)
        if args.dry_run:  # after the checks: a bad value is refused with --dry-run too
            cfg = cfg.replace(epochs=1, limit=min(cfg.limit or 512, 512))
    summary = fit(cfg, args.out, resume=args.resume, download=args.download, progress=not args.no_progress,
                  name=args.preset)
    preset = get_preset(args.preset) if args.preset else None
    # the published figure is for the preset's own dataset and test split; on other data there is nothing to compare
    if preset and not summary["diverged"] and (cfg.dataset, cfg.test_split) == (
            preset.config().dataset, preset.config().test_split):
        value = summary.get(preset.target_metric)
        verdict = "reached" if value is not None and value >= preset.target else "NOT reached"
        shown = "-" if value is None else f"{100 * value:.2f}%"
        print(f"{preset.name}: {preset.target_metric} {shown} vs published {preset.published}: "
              f"target {100 * preset.target:.2f}% {verdict}")
    if summary["diverged"]:
        raise SystemExit(1)


def refuse_settings_with_resume(args: argparse.Namespace, *settings) -> bool:
    """True with --resume, which continues a run with its saved config: then no setting may be given."""
    if args.resume and any(settings):
        raise DigitlabError("--resume continues the run with its saved config; drop the other settings")
    return args.resume


def cmd_eval(args: argparse.Namespace) -> None:
    from digitlab.infer import evaluate_checkpoint

    checkpoint = checkpoint_of(args)
    out = args.out
    if out is None and checkpoint is not None:  # beside the run's checkpoint; none for a bundled one
        from digitlab import pretrained

        folder = Path(checkpoint) if Path(checkpoint).is_dir() else Path(checkpoint).parent
        out = None if folder.resolve().is_relative_to(pretrained.ROOT.resolve()) else str(folder)
    report = evaluate_checkpoint(checkpoint, args.dataset, args.split, args.data_dir, out, download=args.download)
    if args.json:
        print(json.dumps(report, indent=2))
        return
    print(f"{report['dataset']}/{report['split']}: {report['images']:,} images, "
          f"accuracy {100 * report['accuracy']:.2f}%, loss {report['loss']:.4f}")
    per_class = [(c, f"{100 * a:.2f}%") for c, a in report["per_class_accuracy"].items()]
    print(format_table([("class", "accuracy"), *per_class]))
    pairs = ", ".join(f"{d['true']}->{d['predicted']} ({d['count']})" for d in report["most_confused"])
    print(f"most confused: {pairs or 'none'}")
    if "confusion_png" in report:
        print(f"confusion matrix: {report['confusion_png']}")


def cmd_export(args: argparse.Namespace) -> None:
    from digitlab.export import export_line_onnx, export_onnx
    from digitlab.infer import as_checkpoint

    if args.images < 1:
        raise DigitlabError(f"--images must be >= 1, got {args.images}")
    ckpt = as_checkpoint(args.checkpoint)
    opset = {} if args.opset is None else {"opset": args.opset}
    if ckpt.meta.get("model") == "line-reader":  # a line or field reader: line images of any width
        report = export_line_onnx(ckpt, args.out, **opset)
        print(f"wrote {report.path} ({report.bytes:,} bytes, opset {report.opset}); checked on {report.images} "
              f"{report.source}: max |log-probability difference| {report.max_abs_diff:.2e}, the same best class "
              f"in every frame for {100 * report.agreement:.0f}% of them")
        return
    report = export_onnx(ckpt, args.out, data_dir=args.data_dir, images=args.images, **opset)
    print(f"wrote {report.path} ({report.bytes:,} bytes, opset {report.opset}); checked on {report.source}: "
          f"max |logit difference| {report.max_abs_diff:.2e}, same class for {100 * report.agreement:.2f}%")


def cmd_bench(args: argparse.Namespace) -> None:
    from digitlab.bench import bench, format_rows

    try:
        batches = tuple(int(b) for b in args.batches.split(","))
    except ValueError:
        raise DigitlabError(f"--batches takes batch sizes like 1,64,1024, got {args.batches!r}") from None
    rows = bench(args.checkpoints or [None], formats=tuple(f for f in args.formats.split(",") if f),
                 data_dir=args.data_dir, batches=batches, threads=args.threads, seconds=args.seconds,
                 log=lambda line: print(line, file=sys.stderr))
    print(format_table(format_rows(rows)))
    if args.json:
        from digitlab.atomic import write_text

        write_text(Path(args.json), json.dumps([r.to_dict() for r in rows], indent=2))


def cmd_predict(args: argparse.Namespace) -> None:
    from digitlab.infer import predict

    refuse_directories(args.images)
    predictions = predict(args.images, checkpoint_of(args), backend=args.backend)
    if args.json:
        print(json.dumps([dataclasses.asdict(p) for p in predictions], indent=2))
        return
    for p in predictions:
        if p.note:  # several digits: no label
            print(f"{p.source}: {p.note}")
            continue
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


def add_checkpoint_option(p: argparse.ArgumentParser) -> None:
    p.add_argument("--checkpoint", metavar="RUN",
                   help=f"trained checkpoint: a run folder, a .safetensors file or a bundled set's name, e.g. "
                        f"tibetan (`digitlab models --pretrained`) (default ${CHECKPOINT_ENV}, else the bundled "
                        f"MNIST reader)")


def checkpoint_of(args: argparse.Namespace) -> str | None:
    """--checkpoint, else $DIGITLAB_CHECKPOINT, a bundled set's name standing for its folder where no such path
    exists; None means the bundled MNIST reader."""
    given = args.checkpoint or os.environ.get(CHECKPOINT_ENV) or None
    if given and not Path(given).exists():
        from digitlab import pretrained

        if given in pretrained.names():
            return str(pretrained.bundled(given))
    return given


def refuse_directories(paths: Iterable[str]) -> None:
    for path in paths:
        if Path(path).is_dir():
            raise DigitlabError(f"{path} is a directory, not an image (give the image files in it)")


def usage(p: argparse.ArgumentParser) -> str:
    """One short usage line: the command, its required options, [options] and its positional arguments
    (`--help` lists the options)."""
    words = ["%(prog)s"]
    words += [f"{a.option_strings[-1]} {a.metavar or a.dest.upper()}" for a in p._actions
              if a.option_strings and a.required]
    words.append("[options]")
    for a in p._actions:
        if not a.option_strings:
            m = a.metavar or a.dest.upper()
            words.append({"+": f"{m} [{m} ...]", "?": f"[{m}]", "*": f"[{m} ...]"}.get(a.nargs, m))
    return " ".join(words)


def commands(parser: argparse.ArgumentParser) -> dict[str, argparse.ArgumentParser]:
    """digitlab's subcommands by name."""
    return next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction)).choices


def build_parser() -> argparse.ArgumentParser:
    from digitlab import __version__
    from digitlab.compress.cli import add_commands as add_compress  # prune, quantize
    from digitlab.experiments.cli import add_commands as add_experiments  # cv, sweep, search, compare, report
    from digitlab.federated.cli import add_commands as add_federated  # federate
    from digitlab.read.cli import add_commands  # read, eval-read, train-verifier, train-line-reader
    from digitlab.serve.cli import add_commands as add_serve  # serve
    from digitlab.train.config import INITS, KEEPS, OPTIMIZERS, SCHEDULES, TrainConfig

    parser = argparse.ArgumentParser(prog="digitlab", description="Handwritten digit recognition.",
                                     allow_abbrev=False)
    parser.add_argument("--version", action="version", version=f"digitlab {__version__}")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND",
                                help="one of these (`digitlab COMMAND --help` lists its options):")

    def command(name: str, help: str, func, **kw) -> argparse.ArgumentParser:
        p = sub.add_parser(name, help=help, description=kw.pop("description", help[0].upper() + help[1:] + "."),
                           allow_abbrev=False, **kw)
        p.set_defaults(func=func)
        return p

    p = command("datasets", "list datasets, their splits and whether their files are present", cmd_datasets)
    p.add_argument("--data-dir", metavar="DIR", help=DATA_DIR_HELP)

    p = command("download", "fetch datasets from their mirrors (SHA-256 checked)", cmd_download)
    p.add_argument("names", nargs="+", metavar="DATASET", help="dataset names, e.g. mnist fashion-mnist")
    p.add_argument("--split", action="append", help="only this split (repeatable; default all)")
    p.add_argument("--data-dir", metavar="DIR", help=DATA_DIR_HELP)

    p = command("models", "list models with parameter count and multiply-accumulates", cmd_models)
    p.add_argument("pattern", nargs="?", metavar="PATTERN", help="shell-style filter, e.g. 'lenet*'")
    p.add_argument("--pretrained", action="store_true",
                   help="list the bundled pretrained weights instead (create_model(name, pretrained=SET))")

    command("presets", "list training presets and the published figures they reproduce", cmd_presets)

    p = command("train", "train a model (from a preset and/or settings)", cmd_train)
    p.add_argument("--preset", help="start from this preset (see `digitlab presets`)")
    p.add_argument("--out", metavar="DIR", help="run folder (default runs/<time>-<name>/)")
    p.add_argument("--resume", action="store_true", help="continue the interrupted run in --out with its saved config")
    p.add_argument("--dry-run", action="store_true", help="quick check: 1 epoch on at most 512 images per split")
    p.add_argument("--no-progress", action="store_true", help="no progress bar; one line per epoch")
    p.add_argument("--download", action="store_true", help="fetch missing dataset files from the mirrors")
    p.add_argument("--from-study", metavar="SEARCH", help="start from the best config of a search: its folder, or "
                                                          "a study name in --storage")
    p.add_argument("--storage", metavar="URL", help="with --from-study NAME: the study's storage URL "
                                                    "(default $DIGITLAB_STORAGE)")
    add_config_options(p, TrainConfig, "training settings (each overrides the preset's)",
                       {"optimizer": OPTIMIZERS, "schedule": SCHEDULES, "init": INITS, "keep": KEEPS})

    p = command("eval", "evaluate a checkpoint on a dataset split", cmd_eval)
    add_checkpoint_option(p)
    p.add_argument("--dataset", help="dataset to evaluate on (default: the checkpoint's)")
    p.add_argument("--split", default="test", help="split of the dataset (default test)")
    p.add_argument("--data-dir", metavar="DIR",
                   help="data root (default: the folder the run read its data from, then $DIGITLAB_DATA, "
                        "then the per-user cache)")
    p.add_argument("--out", metavar="DIR", help="folder for the confusion matrix PNG (default: the run folder of "
                                                "--checkpoint; none for the bundled reader)")
    p.add_argument("--download", action="store_true", help="fetch missing dataset files from the mirrors")
    p.add_argument("--json", action="store_true", help="print the report as JSON")

    p = command("export", "export a checkpoint's model to ONNX, checked against PyTorch", cmd_export,
                description="Write the checkpoint's classifier as one ONNX file (dynamic batch axis, the "
                            "checkpoint's classes, normalisation and calibration in its metadata). ONNX Runtime "
                            "then runs it beside PyTorch on real test images; a mismatch fails the export. A line "
                            "or field reader (`train-line-reader`, `train-field-reader`) is written with dynamic "
                            "batch and width (input `lines` (N, 1, H, W), H its line height, output `logp` (W/4, "
                            "N, classes + blank)) and checked on line images of several widths.")
    p.add_argument("checkpoint", nargs="?", metavar="CHECKPOINT",
                   help="a run folder or .safetensors file of a classifier, line reader or field reader "
                        "(default: the bundled MNIST classifier)")
    p.add_argument("--format", choices=["onnx"], default="onnx", help="file format (default onnx)")
    p.add_argument("--out", metavar="FILE", required=True, help="the file to write, e.g. model.onnx")
    p.add_argument("--data-dir", metavar="DIR", help="where the checkpoint's test images are (default: where its "
                                                     "run found them, then $DIGITLAB_DATA, then the cache)")
    p.add_argument("--images", type=int, default=1000, metavar="N", help="test images to check on (default 1000)")
    p.add_argument("--opset", type=int, help="ONNX opset (default 18; 17 for a line or field reader)")

    p = command("bench", "measure checkpoints in each format: size, accuracy, images/s, latency", cmd_bench,
                description="Measure each checkpoint as PyTorch eager fp32, ONNX Runtime fp32 and ONNX Runtime "
                            "int8, side by side in one run: file size (raw and gzip), weights, multiply-"
                            "accumulates, accuracy on the full test set, images/s at each batch size and p50/p99 "
                            "latency at batch 1 (one thread; larger batches on --threads).")
    p.add_argument("checkpoints", nargs="*", metavar="RUN",
                   help="run folders or .safetensors files (default: the bundled MNIST classifier)")
    p.add_argument("--formats", default="pytorch,onnx,int8", metavar="LIST",
                   help="comma-separated, of pytorch, onnx, int8 (default all three)")
    p.add_argument("--batches", default="1,64,1024", metavar="LIST", help="batch sizes (default 1,64,1024)")
    p.add_argument("--threads", type=int, default=0, metavar="N", help="threads for batches > 1 (default: all cores)")
    p.add_argument("--seconds", type=float, default=2.0, metavar="S", help="time per measurement (default 2)")
    p.add_argument("--data-dir", metavar="DIR", help="where the test images are (default: the run's own, then "
                                                     "$DIGITLAB_DATA, then the cache)")
    p.add_argument("--json", metavar="FILE", help="also write the rows to this JSON file")

    p = command("predict", "classify images of single digits", cmd_predict)
    p.add_argument("images", nargs="+", metavar="IMAGE", help="image files (any size, either polarity)")
    add_checkpoint_option(p)
    p.add_argument("--json", action="store_true", help="print the predictions as a JSON list")
    p.add_argument("--backend", choices=["onnxruntime", "torch"],
                   help="inference engine (default: ONNX Runtime when installed, else PyTorch)")

    p = command("ensemble", "average the logits of finished runs into one calibrated checkpoint", cmd_ensemble)
    p.add_argument("runs", nargs="+", metavar="RUN",
                   help="run folders of one dataset, trained with the same --split and --split-seed")
    p.add_argument("--out", metavar="DIR", required=True, help="folder for the ensemble checkpoint")
    p.add_argument("--data-dir", metavar="DIR", help="data root (default: the runs' own)")

    add_commands(command)
    add_experiments(command)
    add_federated(command)
    add_compress(command)
    add_serve(command)

    p = command("runs", "list runs in a table", cmd_runs)
    p.add_argument("root", nargs="?", default="runs", metavar="ROOT",
                   help="folder holding run folders (default runs/)")

    for p in commands(parser).values():
        p.usage = usage(p)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args, unknown = parser.parse_known_args(argv)
    if unknown:  # the command's usage and one line, not digitlab's
        command = commands(parser)[args.command]
        close = difflib.get_close_matches(unknown[0], list(command._option_string_actions), n=1)
        hint = f" (did you mean {close[0]}?)" if unknown[0].startswith("--") and close else ""
        command.error(f"unrecognized arguments: {' '.join(unknown)}{hint}")
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
