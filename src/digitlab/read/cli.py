"""The `digitlab read`, `digitlab eval-read`, `digitlab train-verifier` and `digitlab train-line-reader`
commands, added to digitlab's parser by ``add_commands``.

Thin adapters over digitlab.read: heavy modules (OpenCV, torch) load only when a command runs, and
every bad input ends as a DigitlabError, which the main CLI prints as one line.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import sys
import warnings
from pathlib import Path

from digitlab.cli import add_checkpoint_option, checkpoint_of, refuse_directories, refuse_settings_with_resume
from digitlab.configs import add_config_options, config_values
from digitlab.read.config import BINARIZATIONS, ReadConfig
from digitlab.read.errors import ReadError

VERIFIER_ENV = "DIGITLAB_VERIFIER"
LINE_READER_ENV = "DIGITLAB_LINE_READER"
FIELD_READER_ENV = "DIGITLAB_FIELD_READER"
READ_THREADS = 1  # benchmarks/results/threads.md: more threads only add overhead, a lot of it on a busy machine


def add_commands(command) -> None:
    """Add `read`, `eval-read`, `train-verifier` and `train-line-reader` through digitlab's
    command(name, help, func, **parser_options) -> parser."""
    from digitlab.read.config import FieldReaderConfig, LineReaderConfig, VerifierConfig

    p = command("read", "read the digit strings in images: photos, scans, forms, drawings", cmd_read,
                description="Print each image's digit string(s); '?' marks a rejected digit.")
    p.add_argument("images", nargs="+", metavar="IMAGE", help="image files (PNG, JPEG, BMP, TIFF, WebP, ...)")
    _add_model_options(p)
    p.add_argument("--json", action="store_true",
                   help="print a JSON list, one reading per image: lines, digits, boxes and confidences")
    p.add_argument("--annotate", metavar="OUT.png",
                   help="save the image with boxes and predictions (several images: OUT-<name>.png)")
    p.add_argument("--panel", metavar="OUT.png",
                   help="save original | processed | normalised crops side by side (several: OUT-<name>.png)")
    p.add_argument("--field", action="store_true",
                   help="each image is one number in its field (a cheque amount, a table cell, a form field): read "
                        "it whole with the field reader, which ignores ruling lines, margins and page edges; "
                        "prints the digits and the number as written (separators and marks kept)")
    p.add_argument("--field-reader", metavar="F",
                   help=f"field reader checkpoint from `digitlab train-field-reader` (default ${FIELD_READER_ENV}, "
                        f"else RUN/field-reader of the model)")
    _add_read_options(p)

    p = command("eval-read", "score `read` on a folder of labelled images", cmd_eval_read,
                description="Exact-match string accuracy, digit accuracy (edit distance), segmentation errors, "
                            "rejection rate, and a gallery of the failures.")
    p.add_argument("folder", metavar="FOLDER", help="folder of images")
    p.add_argument("--labels", metavar="CSV", help="CSV of filename,string (lines separated by a space; "
                                                   "default FOLDER/labels.csv)")
    _add_model_options(p)
    p.add_argument("--out", metavar="DIR", help="folder for report.json, results.csv and failures/ "
                                                "(default: none written)")
    p.add_argument("--limit", type=int, default=0, metavar="N", help="read only the first N labelled images "
                                                                     "(default 0: all)")
    p.add_argument("--json", action="store_true", help="print the report as JSON")
    p.add_argument("--field", action="store_true", help="each image is one number in its field: read it as "
                                                        "`read --field` does")
    p.add_argument("--field-reader", metavar="F", help=f"field reader checkpoint (default ${FIELD_READER_ENV}, "
                                                       f"else RUN/field-reader of the model)")
    _add_read_options(p)

    p = command("train-verifier", "train the verifier that tells whole digits from merged pairs and parts of "
                                  "digits, for `read --verifier`", cmd_train_verifier,
                description="Draw synthetic strings from MNIST *train* digits (or a run's own, --run RUN), "
                            "crop them as `read` does, label each crop by the ink it holds (one whole digit or "
                            "not) and train an 11-class checkpoint on the crops, in a run folder.")
    _add_training_options(p, "verifier")
    add_config_options(p, VerifierConfig, "verifier settings (digitlab.read.VerifierConfig)")

    p = command("train-line-reader", "train the line reader that reads a whole line of digits (touching ones "
                                     "too), for `read --line-reader`", cmd_train_line_reader,
                description="Draw synthetic strings from MNIST *train* digits (or a run's own, --run RUN), "
                            "find their lines as `read` does and train a CNN + BiLSTM with CTC on the line "
                            "images, in a run folder.")
    _add_training_options(p, "line reader")
    add_config_options(p, LineReaderConfig, "line reader settings (digitlab.read.LineReaderConfig)")

    p = command("train-field-reader", "train the field reader that reads one number in its field (cheque "
                                      "amounts, table cells), for `read --field`", cmd_train_field_reader,
                description="Draw synthetic fields from MNIST *train* digits (or a run's own, --run RUN) with "
                            "every nuisance of digitlab.read.fields at random (security backgrounds, ruling "
                            "lines, page-edge bands, separators, faint ink, scanner and camera artefacts) and "
                            "train a CNN + BiLSTM with CTC on the grey field images, in a run folder.")
    _add_training_options(p, "field reader")
    add_config_options(p, FieldReaderConfig, "field reader settings (digitlab.read.FieldReaderConfig)")


def cmd_read(args: argparse.Namespace) -> None:
    cfg = _read_config(args)
    refuse_directories(args.images)
    from digitlab.read.recognize import read

    if args.field:
        ckpt = checker = second = None
        fields_by = args.field_reader or os.environ.get(FIELD_READER_ENV) or _checkpoint_path(args)
    else:
        ckpt, checker, second = _open_reader(args, cfg)
    out = []
    for image in args.images:
        with _notes_said():
            if args.field:
                reading = read(image, field=True, field_reader=fields_by, config=cfg, backend=args.backend)
            else:
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
            written = f"as written {reading.raw}, " if args.field and reading.raw != reading.text else ""
            print(f"{image}: {shown}  ({written}confidence {reading.confidence:.3f})")
    if args.json:
        print(json.dumps(out, indent=2))


def cmd_eval_read(args: argparse.Namespace) -> None:
    cfg = _read_config(args)
    from digitlab.read.evaluate import evaluate_folder, format_report

    labels = args.labels or str(Path(args.folder) / "labels.csv")
    if args.field:
        fields_by = args.field_reader or os.environ.get(FIELD_READER_ENV) or _checkpoint_path(args)
        report = evaluate_folder(args.folder, labels, None, cfg, out_dir=args.out, limit=args.limit, field=True,
                                 field_reader=fields_by)
    else:
        ckpt, checker, second = _open_reader(args, cfg)
        with _notes_said():
            report = evaluate_folder(args.folder, labels, ckpt, cfg, out_dir=args.out, limit=args.limit,
                                     verifier=checker, line_reader=second)
    if args.json:
        print(json.dumps(report, indent=2))
        return
    print(format_report(report))
    if args.out:
        print(f"report, results and failure gallery: {args.out}")


def _open_reader(args: argparse.Namespace, cfg: ReadConfig):
    """(classifier as a Recognizer on --backend, verifier or None, line reader or None) as the options
    name them; what the reader would warn about them goes to stderr once, as notes."""
    import torch

    from digitlab.calibrate import calibration_note
    from digitlab.engine import as_recognizer
    from digitlab.read.recognize import helper_notes

    ckpt = as_recognizer(_checkpoint_path(args), args.backend, args.threads or torch.get_num_threads())
    checker, second = _verifier(args), _line_reader(args)
    errors = ckpt.meta.get("temperature_val_errors")
    notes = [calibration_note(int(errors)) if errors is not None else None, *helper_notes(ckpt, cfg, checker, second)]
    for note in filter(None, notes):
        print(f"digitlab: note: {note}", file=sys.stderr)
    return ckpt, checker, second


@contextlib.contextmanager
def _notes_said():
    """Reading without repeating as warnings the notes _open_reader printed."""
    from digitlab.read.recognize import ReadWarning

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ReadWarning)
        yield


def cmd_train_verifier(args: argparse.Namespace) -> None:
    from digitlab.read.config import VerifierConfig
    from digitlab.read.verifier import train_verifier

    _train_helper(args, VerifierConfig, train_verifier)


def cmd_train_line_reader(args: argparse.Namespace) -> None:
    from digitlab.read.config import LineReaderConfig
    from digitlab.read.linereader import train_line_reader

    _train_helper(args, LineReaderConfig, train_line_reader)


def cmd_train_field_reader(args: argparse.Namespace) -> None:
    from digitlab.read.config import FieldReaderConfig
    from digitlab.read.fieldreader import train_field_reader

    _train_helper(args, FieldReaderConfig, train_field_reader)


def _train_helper(args: argparse.Namespace, cls: type, train) -> None:
    """Train one of the reader's helpers with its config from the options (none with --resume, which
    continues with the run's saved one)."""
    values = config_values(args, cls)
    cfg = None if refuse_settings_with_resume(args, values) else cls.from_dict(values)
    train(cfg, args.out, args.data_dir, resume=args.resume, progress=not args.no_progress)


