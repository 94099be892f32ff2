"""Post-training static int8 quantization through ONNX Runtime (`digitlab quantize SOURCE --out FILE.onnx`).

The fp32 ONNX file (an .onnx written by `digitlab export`, or a checkpoint's export, made once into the engine's
cache) goes through ONNX Runtime's quant_pre_process (shape inference, graph optimisation); its calibrator, fed by a
CalibrationDataReader over real training images of the model's dataset, sets the activation ranges; then
quantize_static writes the QDQ form: 8-bit weights, one scale per output channel by default, and 8-bit
activations, both uint8 (int8_file says why not int8 weights). (No noise stands in for a missing dataset:
calibration needs the real one.) The file keeps the
"digitlab" meta with a "quantization" entry, so `digitlab.engine.Recognizer` runs it like any export. Both files
then classify real test images on ONNX Runtime: the report holds both accuracies and their agreement, and says
when int8 lost more than `max_drop` points; that is reported, not raised (another method may do better).
Where post-training int8 loses more than that on a run's validation images, the run's model is fine-tuned with
int8 rounding in the loop first (`digitlab.compress.qat`) and quantized again."""

from __future__ import annotations

import contextlib
import io
import json
import math
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from digitlab.atomic import atomic_path
from digitlab.errors import ConfigError, DigitlabError
from digitlab.export import METADATA_KEY, ExportError

# method -> onnxruntime CalibrationMethod and its calibrator's options; calibrated here, not in quantize_static,
# which cannot pass num_bins: its Entropy default (128 bins into 128 quantized bins) leaves one candidate range,
# the full one, and comes out identical to MinMax. On the bundled MNIST model, 1000 calibration images, per channel:
# minmax 99.59%, entropy 99.47%, percentile 99.59% on the 10,000 test images (fp32 99.59%).
METHODS = {"minmax": ("MinMax", {}),
           "entropy": ("Entropy", {"num_bins": 2048, "num_quantized_bins": 128}),  # TensorRT's recipe
           "percentile": ("Percentile", {"num_bins": 2048, "percentile": 99.999})}
CALIBRATION_BATCH = 100  # images per calibration run
CALIBRATION_SEED = 0  # the calibration images are drawn at random from the training images with it


class QuantizeError(ExportError):
    """A quantization that failed, or an ONNX file that cannot be quantized."""


QAT_MODES = ("auto", "always", "never")


@dataclass(frozen=True)
class QuantizeReport:
    path: Path
    bytes: int  # the int8 file
    fp32_bytes: int
    calibration: str  # where the calibration images came from
    images: int  # test images both files classified
    source: str  # where they came from
    fp32_accuracy: float
    int8_accuracy: float
    agreement: float  # share of images whose predicted class is the same
    max_prob_diff: float  # largest |calibrated probability (int8) - (fp32)|
    drop: float  # fp32 accuracy - int8 accuracy, in percentage points
    degraded: bool  # drop > max_drop
    qat: dict[str, Any] | None = None  # the quantization-aware fine-tune, when it ran (or why it could not)


