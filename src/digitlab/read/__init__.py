"""Reading real images of digits and digit strings: preprocessing, segmentation, recognition with
calibrated confidence, annotated output, a synthetic benchmark and an evaluation harness.

    import digitlab
    reading = digitlab.read("meter.jpg")  # this package is callable: digitlab.read.read(...)
    reading = digitlab.read("meter.jpg", "runs/lenet5", verifier="runs/verifier",  # verifier, line reader:
                            line_reader="runs/line-reader")                          # optional
    print(reading.text, reading.confidence)
    cell = digitlab.read("cell.png", field=True, field_reader="runs/field-reader")  # one number in its field
    print(cell.text, cell.raw)

Names load lazily, so importing this package (e.g. for its CLI commands) does not import OpenCV or torch.
"""

import sys
import types
from importlib import import_module

_API = {
    "read": "digitlab.read.recognize", "Reading": "digitlab.read.recognize",
    "DigitReading": "digitlab.read.recognize", "Ignored": "digitlab.read.recognize",
    "ReadConfig": "digitlab.read.config", "ReadError": "digitlab.read.errors",
    "annotate": "digitlab.read.render", "panel": "digitlab.read.render",
    "evaluate_folder": "digitlab.read.evaluate",
    "VerifierConfig": "digitlab.read.config", "train_verifier": "digitlab.read.verifier",
    "load_verifier": "digitlab.read.verifier",
    "LineReaderConfig": "digitlab.read.config", "train_line_reader": "digitlab.read.linereader",
    "load_line_reader": "digitlab.read.linereader",
    "FieldReaderConfig": "digitlab.read.config", "train_field_reader": "digitlab.read.fieldreader",
    "load_field_reader": "digitlab.read.fieldreader", "read_fields": "digitlab.read.fieldreader",
}
__all__ = list(_API)


def __getattr__(name: str):
    if name in _API:
        return getattr(import_module(_API[name]), name)
    raise AttributeError(f"module 'digitlab.read' has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted({*globals(), *__all__})


class _ReadPackage(types.ModuleType):
    """digitlab.read is the package and, called, its read function: the name `read` of digitlab's API
    means the same object whether or not a submodule import (which sets digitlab.read to the package)
    came first."""

    def __call__(self, *args, **kwargs):
        return import_module("digitlab.read.recognize").read(*args, **kwargs)


sys.modules[__name__].__class__ = _ReadPackage