def _add_training_options(p: argparse.ArgumentParser, what: str) -> None:
    """The options of a command that trains one of the reader's helpers (`what`) in a run folder."""
    p.add_argument("--out", metavar="DIR", required=True, help=f"run folder for the {what}")
    p.add_argument("--data-dir", metavar="DIR", help="data root holding mnist/ (default: $DIGITLAB_DATA, then the "
                                                     "per-user cache)")
    p.add_argument("--resume", action="store_true", help="continue the interrupted run in --out with its saved config")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")


def _add_model_options(p: argparse.ArgumentParser) -> None:
    add_checkpoint_option(p)
    p.add_argument("--backend", choices=["onnxruntime", "torch"],
                   help="inference engine of the classifier, line reader and field reader (default: ONNX Runtime "
                        "when installed, else PyTorch)")
    p.add_argument("--verifier", metavar="V",
                   help=f"verifier checkpoint from `digitlab train-verifier`: whole digits are told from merged "
                        f"pairs and parts of digits (default ${VERIFIER_ENV}, else RUN/verifier when that "
                        f"folder exists; 'none': without one)")
    p.add_argument("--line-reader", metavar="L",
                   help=f"line reader checkpoint from `digitlab train-line-reader`: a second opinion on each line "
                        f"that reads touching digits (default ${LINE_READER_ENV}, else RUN/line-reader when that "
                        f"folder exists; 'none': without one)")


