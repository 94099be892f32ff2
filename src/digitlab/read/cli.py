"""The `digitlab read`, `digitlab eval-read`, `digitlab train-verifier` and `digitlab train-line-reader`
commands, added to digitlab's parser by ``add_commands``.

Thin adapters over digitlab.read: heavy modules (OpenCV, torch) load only when a command runs, and
every bad input ends as a ReadError (a DigitlabError), which the main CLI prints as one line.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path

from digitlab.read.errors import ReadError

MODEL_ENV = "DIGITLAB_MODEL"
VERIFIER_ENV = "DIGITLAB_VERIFIER"
LINE_READER_ENV = "DIGITLAB_LINE_READER"


def add_commands(subparsers: argparse._SubParsersAction) -> None:
    """Add `read`, `eval-read`, `train-verifier` and `train-line-reader` to digitlab's subparsers (each sets
    func=handler(args))."""
    p = subparsers.add_parser("read", help="read the digit strings in images: photos, scans, forms, drawings",
                              description="Print each image's digit string(s); '?' marks a rejected digit.")
    p.add_argument("images", nargs="+", help="image files (PNG, JPEG, BMP, TIFF, WebP, ...)")
    _add_model_option(p)
    p.add_argument("--json", action="store_true", help="print lines, digits, boxes and confidences as JSON")
    p.add_argument("--annotate", metavar="OUT.png",
                   help="save the image with boxes and predictions (several images: OUT-<name>.png)")
    p.add_argument("--panel", metavar="OUT.png",
                   help="save original | processed | normalised crops side by side (several: OUT-<name>.png)")
    _add_read_options(p)
    p.set_defaults(func=cmd_read)

    p = subparsers.add_parser("eval-read", help="score `read` on a folder of labelled images",
                              description="Exact-match string accuracy, digit accuracy (edit distance), "
                                          "segmentation errors, rejection rate, and a gallery of the failures.")
    p.add_argument("folder", help="folder of images")
    p.add_argument("--labels", help="CSV of filename,string (lines separated by a space; "
                                    "default FOLDER/labels.csv)")
    _add_model_option(p)
    p.add_argument("--out", help="folder for report.json, results.csv and failures/ (default: none written)")
    p.add_argument("--limit", type=int, default=0, help="read only the first N labelled images")
    p.add_argument("--json", action="store_true", help="print the report as JSON")
    _add_read_options(p)
    p.set_defaults(func=cmd_eval_read)

    p = subparsers.add_parser("train-verifier", help="train the verifier that tells whole digits from merged "
                                                     "pairs and parts of digits, for `read --verifier`",
                              description="Draw synthetic strings from MNIST *train* digits, crop them as `read` "
                                          "does, label each crop by the ink it holds (one whole digit or not) "
                                          "and train an 11-class checkpoint on the crops.")
    _add_training_options(p, "verifier", "digitlab.read.verifier.VerifierConfig", "images=500 --set epochs=2")
    p.set_defaults(func=cmd_train_verifier)

    p = subparsers.add_parser("train-line-reader", help="train the line reader that reads a whole line of digits "
                                                        "(touching ones too), for `read --line-reader`",
                              description="Draw synthetic strings from MNIST *train* digits (or a run's own, "
                                          "--set run=RUN), find their lines as `read` does and train a "
                                          "CNN + BiLSTM with CTC on the line images.")
    _add_training_options(p, "line reader", "digitlab.read.linereader.LineReaderConfig",
                          "images=2000 --set epochs=4")
    p.set_defaults(func=cmd_train_line_reader)


def cmd_read(args: argparse.Namespace) -> None:
    from digitlab.read.recognize import as_checkpoint, read

    ckpt = as_checkpoint(_model_path(args))
    cfg = _read_config(args)
    checker, second = _verifier(args), _line_reader(args)
    _warn_calibration(ckpt)
    if second is not None and second.meta.get("dataset") != ckpt.meta.get("dataset"):
        print(f"digitlab: note: the line reader learnt {second.meta.get('dataset')} digits, the model "
              f"{ckpt.meta.get('dataset')}: it is not used", file=sys.stderr)
    out = []
    for image in args.images:
        reading = read(image, ckpt, cfg, checker, second)
        if args.annotate or args.panel:
            from digitlab.read.render import annotate, panel, save_png

            if args.annotate:
                save_png(annotate(reading, image), _output_path(args.annotate, image, len(args.images)))
            if args.panel:
                save_png(panel(reading, image), _output_path(args.panel, image, len(args.images)))
        if args.json:
            out.append(reading.to_dict())
        else:
            shown = reading.text if reading.digits else "(no digits found)"
            print(f"{image}: {shown}  (confidence {reading.confidence:.3f})")
    if args.json:
        print(json.dumps(out if len(out) > 1 else out[0], indent=2))


def cmd_eval_read(args: argparse.Namespace) -> None:
    from digitlab.read.evaluate import evaluate_folder, format_report

    labels = args.labels or str(Path(args.folder) / "labels.csv")
    report = evaluate_folder(args.folder, labels, _model_path(args), _read_config(args), out_dir=args.out,
                             limit=args.limit, verifier=_verifier(args), line_reader=_line_reader(args))
    if args.json:
        print(json.dumps(report, indent=2))
        return
    print(format_report(report))
    if args.out:
        print(f"report, results and failure gallery: {args.out}")


def _warn_calibration(ckpt) -> None:
    """One line on stderr when the model's temperature says little (see calibrate.calibration_note)."""
    from digitlab.calibrate import calibration_note

    errors = ckpt.meta.get("temperature_val_errors")
    if errors is not None and (note := calibration_note(int(errors))):
        print(f"digitlab: note: {note}", file=sys.stderr)


