"""The eval-read harness: read a folder of labelled images, score the strings, sort the failures by stage.

labels.csv has a header and rows ``filename,string``; a string holds the lines of the image separated
by single spaces ("12 345" is a line "12" above a line "345").
"""

from __future__ import annotations

import csv
import json
import statistics
import time
from collections import Counter
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from os import PathLike
from pathlib import Path
from typing import Any

import numpy as np

from digitlab.calibrate import calibration_gap
from digitlab.checkpoint import Checkpoint
from digitlab.engine import as_recognizer
from digitlab.read.config import ReadConfig
from digitlab.read.errors import ReadError
from digitlab.read.linereader import load_line_reader
from digitlab.read.recognize import REJECTED, Reading, bundled_reader, field_reader_of, read
from digitlab.read.verifier import load_verifier

# Why an image failed, in the order the stages run; each failure gets the first that applies
FAILURES = {
    "unreadable": "the file could not be read",
    "lines": "wrong number of lines",
    "too_many": "too many digits in a line (over-segmentation: a digit cut, a mark read)",
    "too_few": "too few digits in a line (under-segmentation: touching digits not split, a digit lost)",
    "rejected": "right length, some digits rejected as '?', the rest right",
    "misread": "right length, some digit recognised as another",
}


@dataclass(frozen=True)
class ItemResult:
    file: str
    truth: str
    predicted: str
    confidence: float
    seconds: float
    edits: int  # edit distance between the digit sequences (line breaks ignored)
    digits: int  # digits in the truth
    rejected: int  # '?' in the prediction
    predicted_digits: int
    failure: str | None  # a key of FAILURES, None when exact
    error: str | None = None
    raw: str = ""  # what was read as written, marks included (field mode; else the text)


def edit_distance(a: str, b: str) -> int:
    """Levenshtein distance (insertions, deletions and substitutions cost 1)."""
    prev = list(range(len(b) + 1))
    for i, ca in enumerate(a, 1):
        cur = [i]
        for j, cb in enumerate(b, 1):
            cur.append(min(prev[j] + 1, cur[j - 1] + 1, prev[j - 1] + (ca != cb)))
        prev = cur
    return prev[-1]


def classify_failure(truth: str, predicted: str) -> str | None:
    if truth == predicted:
        return None
    t_lines, p_lines = truth.split(), predicted.split()
    if len(t_lines) != len(p_lines):
        return "lines"
    if any(len(p) > len(t) for t, p in zip(t_lines, p_lines)):
        return "too_many"
    if any(len(p) < len(t) for t, p in zip(t_lines, p_lines)):
        return "too_few"
    wrong = [(tc, pc) for t, p in zip(t_lines, p_lines) for tc, pc in zip(t, p) if tc != pc]
    return "misread" if any(pc != REJECTED for _, pc in wrong) else "rejected"


def score_item(file: str, truth: str, reading: Reading | None, error: str | None = None) -> ItemResult:
    predicted = reading.text if reading else ""
    t_digits, p_digits = truth.replace(" ", ""), predicted.replace(" ", "")
    return ItemResult(file=file, truth=truth, predicted=predicted,
                      confidence=reading.confidence if reading else 0.0,
                      seconds=reading.seconds if reading else 0.0,
                      edits=edit_distance(p_digits, t_digits), digits=len(t_digits),
                      rejected=p_digits.count(REJECTED), predicted_digits=len(p_digits),
                      failure="unreadable" if error else classify_failure(truth, predicted), error=error,
                      raw=reading.raw if reading else "")


def read_labels(path: str | PathLike) -> list[tuple[str, str]]:
    """(filename, string) rows of a labels CSV; a header row is skipped when its second field is not digits."""
    path = Path(path)
    if not path.is_file():
        raise ReadError(f"{path}: labels file not found")
    rows = []
    with open(path, newline="") as f:
        for k, row in enumerate(csv.reader(f)):
            if not row or all(not c.strip() for c in row):
                continue
            if len(row) < 2:
                raise ReadError(f"{path}:{k + 1}: expected 'filename,string', got {row!r}")
            name, text = row[0].strip(), " ".join(row[1].split())
            if k == 0 and not text.replace(" ", "").isdigit():
                continue  # header
            rows.append((name, text))
    if not rows:
        raise ReadError(f"{path}: no labelled images")
    return rows