def quantize(source: Any, out: str | Path, *, data_dir: str | Path | None = None, calibration: int = 1000,
             method: str = "minmax", per_channel: bool = True, eval_images: int = 0,
             max_drop: float = 0.1, qat: str = "auto", qat_epochs: float = 1.0, qat_lr: float = 0.0,
             progress: bool = False) -> QuantizeReport:
    """Write an int8 copy of `source` to `out`, checked against fp32 on real test images.

    source: a checkpoint (run folder, .safetensors file, loaded Checkpoint; None: the bundled MNIST classifier) or
    an .onnx file written by `digitlab export`. data_dir: where the model's dataset is (default: where its run
    found it, then $DIGITLAB_DATA, then the cache). calibration: training images that set the activation ranges.
    method: how the ranges come from them: "minmax" (the extremes), "entropy" (the range that keeps the KL
    divergence of the histogram smallest) or "percentile" (99.999% of the values). per_channel: a weight scale per
    output channel, else one per tensor. eval_images: test images to compare on (0: all of them). max_drop:
    accuracy points int8 may lose before the report says `degraded`. A checkpoint is exported (checked against
    PyTorch) into the engine's cache first, as `Recognizer(checkpoint)` does.

    qat: quantization-aware fine-tuning (digitlab.compress.qat) of a trained checkpoint's model, `qat_epochs`
    passes over its run's training images at `qat_lr` (0: a tenth of the run's rate): "auto" when post-training
    int8 loses more than max_drop points on the run's *validation* images (the test images only report),
    "always", or "never". The fine-tuned model is quantized the same way, and the int8 file that does better on
    validation is written; the report's `qat` says what was tried and chosen."""
    if calibration < 1:
        raise ConfigError(f"calibration must be >= 1 image, got {calibration}")
    if method not in METHODS:
        raise ConfigError(f"method must be one of {', '.join(METHODS)}, got {method!r}")
    if eval_images < 0:
        raise ConfigError(f"eval_images must be >= 0 (0: the whole test split), got {eval_images}")
    if qat not in QAT_MODES:
        raise ConfigError(f"qat must be one of {', '.join(QAT_MODES)}, got {qat!r}")
    if qat_epochs <= 0 or qat_lr < 0:
        raise ConfigError(f"qat_epochs must be > 0 and qat_lr >= 0, got {qat_epochs:g} and {qat_lr:g}")
    try:
        import onnx  # noqa: F401 - these fail here, not halfway, when one is missing
        import onnxruntime as ort
        import onnxruntime.quantization  # noqa: F401
    except ImportError:
        raise ExportError("int8 quantization needs onnx and onnxruntime: pip install -e '.[onnx]'") from None

    from digitlab.engine import Recognizer, onnx_cache
    from digitlab.infer import as_checkpoint, recorded_data_dir

    threads = torch.get_num_threads()
    if isinstance(source, (str, Path)) and str(source).endswith(".onnx"):
        if not Path(source).is_file():
            raise QuantizeError(f"{source}: no such ONNX file")
        ckpt, fp32_path = None, Path(source)
        try:
            fp32 = Recognizer(fp32_path, threads=threads)  # a file without digitlab's meta is refused here
        except DigitlabError:
            raise
        except Exception as e:  # onnx's and ONNX Runtime's parse errors
            raise QuantizeError(f"{source}: not a readable ONNX file ({one_line(e)})") from e
        meta = fp32.meta
    else:
        ckpt = as_checkpoint(source)
        fp32 = Recognizer(ckpt, threads=threads)  # exports into the cache on first use
        meta, fp32_path = ckpt.meta, onnx_cache(ckpt.meta)
    if "quantization" in meta:
        raise QuantizeError(f"{fp32_path}: already quantized ({meta['quantization']['method']}); give the fp32 "
                            f"model")
    if qat == "always" and (ckpt is None or "config" not in ckpt.meta):
        raise QuantizeError("quantization-aware fine-tuning needs a checkpoint trained by `digitlab train` (its "
                            "model and run settings), not an .onnx file")
    root = data_dir or (recorded_data_dir(ckpt) if ckpt is not None else None)
    train, calibration_source = labelled_images(meta, "train", root, calibration, seed=CALIBRATION_SEED)
    test, test_source = labelled_images(meta, "test", root, eval_images)
    entry = {"format": "QDQ", "weights": "uint8", "activations": "uint8", "per_channel": per_channel,
             "method": method, "calibration_images": len(train), "calibration_source": calibration_source,
             "calibration_seed": CALIBRATION_SEED, "onnxruntime": ort.__version__}

    out = Path(out)
    with tempfile.TemporaryDirectory(prefix="digitlab-quantize-") as tmp:
        int8_path = int8_file(fp32_path, Path(tmp) / "int8.onnx", train.images, fp32.normalization, method,
                              per_channel, meta, entry)
        int8 = Recognizer(int8_path, threads=threads)  # the engine runs the file as users will
        tried = None
        if qat != "never" and ckpt is not None and "config" in ckpt.meta:
            tried = fine_tuned(ckpt, fp32, int8, Path(tmp), train.images, qat, qat_epochs, qat_lr, max_drop,
                               data_dir, method, per_channel, entry, progress, threads)
            if tried.get("chosen") == "qat":
                int8_path = Path(tmp) / "qat-int8.onnx"
                int8 = Recognizer(int8_path, threads=threads)
        elif qat == "auto" and ckpt is not None:
            tried = {"ran": False, "why": "the checkpoint holds no run settings to fine-tune with"}
        p32, p8 = fp32.probabilities(test.images), int8.probabilities(test.images)
        labels = test.labels.numpy()
        fp32_accuracy, int8_accuracy = float((p32.argmax(1) == labels).mean()), float((p8.argmax(1) == labels).mean())
        drop = 100 * (fp32_accuracy - int8_accuracy)
        with atomic_path(out) as tmp_out:
            shutil.copyfile(int8_path, tmp_out)
    return QuantizeReport(out, out.stat().st_size, fp32_path.stat().st_size, calibration_source, len(test),
                          test_source, fp32_accuracy, int8_accuracy, float((p32.argmax(1) == p8.argmax(1)).mean()),
                          float(np.abs(p8 - p32).max()), drop, drop > max_drop, tried)