def cmd_train_verifier(args: argparse.Namespace) -> None:
    from digitlab.read.verifier import VerifierConfig, train_verifier

    train_verifier(VerifierConfig.from_dict(_pairs(args.overrides)), args.out, args.data_dir)


def cmd_train_line_reader(args: argparse.Namespace) -> None:
    from digitlab.read.linereader import LineReaderConfig, train_line_reader

    train_line_reader(LineReaderConfig.from_dict(_pairs(args.overrides)), args.out, args.data_dir)


def _add_training_options(p: argparse.ArgumentParser, what: str, config: str, example: str) -> None:
    """OUT, --data-dir and --set of a command that trains one of the reader's helpers (`what`), whose
    settings are the fields of `config`."""
    p.add_argument("out", help=f"folder for the {what} checkpoint")
    p.add_argument("--data-dir", default=os.environ.get("DIGITLAB_DATA"), help="datasets folder (holds mnist/)")
    p.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", dest="overrides",
                   help=f"override a field of {config} (repeatable), e.g. --set {example}")


def _add_model_option(p: argparse.ArgumentParser) -> None:
    p.add_argument("--model", metavar="M", help=f"checkpoint: run folder or .safetensors (default ${MODEL_ENV}, "
                                                f"else the bundled MNIST reader: digitlab.pretrained)")
    p.add_argument("--verifier", metavar="V",
                   help=f"verifier checkpoint from `digitlab train-verifier`: whole digits are told from merged "
                        f"pairs and parts of digits (default ${VERIFIER_ENV}, else M/verifier when that "
                        f"folder exists; 'none': without one)")
    p.add_argument("--line-reader", metavar="L",
                   help=f"line reader checkpoint from `digitlab train-line-reader`: a second opinion on each line "
                        f"that reads touching digits (default ${LINE_READER_ENV}, else M/line-reader when that "
                        f"folder exists; 'none': without one)")


def _verifier(args: argparse.Namespace):
    """The verifier checkpoint named by --verifier, $DIGITLAB_VERIFIER or found in the model's run folder."""
    from digitlab.read import verifier

    return _helper(args.verifier, VERIFIER_ENV, verifier.beside, verifier.load_verifier, args)


def _line_reader(args: argparse.Namespace):
    """The line reader named by --line-reader, $DIGITLAB_LINE_READER or found in the model's run folder."""
    from digitlab.read import linereader

    return _helper(args.line_reader, LINE_READER_ENV, linereader.beside, linereader.load_line_reader, args)


def _helper(given: str | None, env: str, beside, load, args: argparse.Namespace):
    """A helper checkpoint of the reader: the one named, else $env's, else the one beside the model (its
    run folder's); None for 'none' or when there is none."""
    name = given or os.environ.get(env) or beside(_model_path(args)) or "none"
    return None if name == "none" else load(name)


def _model_path(args: argparse.Namespace) -> str:
    """--model, else $DIGITLAB_MODEL, else the bundled MNIST reader's run folder."""
    from digitlab.pretrained import bundled

    return args.model or os.environ.get(MODEL_ENV) or str(bundled())


def _add_read_options(p: argparse.ArgumentParser) -> None:
    p.add_argument("--threads", type=int, default=1, metavar="N",
                   help="torch threads (default 1: the model sees a few dozen 28x28 crops per image, and more "
                        "threads only add overhead, a lot of it on a busy machine; 0: torch's default)")
    p.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", dest="overrides",
                   help="override a reading threshold of digitlab.read.ReadConfig (repeatable), "
                        "e.g. --set reject_below=0.7 --set binarization=sauvola")


def _read_config(args: argparse.Namespace):
    """The ReadConfig from --set; also applies --threads (a process setting, as `digitlab train` does)."""
    import torch

    from digitlab.read.config import ReadConfig

    if args.threads < 0:
        raise ReadError(f"--threads must be >= 0, got {args.threads}")
    if args.threads:
        torch.set_num_threads(args.threads)

    return ReadConfig.from_dict(_pairs(args.overrides))


def _pairs(items: list[str]) -> dict[str, str]:
    values = {}
    for item in items:
        key, sep, value = item.partition("=")
        if not sep:
            raise ReadError(f"--set expects KEY=VALUE, got {item!r}")
        values[key.strip()] = value.strip()
    return values


def _output_path(template: str, image: str, count: int) -> Path:
    """OUT.png for one image; OUT-<image name>.png for each of several."""
    path = Path(template)
    if count == 1:
        return path
    return path.with_name(f"{path.stem}-{Path(image).stem}{path.suffix or '.png'}")