def summarize(results: list[ItemResult]) -> dict[str, Any]:
    n = len(results)
    digits = sum(r.digits for r in results)
    predicted = sum(r.predicted_digits for r in results)
    failures = Counter(r.failure for r in results if r.failure)
    times = [r.seconds for r in results if r.error is None]
    return {
        "images": n,
        "exact_match": sum(r.failure is None for r in results) / n if n else 0.0,
        "digit_accuracy": max(0.0, 1 - sum(r.edits for r in results) / digits) if digits else 0.0,
        "too_many_digits": sum(r.predicted_digits > r.digits for r in results),
        "too_few_digits": sum(r.predicted_digits < r.digits for r in results),
        "rejection_rate": sum(r.rejected for r in results) / predicted if predicted else 0.0,
        "failures": {k: failures.get(k, 0) for k in FAILURES},
        "median_seconds": statistics.median(times) if times else None,
        "p95_seconds": float(np.percentile(times, 95)) if times else None,
        # what a cheque desk does: the least confident readings go to a person, the rest are taken as read
        "exact_at_rejection": {f"{share:g}": exact_after_rejecting(results, share) for share in REJECT_SHARES},
        # how far the confidence is from the share read exactly (10 bins): 0 for an honest confidence
        "calibration_error": calibration_gap([r.confidence for r in results],
                                             [r.failure is None for r in results], 10) if n else 0.0,
        "mean_confidence": float(np.mean([r.confidence for r in results])) if n else 0.0,
    }


REJECT_SHARES = (0.0, 0.05, 0.10)  # shares of the images rejected (least confident first) in the reports


def exact_after_rejecting(results: list[ItemResult], share: float) -> float:
    """Exact match among the images kept after rejecting the `share` least confident ones."""
    if not results:
        return 0.0
    order = sorted(results, key=lambda r: r.confidence)
    kept = order[int(round(share * len(order))):]
    return sum(r.failure is None for r in kept) / len(kept) if kept else 0.0


def rejection_curve(results: list[ItemResult], points: int = 51) -> list[tuple[float, float]]:
    """(share rejected, exact match among the rest) from 0 to 50% rejected."""
    return [(share, exact_after_rejecting(results, share)) for share in np.linspace(0, 0.5, points)]