def int8_file(fp32_path: Path, out: Path, images: torch.Tensor, norm: Any, method: str, per_channel: bool,
              meta: dict[str, Any], entry: dict[str, Any]) -> Path:
    """Quantize the fp32 ONNX file to `out` (QDQ), the activation ranges calibrated on `images` (uint8), the
    file's meta `meta` with the quantization `entry`."""
    import onnx
    import onnxruntime.quantization as ortq

    from digitlab.data import to_model_input

    tmp = out.parent
    prepared = tmp / f"{out.stem}-prepared.onnx"
    try:
        ortq.quant_pre_process(str(fp32_path), str(prepared))
        name = onnx.load(str(prepared)).graph.input[0].name
        x = to_model_input(images, norm).numpy()  # the engine's own normalisation
        calibrate, options = ortq.CalibrationMethod[METHODS[method][0]], METHODS[method][1]
        with contextlib.redirect_stdout(io.StringIO()):  # the histogram calibrators print their progress
            calibrator = ortq.create_calibrator(prepared, augmented_model_path=str(tmp / f"{out.stem}-augmented.onnx"),
                                                calibrate_method=calibrate, extra_options=options)
            calibrator.collect_data(calibration_reader(x, name))
            ortq.save_tensors_data(calibrator.compute_data(), tmp / f"{out.stem}-ranges.json")
        # uint8 activations x uint8 weights (U8U8). uint8 x int8 (U8S8), ONNX Runtime's default, saturates on x86
        # CPUs without VNNI (AVX2: VPMADDUBSW adds pairs of products in 16 bits): on such a machine the bundled MNIST
        # model (minmax, per channel, 1000 calibration images) read 99.50% of the 10,000 test images with U8S8 and
        # with S8S8 (converted to U8S8), 99.58% with U8S8 and 7-bit weights (reduce_range), 99.58% with U8U8, fp32
        # 99.59%; the four ran at about the same speed. U8U8 keeps all 8 bits and saturates on no CPU.
        ortq.quantize_static(str(prepared), str(out), None, calibration_cache_path=tmp / f"{out.stem}-ranges.json",
                             quant_format=ortq.QuantFormat.QDQ, per_channel=per_channel,
                             activation_type=ortq.QuantType.QUInt8, weight_type=ortq.QuantType.QUInt8,
                             calibrate_method=calibrate)
    except Exception as e:  # ONNX Runtime's own errors: one line of them
        raise QuantizeError(f"{fp32_path}: ONNX Runtime quantization failed: {one_line(e)}") from e
    proto = onnx.load(str(out))
    props = {p.key: p.value for p in proto.metadata_props}
    file_meta = {k: v for k, v in meta.items() if k != "config"}  # as export_onnx writes it
    onnx.helper.set_model_props(proto, {**props, METADATA_KEY: json.dumps({**file_meta, "quantization": entry})})
    onnx.save(proto, str(out))
    return out


