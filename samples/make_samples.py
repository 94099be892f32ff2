"""Draw the sample images shipped in samples/ from MNIST *test* digits (the bundled reader trained on
MNIST train only, so it has never seen these digits).

    python samples/make_samples.py --data-dir ../shared/datasets   # rewrites samples/*.png and labels.csv

Each sample is one image of digitlab.read.synth at a fixed seed; the seeds were chosen so that the
bundled reader reads all three right. --search N tries N seeds per sample and prints what it reads.
"""

from __future__ import annotations

import argparse
import dataclasses
from pathlib import Path

import cv2
import numpy as np

from digitlab.read.synth import EASY, HARD, Sample, SynthSpec, load_test_digits, make_sample

HERE = Path(__file__).parent

# name: (spec, seed). Built from the benchmark's variants, each with one nuisance of its kind turned on.
SAMPLES: dict[str, tuple[SynthSpec, int]] = {
    # five digits in the printed boxes of a form
    "postcode": (dataclasses.replace(EASY, name="postcode", digits=(5, 5), height=(40, 40), boxes=1.0,
                                     texture=6.0, noise=(2.0, 4.0)), 7),
    # an amount on a ruled line, slanted handwriting, some touching digits, a light gradient
    "amount": (dataclasses.replace(HARD, name="amount", lines=(1, 1), digits=(6, 6), height=(40, 40),
                                   ruling=1.0, boxes=0.0, invert=0.0, jpeg=None, perspective=0.0, specks=0,
                                   overlap=0.0), 4),
    # one large digit, as drawn in a box on a screen
    "digit": (dataclasses.replace(EASY, name="digit", digits=(1, 1), height=(96, 96), texture=0.0, noise=(0.0, 0.0),
                                  stroke=(1.0, 1.0)), 2),
}


def draw(spec: SynthSpec, seed: int, digits: np.ndarray, labels: np.ndarray) -> Sample:
    return make_sample(digits, labels, spec, np.random.default_rng(seed))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--data-dir", help="datasets folder (holds mnist/)")
    ap.add_argument("--out", default=str(HERE), help="folder for the PNGs (default: samples/)")
    ap.add_argument("--search", type=int, default=0, metavar="N", help="read seeds 0..N-1 of each sample instead")
    args = ap.parse_args()
    digits, labels = load_test_digits(args.data_dir)
    if args.search:
        from digitlab.read import read

        for name, (spec, _) in SAMPLES.items():
            for seed in range(args.search):
                sample = draw(spec, seed, digits, labels)
                got = read(sample.image).text
                print(f"{name} seed {seed}: {sample.text} read {got} {'ok' if got == sample.text else 'WRONG'}")
        return
    out = Path(args.out)
    rows = ["filename,string"]
    for name, (spec, seed) in SAMPLES.items():
        sample = draw(spec, seed, digits, labels)
        path = out / f"{name}.png"
        cv2.imwrite(str(path), sample.image, [cv2.IMWRITE_PNG_COMPRESSION, 9])
        rows.append(f"{path.name},{sample.text}")
        print(f"{path}: {sample.text} ({path.stat().st_size // 1024} KB)")
    (out / "labels.csv").write_text("\n".join(rows) + "\n")  # for `digitlab eval-read samples --labels ...`


if __name__ == "__main__":
    main()
