"""Every threshold of the reading pipeline, named, in one frozen dataclass.

Lengths are relative to the text height ``h`` (the median height of the ink components, measured on
each image) or to the stroke width, so that one config reads a 28-pixel crop and a 12-megapixel photo.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any

from digitlab.configs import config_from_dict
from digitlab.errors import ConfigError

BINARIZATIONS = ("otsu", "sauvola")


@dataclass(frozen=True)
class ReadConfig:
    # loading
    max_pixels: int = 50_000_000  # larger images (decoded size, decompression bombs included) are refused
    work_pixels: int = 3_000_000  # larger images are shrunk to about this many pixels before analysis ...
    text_target: int = 32  # px: ... and halved while their text stays at least this tall (the model sees 20)
    # cleaning and binarization
    denoise_min_side: int = 96  # px: a 3x3 median removes grain only in images at least this big
    background_kernel: float = 0.25  # fraction of the short side: opening that removes ink to leave the paper
    stroke_scale: float = 3.0  # in stroke widths: only ink narrower than this counts (0: any width)
    binarization: str = "otsu"  # "otsu": global Otsu on the flat-fielded image; "sauvola": local threshold
    sauvola_window: float = 1.5  # in text heights: Sauvola's window (must exceed the stroke width several times)
    sauvola_k: float = 0.2  # Sauvola's k: higher thresholds more strictly in low-contrast areas
    min_contrast: float = 0.15  # fraction of the paper's light the ink must absorb to count as ink
    hysteresis: float = 0.5  # fainter ink down to this fraction of the threshold counts if it touches ink
    # geometry
    max_skew: float = 8.0  # degrees: text rotation searched by projection profiles
    skew_step: float = 0.5  # degrees
    max_slant: float = 1.0  # max |dx/dy| of the strokes that count as near-vertical (0: no correction)
    slant_target: float = 0.3  # dx/dy: MNIST's own lean as stroke_slant measures it, which the model knows
    slant_min: float = 0.35  # a smaller departure from slant_target is left alone (the model knows some lean)
    min_gain: float = 0.03  # a skew is corrected only if the row profile's sharpness rises by this fraction
    # ruling lines and form boxes
    line_min_length: float = 2.0  # in text heights: longer straight horizontal ink runs are ruling lines
    line_max_thickness: float = 0.25  # in text heights: thicker runs are not lines
    line_gap: float = 0.2  # in text heights: gaps that a faint, broken-up line may have ...
    line_cover: float = 0.8  # ... but ink must lie under this fraction of its length (not a row of strokes)
    long_line: float = 0.7  # fraction of the image width: runs this long are lines before h is known ...
    long_line_strokes: float = 20.0  # ... if they are also at least this many stroke widths long
    box_min_height: float = 0.8  # in text heights: vertical runs this tall that end on ruling lines are box sides
    # Boxes around single digits: thin straight runs at least box_side long, the vertical ones meeting
    # horizontal ones at both ends, where there are at least box_min_sides such vertical sides
    box_thickness: float = 0.7  # in stroke widths: a side is thinner across than this (0: no box search)
    box_side: float = 0.5  # in text heights
    box_min_sides: int = 2  # a thin 7 has one such corner, a box two
    # ... one end of a side may meet a horizontal run up to this many times thicker (a digit touching the
    # box's top or bottom thickens it there; 0: both ends thin). Hard tuning seeds 12-19 (1,200 images):
    # 1,086 read at 0, 1,092 at 3; fresh seeds 40-47: 1,087 and 1,088
    box_joined: float = 3.0
    # Boxes joined to their digits and to each other make components taller than the text: a text height
    # measured again without the boxes and lines found is taken if under this fraction of the first
    box_remeasure: float = 0.75
    # components and lines
    min_text_height: int = 8  # px: smaller text cannot be read
    speck_size: float = 0.25  # in text heights: components smaller in both directions are specks
    mark_size: float = 0.6  # in text heights: smaller components may be left out as marks (blots)
    border_height: float = 0.8  # in text heights: shorter components at the image's edge are not read (a digit
    # cut off by the edge cannot be read; most such ink is the edge of something else)
    # Fragments can only be part of a digit (the bar of a 5) or a mark (comma, dash): components shorter
    # than fragment_height that are one stroke thick (<= fragment_strokes widths) or narrow (a flat 2 is
    # short but neither)
    fragment_height: float = 0.45  # in text heights
    fragment_strokes: float = 2.5  # in stroke widths
    line_overlap: float = 0.5  # vertical overlap (fraction of the shorter) that puts two components on one line
    line_seed_height: float = 0.6  # of the median component height: shorter ones join a line, start none
    stack_gap: float = 0.08  # two lines whose components sit over each other closer than this (of their
    # height together) are one line of digits drawn in two pieces, one above the other
    protrude: float = 0.12  # in text heights: reaching this far above and below its line: a symbol ($)
    bar_width: float = 2.5  # in stroke widths: ... with its ink above the line's top and below its base no
    # wider than this at either end (a bar; what a digit drawn larger than the rest holds there is wider)
    fragment_reach: float = 0.35  # in text heights: a fragment this far above or below a line still joins it
    lone_height: float = 0.75  # of the median component height: a line (beside other lines) of components
    # all shorter than this holds marks, not digits
    # segmentation
    max_digit_width: float = 1.0  # in text heights: wider single-digit candidates are penalised
    wide_penalty: float = 10.0  # log-score lost per text height of width beyond max_digit_width
    merge_gap: float = 0.15  # in text heights: pieces further apart are never one digit
    merge_penalty: float = 0.6  # log-score cost of joining two components merge_gap apart into one digit ...
    merge_overlap: float = 1.5  # ... and the log-score gained per unit of their horizontal overlap
    digit_bonus: float = 0.5  # log-score per digit read: offsets the product of probabilities favouring
    # fewer, merged digits (as a word insertion bonus does in speech recognition)
    split_penalty: float = 1.0  # log-score cost of a cut, per stroke width of ink it crosses
    split_min_width: float = 0.35  # in text heights: narrower components are never cut
    min_piece: float = 0.15  # in text heights: no cut leaves a narrower piece ...
    piece_height: float = 0.6  # ... or one shorter than this fraction of the component's height
    # Nearly straight cuts: overlapping digits' strokes cross, and a path free to bend follows one of
    # them. On hard seed 11, 131 of the 1190 digits of images with touching pairs have no candidate
    # holding 85% of their ink and little else with these cut settings, 203 with the earlier ones
    # (cut_band 0.2, cut_max_runs 1, force_width 1.1, max_cuts 6)
    cut_band: float = 0.04  # in text heights: a cut path bends at most this far from its start column
    cut_turn: float = 0.2  # cost of a cut path's sideways step, in ink pixels
    cut_max_strokes: float = 2.5  # a cut crosses at most this many stroke widths of ink ...
    cut_max_runs: int = 2  # ... in at most this many runs (a slanted 1 leaning on a 0 takes two) ...
    force_width: float = 1.0  # ... unless the component is wider (in text heights) than most single digits
    max_cuts: int = 10  # cut paths kept per component
    cut_apart: float = 0.06  # in text heights: paths closer than this on average are one cut (the cheaper kept)
    sliver_width: float = 0.7  # in stroke widths: a narrower piece between two cuts is no digit alone
    max_pieces: int = 6  # a digit is built from at most this many pieces
    skip_cut_penalty: float = 3.0  # log-score cost of leaving out a piece cut off a component (not a mark)
    # "Looks like a digit": a sigmoid of the crop's top logit over a real digit's typical one (see
    # recognize.typical_logit), one half at digit_logit, rising over digit_logit_softness
    digit_logit: float = 0.7
    digit_logit_softness: float = 0.1
    # With a verifier (digitlab.read.verifier): log-score added per unit of log p(one whole digit), so
    # that a merged pair or half a digit loses against the cut that reads two whole digits (hard seeds 11
    # and 12, 200 images each: 51.0% exact at 2, 51.2% at 3; easy seeds 11 and 21: 95.8% at 2, 96.0% at 1)
    verifier_weight: float = 2.0
    # The verifier's own digit reading (trained on the segmenter's crops) multiplies the classifier's class
    # probabilities to this power, when both were trained on the same dataset (0: classifier only).
    # Tuning seeds, lenet5-improved: easy 11/21/31/41 (200 each) 97.25% at 0, 97.38% at 1; hard 12/13
    # (150 each) 48.3% at 0, 51.3% at 1 (53.3% at 2, with easy 96.75%, for a 99.59% fastcnn)
    verifier_classes: float = 1.0
    # A verifier that reads merged pairs (VerifierConfig.pairs) offers each candidate a second reading, as
    # two digits, scored pair_weight * log p(a pair) + log p(best pair | a pair) + the prior of two digits
    # - pair_penalty (recognize.pair_scores). Tuned on hard seeds 12/13 and easy 11/21/31/41
    pair_weight: float = 3.0
    pair_penalty: float = 4.0
    # ... where the verifier finds a pair at least pair_min likely, its reading of which pair is weighed
    # with the classifier's reading of each half of the crop, to this power (0: the verifier's alone)
    pair_min: float = 0.05
    pair_min_width: float = 1.1  # in heights: a narrower candidate is never read as two digits
    pair_halves: float = 1.0  # the power of the classifier's reading of each half (0: the verifier's alone)
    # With a line reader (digitlab.read.linereader), a second opinion per line: its own string replaces
    # the segmenter's when it finds it more likely than the segmenter's by line_margin nats (log p under
    # CTC); digits the segmenter rejected take the line reader's reading when the two agree on the rest
    # and the line reader's string is at least line_accept likely. Hard tuning seeds 12/13 (150 each):
    # 51.7% without a line reader; 76.3% at margin 0 and 1, 76.7% at 2, 75.3% at 4
    line_margin: float = 2.0
    # ... and by line_margin_count nats when the two find different numbers of digits: on hard tuning
    # seeds 12-15 (600 images), of the lines where they did and the line reader found its string 2-3 nats
    # more likely, the segmenter was right in 3 and the line reader in none (a stroke read as an extra 1)
    line_margin_count: float = 3.0
    # On hard tuning seeds 12-19 (1,200 images), of the lines whose rejected digits 0.7 fills in and 0.9
    # did not, the line reader was right in 4 and wrong in none (at 0.5: 5 and 1)
    line_accept: float = 0.7
    # recognition
    reject_below: float = 0.5  # calibrated confidence under which a digit is reported as '?'
    reject_width: float = 1.5  # in heights: a wider crop that looks unlike a digit is '?' (unsplit pair)
    max_fill: float = 0.8  # a crop whose ink fills more of its box is a blot, '?'
    reject_logit: float = 0.15  # a top logit under this fraction of the typical digit's: not a digit, '?'
    # A line of nothing but rejected crops beside lines that read is marks (dark blots of paper texture,
    # box remains), set aside with the other ignored ink; True keeps it as a line of '?'
    keep_unread_lines: bool = False
    batch_size: int = 256  # crops per model call

    def __post_init__(self) -> None:
        if self.binarization not in BINARIZATIONS:
            raise ConfigError(f"binarization must be one of {', '.join(BINARIZATIONS)}, got {self.binarization!r}")
        for f in dataclasses.fields(self):
            value = getattr(self, f.name)
            if isinstance(value, (int, float)) and not isinstance(value, bool) and value < 0:
                raise ConfigError(f"{f.name} must be >= 0, got {value}")
        if self.max_pixels < 1 or self.work_pixels < 1:
            raise ConfigError("max_pixels and work_pixels must be >= 1")
        if not 0 <= self.reject_below <= 1:
            raise ConfigError(f"reject_below must be in [0, 1], got {self.reject_below}")
        if self.max_pieces < 1 or self.batch_size < 1:
            raise ConfigError("max_pieces and batch_size must be >= 1")

    @classmethod
    def from_dict(cls, values: dict[str, Any]) -> ReadConfig:
        """Build from plain values (JSON, CLI strings); unknown keys and wrong types fail clearly."""
        return config_from_dict(cls, values, "read config")

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


# --- the reader's helpers: what `digitlab train-verifier` and `digitlab train-line-reader` train --------

@dataclass(frozen=True)
class VerifierConfig:
    model: str = "lenet5-improved"  # any registered model; built with classes_of(config) (11 or 111)
    # Draw the strings from this training run's own training digits (its dataset, RUN/splits.npz "train"),
    # so that a TibetanMNIST or Kannada-MNIST model gets a verifier of its script; empty: MNIST train
    run: str = ""
    images: int = 3000  # synthetic training images (about 60 candidate crops each)
    val_images: int = 300  # held-out images, drawn from a different seed
    easy_fraction: float = 0.2  # share of images drawn like synth.EASY; the rest like synth.HARD ...
    touch: float = 0.25  # ... with more touching ...
    overlap: float = 0.15  # ... and overlapping pairs than HARD has (more merged pairs to learn from)
    # Labels from the ink a crop holds: one digit's if at least `purity` of its (owned) ink is that
    # digit's and it holds at least `coverage` of that digit's ink; not a digit if below the loose
    # bounds; crops in between are left out of training (a digit missing a speck of stroke)
    purity: float = 0.92
    coverage: float = 0.88
    loose_purity: float = 0.8
    loose_coverage: float = 0.7
    # Also learn to read two touching or overlapping digits merged into one crop: 100 more classes, one
    # per pair, so that the reader can read a pair no cut separates. Off: squeezed into 20x20 pixels the
    # pair is read right 63% of the time (3000 + 15000 pair images), and reading with such a verifier
    # made hard seeds 12/13 53.0% (51.3% without pairs) but seed 2 58.2% (59.0%) and easy seed 1 95.8% (97.2%)
    pairs: bool = False
    pair_images: int = 0  # more images, of two digits that always touch or overlap (each a merged pair)
    epochs: int = 3  # over about 150k crops, most of them not a digit
    batch_size: int = 128  # crops per optimiser step
    lr: float = 2e-3  # peak of the one-cycle schedule, Adam
    seed: int = 0  # draws the strings (validation: seed + 10,000) and seeds the training
    threads: int = 1  # torch threads (the machine is shared)

    def __post_init__(self) -> None:
        if self.images < 1 or self.val_images < 1 or self.epochs < 1 or self.batch_size < 1:
            raise ConfigError("images, val_images, epochs and batch_size must be >= 1")
        if self.pair_images < 0:
            raise ConfigError(f"pair_images must be >= 0, got {self.pair_images}")
        for name in ("easy_fraction", "touch", "overlap", "purity", "coverage", "loose_purity", "loose_coverage"):
            if not 0 <= getattr(self, name) <= 1:
                raise ConfigError(f"{name} must be in [0, 1], got {getattr(self, name)}")
        if self.touch + self.overlap > 1:
            raise ConfigError("touch + overlap must be <= 1")

    @classmethod
    def from_dict(cls, values: dict[str, Any]) -> VerifierConfig:
        return config_from_dict(cls, values, "verifier config")

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


@dataclass(frozen=True)
class LineReaderConfig:
    # Draw the strings from this training run's own training digits (its dataset, RUN/splits.npz "train");
    # empty: MNIST train
    run: str = ""
    images: int = 48000  # synthetic training images (1.75 lines each on average)
    val_images: int = 600  # held-out images, drawn from a different seed
    easy_fraction: float = 0.2  # share of images drawn like synth.EASY; the rest like synth.HARD ...
    touch: float = 0.25  # ... with more touching ...
    overlap: float = 0.15  # ... and overlapping pairs than HARD has
    width: int = 48  # channels of the network's middle layers
    hidden: int = 128  # LSTM size, each direction
    epochs: int = 10  # passes over the drawn lines
    batch_size: int = 32  # lines per optimiser step
    lr: float = 2e-3  # peak of the one-cycle schedule, Adam
    seed: int = 0  # draws the strings (validation: seed + 10,000) and seeds the training
    threads: int = 2  # torch threads
    workers: int = 2  # processes drawing the synthetic lines
    init: str = ""  # start from this line reader's weights (train it further on new lines; its width and
    # hidden are used), else from scratch

    def __post_init__(self) -> None:
        for name in ("images", "val_images", "epochs", "batch_size", "width", "hidden", "workers"):
            if getattr(self, name) < 1:
                raise ConfigError(f"{name} must be >= 1, got {getattr(self, name)}")
        for name in ("easy_fraction", "touch", "overlap"):
            if not 0 <= getattr(self, name) <= 1:
                raise ConfigError(f"{name} must be in [0, 1], got {getattr(self, name)}")
        if self.touch + self.overlap > 1:
            raise ConfigError("touch + overlap must be <= 1")

    @classmethod
    def from_dict(cls, values: dict[str, Any]) -> LineReaderConfig:
        return config_from_dict(cls, values, "line reader config")

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


@dataclass(frozen=True)
class FieldReaderConfig:
    # Draw the fields from this training run's own training digits (its dataset, RUN/splits.npz "train");
    # empty: MNIST train
    run: str = ""
    images: int = 144000  # synthetic training fields (drawn once: about 4 ms each)
    val_images: int = 1500  # held-out fields, drawn from a different seed
    cheque_share: float = 0.45  # share of fields drawn like fields.CHEQUE ...
    plain_share: float = 0.1  # ... and with no nuisance at all; the rest like fields.CELL
    # Distortion of the digits before they are written into fields (digitlab.data.augment's form): other
    # hands than the dataset's. "" or "none": the digits as they are
    augment: str = "rotation=6,shear=12,scale=0.9:1.1,elastic=24,stroke=-0.3:0.5"
    # Share of the 1s and 7s written the continental way (a long up-stroke on the 1, a cross-bar on the 7;
    # digitlab.read.fields.continental), for Latin digits only (MNIST, USPS, digits)
    continental: float = 0.3
    # Share of the fields (other than the plain ones) written unevenly: digits of different sizes off a
    # sloping baseline (the "uneven" nuisance of digitlab.read.fields, which the benchmark's variants never draw)
    uneven: float = 0.3
    height: int = 32  # pixels: the field image's height (a multiple of 8, 16-64); the field is scaled to 2 less
    width: int = 64  # channels of the network's middle layers
    hidden: int = 160  # LSTM size, each direction
    epochs: int = 4
    batch_size: int = 64
    lr: float = 2e-3  # peak of the one-cycle schedule, Adam
    seed: int = 0  # draws the fields (validation: seed + 10,000) and seeds the training
    threads: int = 2  # torch threads
    init: str = ""  # start from this field reader's weights (train it further on new fields; its width and
    # hidden are used), else from scratch

    def __post_init__(self) -> None:
        for name in ("images", "val_images", "epochs", "batch_size", "width", "hidden", "threads"):
            if getattr(self, name) < 1:
                raise ConfigError(f"{name} must be >= 1, got {getattr(self, name)}")
        if not (0 <= self.cheque_share and 0 <= self.plain_share and self.cheque_share + self.plain_share <= 1):
            raise ConfigError("cheque_share and plain_share must be >= 0 and add up to at most 1")
        if self.height % 8 or not 16 <= self.height <= 64:  # digitlab.models.linereader.HEIGHTS
            raise ConfigError(f"height must be a multiple of 8 from 16 to 64, got {self.height}")
        for name in ("continental", "uneven"):
            if not 0 <= getattr(self, name) <= 1:
                raise ConfigError(f"{name} must be between 0 and 1, got {getattr(self, name)}")
        from digitlab.data.augment import parse_augment
        parse_augment(self.augment)  # a bad form fails here, before any field is drawn

    @classmethod
    def from_dict(cls, values: dict[str, Any]) -> FieldReaderConfig:
        return config_from_dict(cls, values, "field reader config")

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)



# Settings that only score and decide between candidates: everything else changes the crops and line
# images the reader makes, which its verifier and line reader learnt from
SCORING = frozenset({
    "digit_logit", "digit_logit_softness", "verifier_weight", "verifier_classes", "pair_weight", "pair_penalty",
    "pair_min", "pair_min_width", "pair_halves", "line_margin", "line_margin_count", "line_accept",
    "reject_below", "reject_width", "max_fill", "reject_logit", "keep_unread_lines", "batch_size", "max_pixels",
})


def crop_settings_differ(trained: dict[str, Any], cfg: ReadConfig) -> list[str]:
    """The settings that make crops (not SCORING) on which `cfg` differs from the reading config a
    helper recorded when it was trained ("name trained -> now")."""
    now = cfg.to_dict()
    return [f"{k} {trained[k]} -> {now[k]}" for k in now
            if k not in SCORING and k in trained and trained[k] != now[k]]