def _add_read_options(p: argparse.ArgumentParser) -> None:
    p.add_argument("--threads", type=int, default=READ_THREADS, metavar="N",
                   help=f"threads of the model (default {READ_THREADS}: the model sees a few dozen 28x28 crops per "
                        f"image, and more threads only add overhead, a lot on a busy machine; 0: torch's default)")
    add_config_options(p, ReadConfig, "reading settings (digitlab.read.ReadConfig)", {"binarization": BINARIZATIONS})


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
    name = given or os.environ.get(env) or beside(_checkpoint_path(args)) or "none"
    return None if name == "none" else load(name)


def _checkpoint_path(args: argparse.Namespace) -> str:
    """--checkpoint, else $DIGITLAB_CHECKPOINT, else the bundled MNIST reader's run folder."""
    from digitlab.pretrained import bundled

    return checkpoint_of(args) or str(bundled())


def _read_config(args: argparse.Namespace) -> ReadConfig:
    """The ReadConfig of the reading settings given; also applies --threads (a process setting, as
    `digitlab train` does)."""
    if args.threads < 0:
        raise ReadError(f"--threads must be >= 0, got {args.threads}")
    cfg = ReadConfig.from_dict(config_values(args, ReadConfig))
    if args.threads:
        import torch

        torch.set_num_threads(args.threads)
    return cfg


def _output_path(template: str, image: str, count: int) -> Path:
    """OUT.png for one image; OUT-<image name>.png for each of several."""
    path = Path(template)
    if count == 1:
        return path
    return path.with_name(f"{path.stem}-{Path(image).stem}{path.suffix or '.png'}")