def plot_rejection(results: list[ItemResult], path: str | PathLike, title: str = "") -> None:
    """The accuracy-versus-rejection curve as a PNG."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    curve = rejection_curve(results)
    fig, ax = plt.subplots(figsize=(5, 3.4))
    ax.plot([100 * a for a, _ in curve], [100 * b for _, b in curve], marker=".")
    ax.set_xlabel("images rejected, least confident first (%)")
    ax.set_ylabel("exact match of the rest (%)")
    ax.set_title(title or "accuracy versus rejection", fontsize=9)
    ax.grid(alpha=0.3)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def evaluate_items(items: Iterable[tuple[str, Any, str]], checkpoint: str | PathLike | Checkpoint | None = None,
                   config: ReadConfig | None = None, gallery: str | PathLike | None = None,
                   max_gallery: int = 60, progress: Callable[[int, ItemResult], None] | None = None,
                   verifier: str | PathLike | Checkpoint | None = None,
                   line_reader: str | PathLike | Checkpoint | None = None, backend: str | None = None,
                   field: bool = False, field_reader: str | PathLike | Checkpoint | None = None,
                   ) -> tuple[dict[str, Any], list[ItemResult]]:
    """Read (name, image, truth) items and score them; failures are drawn into `gallery` as panels.
    checkpoint None: the bundled MNIST reader, as in read(); checkpoint and backend as read() takes them.
    field=True: each image is one number in its field, read by the field reader (read(..., field=True))."""
    if field:
        return _evaluate_fields(items, field_reader if field_reader is not None else checkpoint, config, progress)
    if checkpoint is None:
        _, verifier, line_reader = bundled_reader(verifier, line_reader)
    ckpt = as_recognizer(checkpoint, backend)
    checker = load_verifier(verifier) if verifier is not None else None
    second = load_line_reader(line_reader) if line_reader is not None else None
    cfg = config or ReadConfig()
    results: list[ItemResult] = []
    shown = 0
    for k, (name, image, truth) in enumerate(items):
        try:
            reading = read(image, ckpt, cfg, checker, second)
            result = score_item(name, truth, reading)
        except ReadError as e:
            reading, result = None, score_item(name, truth, None, error=str(e))
        results.append(result)
        if gallery is not None and result.failure and reading is not None and shown < max_gallery:
            from digitlab.read.render import panel, save_png  # drawing only when there is something to draw

            save_png(panel(reading, image, height=240), Path(gallery) / f"{k:04d}-{result.failure}.png")
            shown += 1
        if progress:
            progress(k, result)
    report = summarize(results)
    report["temperature"] = ckpt.temperature
    report["backend"] = ckpt.backend
    report["verifier"] = checker.meta.get("metrics") if checker is not None else None
    report["line_reader"] = second.meta.get("metrics") if second is not None else None
    report["config"] = cfg.to_dict()
    return report, results


def _evaluate_fields(items: Iterable[tuple[str, Any, str]], reader, config: ReadConfig | None,
                     progress: Callable[[int, ItemResult], None] | None) -> tuple[dict[str, Any], list[ItemResult]]:
    ckpt = field_reader_of(reader)  # once, before any image: a missing field reader is the caller's error
    results: list[ItemResult] = []
    for k, (name, image, truth) in enumerate(items):
        try:
            result = score_item(name, truth, read(image, config=config, field=True, field_reader=ckpt))
        except ReadError as e:
            result = score_item(name, truth, None, error=str(e))
        results.append(result)
        if progress:
            progress(k, result)
    report = summarize(results)
    report["field"] = True
    return report, results


def evaluate_folder(folder: str | PathLike, labels: str | PathLike,
                    checkpoint: str | PathLike | Checkpoint | None = None, config: ReadConfig | None = None,
                    out_dir: str | PathLike | None = None, limit: int = 0,
                    progress: Callable[[int, ItemResult], None] | None = None,
                    verifier: str | PathLike | Checkpoint | None = None,
                    line_reader: str | PathLike | Checkpoint | None = None,
                    backend: str | None = None, field: bool = False,
                    field_reader: str | PathLike | Checkpoint | None = None) -> dict[str, Any]:
    """Read every image listed in `labels` (paths relative to `folder`) and score it. With out_dir, write
    report.json, results.csv, rejection.png (exact match against the share of least confident images
    rejected) and failures/ (a panel per failed image, up to 60). checkpoint None: the bundled MNIST
    reader, as in read(); field=True: field mode, as read(..., field=True)."""
    folder = Path(folder)
    if not folder.is_dir():
        raise ReadError(f"{folder}: no such folder")
    rows = read_labels(labels)[: limit or None]
    started = time.perf_counter()
    out = Path(out_dir) if out_dir is not None else None
    report, results = evaluate_items(((name, folder / name, truth) for name, truth in rows), checkpoint, config,
                                     gallery=out / "failures" if out else None, progress=progress,
                                     verifier=verifier, line_reader=line_reader, backend=backend, field=field,
                                     field_reader=field_reader)
    report.update(folder=str(folder), labels=str(labels), seconds=time.perf_counter() - started)
    if out:
        out.mkdir(parents=True, exist_ok=True)
        (out / "report.json").write_text(json.dumps(report, indent=2))
        with open(out / "results.csv", "w", newline="") as f:
            w = csv.writer(f)
            w.writerow(["file", "truth", "predicted", "confidence", "failure", "error"])
            w.writerows([(r.file, r.truth, r.predicted, f"{r.confidence:.4f}", r.failure or "", r.error or "")
                         for r in results])
        plot_rejection(results, out / "rejection.png", f"{folder.name}: exact match versus rejection")
        report["out_dir"] = str(out)
    return report


def format_report(report: dict[str, Any]) -> str:
    lines = [f"images: {report['images']}",
             f"exact match: {100 * report['exact_match']:.1f}%",
             f"digit accuracy (1 - edit distance / digits): {100 * report['digit_accuracy']:.2f}%",
             f"segmentation: {report['too_many_digits']} images with too many digits, "
             f"{report['too_few_digits']} with too few",
             f"rejection rate: {100 * report['rejection_rate']:.2f}% of the digits read",
             "failures by stage: " + (", ".join(f"{k} {v}" for k, v in report["failures"].items() if v) or "none")]
    at = report.get("exact_at_rejection")
    if at:
        lines.append("exact match with the least confident images rejected: "
                     + ", ".join(f"{100 * float(k):g}% rejected {100 * v:.1f}%" for k, v in at.items()))
    if "calibration_error" in report:
        lines.append(f"confidence: mean {100 * report['mean_confidence']:.1f}% against "
                     f"{100 * report['exact_match']:.1f}% read exactly; calibration error "
                     f"{100 * report['calibration_error']:.1f} points")
    if report.get("median_seconds") is not None:
        lines.append(f"time per image: median {1000 * report['median_seconds']:.1f} ms, "
                     f"p95 {1000 * report['p95_seconds']:.1f} ms")
    if "temperature" in report:
        lines.append(f"temperature: {report['temperature']:.3f}")
    return "\n".join(lines)
