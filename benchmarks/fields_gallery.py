"""Pictures of the synthetic fields (digitlab.read.fields) for docs/reading-fields.md: one row per nuisance,
drawn alone on three fields, then rows of whole cheque-amount and table-cell fields as their variants draw
them, and MNIST 1s and 7s as the field reader's training writes some of them (fields.continental). Digits
are MNIST *test* digits.

    python benchmarks/fields_gallery.py --data-dir ../shared/datasets   # writes docs/images/fields-*.png
"""

from __future__ import annotations

import argparse
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

from digitlab.read import fields, synth  # noqa: E402

DOCS = Path(__file__).resolve().parents[1] / "docs" / "images"


def grid(rows: list[tuple[str, list[synth.Sample]]], path: Path, title: str) -> None:
    cols = max(len(s) for _, s in rows)
    fig, axes = plt.subplots(len(rows), cols, figsize=(3.2 * cols, 0.95 * len(rows) + 0.6), squeeze=False)
    for r, (label, samples) in enumerate(rows):
        for c in range(cols):
            ax = axes[r][c]
            ax.set_xticks([])
            ax.set_yticks([])
            for side in ax.spines.values():
                side.set_visible(False)
            if c < len(samples):
                ax.imshow(samples[c].image, cmap="gray", vmin=0, vmax=255)
                ax.set_title(f"text {samples[c].text}   raw {samples[c].raw[0]}", fontsize=7, pad=2)
            if c == 0:
                ax.set_ylabel(label, rotation=0, ha="right", va="center", fontsize=8)
    fig.suptitle(title, fontsize=10)
    fig.tight_layout(rect=(0, 0, 1, 0.97))
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)
    print(f"wrote {path}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data-dir", help="data root holding mnist/")
    parser.add_argument("--out", type=Path, default=DOCS)
    args = parser.parse_args()
    digits, labels = synth.load_test_digits(args.data_dir)
    rows = []
    for k, name in enumerate(fields.NUISANCES):
        rng = np.random.default_rng(100 + k)
        spec = fields.CELL if name in ("rules", "band", "fullstop") else fields.CHEQUE
        rows.append((name, [fields.make_field(digits, labels, spec, rng, only={name}) for _ in range(3)]))
    grid(rows, args.out / "fields-nuisances.png", "Each nuisance of digitlab.read.fields alone")
    rows = [(spec.name, fields.generate_fields(digits, labels, spec, 4, 7)) for spec in fields.VARIANTS.values()
            for _ in range(1)]
    rows = [(f"{name} {i + 1}", samples[2 * i:2 * i + 2]) for name, samples in rows for i in range(2)]
    grid(rows, args.out / "fields-variants.png", "Whole fields as the cheque and cell variants draw them")
    continental(digits, labels, args.out / "fields-continental.png")


def continental(digits: np.ndarray, labels: np.ndarray, path: Path) -> None:
    """Twelve MNIST 1s and 7s above the same digits written the continental way."""
    picked = np.concatenate([np.flatnonzero(labels == d)[:6] for d in (1, 7)])
    styled = fields.continental(digits[picked], labels[picked], 1.0, np.random.default_rng(0))
    fig, axes = plt.subplots(2, len(picked), figsize=(0.8 * len(picked), 2.0))
    for row, images in enumerate((digits[picked], styled)):
        for ax, image in zip(axes[row], images):
            ax.imshow(image, cmap="gray", vmin=0, vmax=255)
            ax.set_axis_off()
    fig.suptitle("MNIST 1s and 7s (top) as the field reader's training writes 30% of them (bottom)", fontsize=9)
    fig.tight_layout(rect=(0, 0, 1, 0.9))
    fig.savefig(path, dpi=110)
    plt.close(fig)
    print(f"wrote {path}")


if __name__ == "__main__":
    main()