def fine_tuned(ckpt: Any, fp32: Any, int8: Any, tmp: Path, calibration: torch.Tensor, qat: str, epochs: float,
               lr: float, max_drop: float, data_dir: str | Path | None, method: str, per_channel: bool,
               entry: dict[str, Any], progress: bool, threads: int) -> dict[str, Any]:
    """The quantization-aware fine-tune of `quantize`: decided on the run's validation images (else training
    images the calibration did not draw), run, quantized into tmp/qat-int8.onnx; returns what was measured and
    which int8 file does better on validation ("chosen": "qat" or "post-training")."""
    from digitlab.checkpoint import Checkpoint
    from digitlab.compress import qat as qat_module
    from digitlab.compress.pruning import fine_tune_config
    from digitlab.engine import Recognizer
    from digitlab.export import export_onnx
    from digitlab.train.trainer import prepare_data

    train_cfg = fine_tune_config(ckpt, data_dir, lr, 0, 0)
    data = prepare_data(train_cfg)
    if data.val is not None:
        val, val_source = data.val, "the run's validation images"
    else:  # no validation share: training images the calibration did not draw, as many as a test split's
        drawn = torch.randperm(len(data.train), generator=torch.Generator().manual_seed(CALIBRATION_SEED))
        val, val_source = data.train.subset(drawn[len(calibration):len(calibration) + 10_000]), "training images"
    labels = val.labels.numpy()

    def accuracy(engine) -> float:
        return float((engine.logits(val.images).argmax(1) == labels).mean())

    fp32_val, ptq_val = accuracy(fp32), accuracy(int8)
    result = {"ran": False, "decided_on": f"{val_source} ({len(val)})", "fp32_val_accuracy": fp32_val,
              "post_training_val_accuracy": ptq_val, "max_drop": max_drop}
    if qat == "auto" and 100 * (fp32_val - ptq_val) <= max_drop:
        return result | {"why": f"post-training int8 lost {100 * (fp32_val - ptq_val):.2f} points on validation, "
                                f"no more than {max_drop:g}"}
    torch_threads = torch.get_num_threads()
    if train_cfg.threads:
        torch.set_num_threads(train_cfg.threads)
    try:
        model, metrics = qat_module.finetune(ckpt.model, data, train_cfg, ckpt.normalization, len(ckpt.classes),
                                             epochs, per_channel, calibration, progress)
    finally:
        torch.set_num_threads(torch_threads)
    tuned = Checkpoint(model, {**ckpt.meta, "weights_sha256": None})
    export_onnx(tuned, tmp / "qat-fp32.onnx", data_dir=data_dir, images=256)
    settings = {"epochs": epochs, "steps": metrics["steps"], "lr": train_cfg.lr, "schedule": "cosine"}
    int8_file(tmp / "qat-fp32.onnx", tmp / "qat-int8.onnx", calibration, ckpt.normalization, method, per_channel,
              tuned.meta, entry | {"qat": settings})
    qat_val = accuracy(Recognizer(tmp / "qat-int8.onnx", threads=threads))
    return result | {"ran": True, **settings, "qat_val_accuracy": qat_val,
                     "chosen": "qat" if qat_val > ptq_val else "post-training"}


def calibration_reader(x: np.ndarray, input_name: str, batch_size: int = CALIBRATION_BATCH):
    """ONNX Runtime's CalibrationDataReader over model inputs x (N, 1, H, W), `batch_size` at a time (the class
    is made here because onnxruntime is imported only when quantizing)."""
    from onnxruntime.quantization import CalibrationDataReader

    class Batches(CalibrationDataReader):
        def __init__(self):
            self.starts = iter(range(0, len(x), batch_size))

        def get_next(self) -> dict[str, np.ndarray] | None:
            start = next(self.starts, None)
            return None if start is None else {input_name: x[start:start + batch_size]}

        def __len__(self) -> int:
            return math.ceil(len(x) / batch_size)

    return Batches()


def labelled_images(meta: dict[str, Any], share: str, data_dir: str | Path | None, count: int,
                    seed: int | None = None):
    """`count` (0: all) labelled images of the model's dataset, as a DigitDataset, and where they came from: its
    `share` split ("train" or "test"), or for a one-split dataset (digits, TibetanMNIST) the share its run carved
    out, which only the run's config knows (a checkpoint's meta holds it, an exported file's does not). With a
    seed they are drawn at random, else the first `count`."""
    from digitlab.data import get_spec, load_dataset
    from digitlab.train.config import TrainConfig
    from digitlab.train.trainer import one_split_defaults, prepare_data

    dataset = meta["dataset"]
    if share in get_spec(dataset).splits:
        data, where = load_dataset(dataset, share, data_dir=data_dir), f"{share} split"
    elif "config" in meta:
        root = None if data_dir is None else str(data_dir)
        cfg = one_split_defaults(TrainConfig.from_dict({**meta["config"], "data_dir": root}))
        data = getattr(prepare_data(cfg), share)
        where = {"train": "training share of the run", "test": "test share held out by the run"}[share]
    else:
        raise QuantizeError(f"{dataset} has one split and an exported file does not say which share of it the run "
                            f"trained on: quantize the run's checkpoint instead")
    n = min(count or len(data), len(data))
    idx = (torch.arange(n) if seed is None
           else torch.randperm(len(data), generator=torch.Generator().manual_seed(seed))[:n])
    return data.subset(idx), f"{dataset} {where} ({n} images)"


def one_line(e: Exception) -> str:
    """The first line of an error's message: onnx's and ONNX Runtime's run long."""
    text = str(e).strip()
    return text.splitlines()[0] if text else type(e).__name__
