"""Reading real images of digits and digit strings: preprocessing, segmentation, recognition with
calibrated confidence, annotated output, a synthetic benchmark and an evaluation harness.

    from digitlab.read import read
    reading = read("meter.jpg", "runs/lenet5", verifier="runs/verifier",  # verifier, line reader: optional
                   line_reader="runs/line-reader")
    print(reading.text, reading.confidence)

Names load lazily, so importing this package (e.g. for its CLI commands) does not import OpenCV or torch.
"""

from importlib import import_module

_API = {
    "read": "digitlab.read.recognize", "Reading": "digitlab.read.recognize",
    "DigitReading": "digitlab.read.recognize", "Ignored": "digitlab.read.recognize",
    "ReadConfig": "digitlab.read.config", "ReadError": "digitlab.read.errors",
    "annotate": "digitlab.read.render", "panel": "digitlab.read.render",
    "evaluate_folder": "digitlab.read.evaluate",
    "VerifierConfig": "digitlab.read.verifier", "train_verifier": "digitlab.read.verifier",
    "load_verifier": "digitlab.read.verifier",
    "LineReaderConfig": "digitlab.read.linereader", "train_line_reader": "digitlab.read.linereader",
    "load_line_reader": "digitlab.read.linereader",
}
__all__ = list(_API)


def __getattr__(name: str):
    if name in _API:
        return getattr(import_module(_API[name]), name)
    raise AttributeError(f"module 'digitlab.read' has no attribute {name!r}")
