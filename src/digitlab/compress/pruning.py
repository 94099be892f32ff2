"""Pruning a trained classifier (`digitlab prune`), with fine-tuning by the one training loop.

Two granularities:
- "weights": unstructured magnitude pruning (torch.nn.utils.prune): the smallest conv and linear weights
  are set to zero, ranked across all layers at once; the checkpoint stores only the survivors (sparse
  storage, digitlab.compress.storage). Smaller, not faster on a dense kernel.
- "channels": structured pruning (Torch-Pruning's dependency graph): whole filters, channels and neurons
  are cut out, with every layer that depends on them (BatchNorm, the next layer's inputs, residual
  partners, depthwise convolutions), so the model is smaller and faster.

Two schedules:
- "iterative": every layer at once, `steps` rounds of prune -> fine-tune towards the target (a cubic ramp
  for weights, Zhu & Gupta 2017; linear for channels).
- "energy": the energy-aware schedule (Yang et al. 2017, named as its next step by the MobileNetV3 digit
  system): layers are pruned one at a time in order of their cost (multiply-accumulates, or an energy
  estimate that counts memory accesses), each followed by a short fine-tune of that layer alone, and the
  whole model is fine-tuned at the end.

The pruned checkpoint is an ordinary digitlab checkpoint: eval, predict, read and export take it."""

from __future__ import annotations

import copy
import json
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import torch
import torch.nn.utils.prune as torch_prune
from torch import nn

from digitlab.compress.config import PruneConfig
from digitlab.errors import DigitlabError

BUFFER_ACCESS = 6.0  # energy of one on-chip buffer access in MACs (Eyeriss, Chen et al. 2016: ~6x a MAC)


# --- what each layer holds and costs ------------------------------------------------------------------------

def prunable_layers(model: nn.Module) -> dict[str, nn.Module]:
    """The conv and linear layers by name, in forward order of definition."""
    return {name: m for name, m in model.named_modules() if isinstance(m, (nn.Conv2d, nn.Linear))}


def layer_table(model: nn.Module, input_size: tuple[int, ...] = (1, 28, 28)) -> list[dict[str, Any]]:
    """Per conv/linear layer for one image: weights (all and non-zero), multiply-accumulates (dense, and those
    with a non-zero weight) and the energy estimate (MACs + BUFFER_ACCESS x (weights + input + output
    activations)), from a hooked dry pass in eval mode."""
    rows: dict[str, dict[str, Any]] = {}

    def hook(name: str):
        def record(m: nn.Module, inputs: tuple, out: torch.Tensor) -> None:
            w = m.weight
            per_output = w[0].numel() if isinstance(m, nn.Conv2d) else m.in_features
            macs = out.numel() * per_output
            nonzero = int((w != 0).sum())
            rows[name] = {
                "layer": name, "kind": type(m).__name__, "shape": list(w.shape), "weights": w.numel(),
                "nonzero": nonzero, "sparsity": 1 - nonzero / w.numel(), "macs": macs,
                "nonzero_macs": round(macs * nonzero / w.numel()),
                "energy": macs + BUFFER_ACCESS * (w.numel() + inputs[0].numel() + out.numel())}
        return record

    handles = [m.register_forward_hook(hook(n)) for n, m in prunable_layers(model).items()]
    was_training = model.training
    model.eval()
    try:
        with torch.no_grad():
            model(torch.zeros(1, *input_size))
    finally:
        for h in handles:
            h.remove()
        model.train(was_training)
    return list(rows.values())


def format_layer_table(before: list[dict[str, Any]], after: list[dict[str, Any]]) -> list[tuple[str, ...]]:
    """Rows for digitlab.table.format_table: each layer's shape, sparsity, weights and MACs before -> after."""
    now = {r["layer"]: r for r in after}
    rows = [("layer", "shape", "sparsity", "non-zero weights", "MACs (non-zero)")]
    for r in before + [total_row(before)]:
        a = now.get(r["layer"], total_row(after) if r["layer"] == "total" else r)
        shape = "x".join(map(str, r["shape"]))
        shape = shape if a["shape"] == r["shape"] else f"{shape} -> {'x'.join(map(str, a['shape']))}"
        rows.append((r["layer"], shape, f"{100 * a['sparsity']:.1f}%", f"{r['nonzero']:,} -> {a['nonzero']:,}",
                     f"{r['nonzero_macs']:,} -> {a['nonzero_macs']:,}"))
    return rows


def total_row(rows: list[dict[str, Any]]) -> dict[str, Any]:
    weights, nonzero = sum(r["weights"] for r in rows), sum(r["nonzero"] for r in rows)
    return {"layer": "total", "kind": "", "shape": [], "weights": weights, "nonzero": nonzero,
            "sparsity": 1 - nonzero / max(1, weights), "macs": sum(r["macs"] for r in rows),
            "nonzero_macs": sum(r["nonzero_macs"] for r in rows), "energy": sum(r["energy"] for r in rows)}


# --- the two granularities ------------------------------------------------------------------------------------

def zero_weights(layers: list[nn.Module], sparsity: float) -> None:
    """Zero the smallest-magnitude weights of `layers`, ranked together, until `sparsity` of them are zero
    (a mask on top of any earlier one: torch.nn.utils.prune applies the new amount to what is left)."""
    total = sum(m.weight.numel() for m in layers)
    zeros = sum(int((m.weight_mask == 0).sum()) for m in layers if hasattr(m, "weight_mask"))
    more = round(sparsity * total) - zeros
    if more > 0:  # an int amount: how many of the weights still standing go
        torch_prune.global_unstructured([(m, "weight") for m in layers],
                                        pruning_method=torch_prune.L1Unstructured, amount=more)


def make_permanent(model: nn.Module) -> None:
    """Fold the pruning masks into the weights (the zeros stay; the masks and hooks go)."""
    for m in model.modules():
        if torch_prune.is_pruned(m) and hasattr(m, "weight_orig"):
            torch_prune.remove(m, "weight")


def cut_channels(model: nn.Module, layer: nn.Module, keep: int, example: torch.Tensor) -> int:
    """Cut `layer`'s output channels (filters, or a linear layer's neurons) of least L2 magnitude, summed over
    the group of layers that depend on them, until it has `keep`; returns how many were cut."""
    import torch_pruning as tp

    current = layer.out_channels if isinstance(layer, nn.Conv2d) else layer.out_features
    if current <= keep:
        return 0
    graph = tp.DependencyGraph().build_dependency(model, example_inputs=example)
    fn = tp.prune_conv_out_channels if isinstance(layer, nn.Conv2d) else tp.prune_linear_out_channels
    group = graph.get_pruning_group(layer, fn, idxs=list(range(current)))
    scores = tp.importance.GroupMagnitudeImportance(p=2)(group)
    if scores is None:  # a layer whose channels nothing else may lose (e.g. tied to the output)
        return 0
    idxs = scores.argsort()[:current - keep].tolist()
    group = graph.get_pruning_group(layer, fn, idxs=idxs)
    if not graph.check_pruning_group(group):
        return 0
    group.prune()
    return len(idxs)


def channel_layers(model: nn.Module) -> dict[str, nn.Module]:
    """Layers whose output channels can be cut: every conv (not depthwise: its channels follow its input's) and
    linear layer except the last, which gives the class scores."""
    layers = prunable_layers(model)
    last = list(layers)[-1]
    return {n: m for n, m in layers.items() if n != last and not (isinstance(m, nn.Conv2d) and m.groups > 1)}


# --- the schedules ---------------------------------------------------------------------------------------------

@dataclass
class _Job:
    """What the schedules share: the model being pruned, its data and how it is fine-tuned."""
    model: nn.Module
    train_cfg: Any  # TrainConfig of the fine-tuning
    data: Any  # RunData
    norm: Any
    num_classes: int
    example: torch.Tensor
    progress: bool
    log: Callable[[str], None]
    history: list[dict[str, Any]]

    def finetune(self, epochs: float, label: str, only: nn.Module | None = None) -> None:
        from digitlab.infer import evaluate
        from digitlab.train.loop import steps_per_epoch, train_steps

        t0 = time.perf_counter()
        steps = round(epochs * steps_per_epoch(len(self.data.train), self.train_cfg.batch_size))
        frozen = []
        if only is not None:  # local fine-tune: the one layer's weights (and its bias) alone
            frozen = [p for p in self.model.parameters() if p.requires_grad and
                      not any(p is q for q in only.parameters())]
            for p in frozen:
                p.requires_grad_(False)
        try:
            if steps:
                cfg = self.train_cfg.replace(seed=self.train_cfg.seed + len(self.history))
                train_steps(self.model, self.data.train.images, self.data.train.labels, cfg, steps, norm=self.norm,
                            num_classes=self.num_classes, progress=self.progress, desc=label)
        finally:
            for p in frozen:
                p.requires_grad_(True)
        val = self.data.val if self.data.val is not None else self.data.test
        acc = evaluate(self.model, val, self.norm, self.num_classes).accuracy
        total = total_row(layer_table(self.model))
        row = {"step": label, "fine_tune_steps": steps, "val_accuracy": acc, "nonzero": total["nonzero"],
               "nonzero_macs": total["nonzero_macs"], "seconds": time.perf_counter() - t0}
        self.history.append(row)
        self.log(f"{label}: {total['nonzero']:,} weights, {total['nonzero_macs']:,} MACs; fine-tuned {steps} steps, "
                 f"val accuracy {100 * acc:.2f}% ({row['seconds']:.0f}s)")


def _iterative(job: _Job, cfg: PruneConfig) -> None:
    layers = list(prunable_layers(job.model).values())
    original = {n: _width(m) for n, m in channel_layers(job.model).items()}
    for step in range(1, cfg.steps + 1):
        if cfg.granularity == "weights":
            zero_weights(layers, cfg.amount * (1 - (1 - step / cfg.steps) ** 3))
        else:
            share = cfg.amount * step / cfg.steps
            for name, m in channel_layers(job.model).items():
                cut_channels(job.model, m, max(1, round(original[name] * (1 - share))), job.example)
        job.finetune(cfg.finetune_epochs, f"step {step}/{cfg.steps}")


def _energy(job: _Job, cfg: PruneConfig) -> None:
    candidates = channel_layers(job.model) if cfg.granularity == "channels" else prunable_layers(job.model)
    original = {n: _width(m) for n, m in candidates.items()}  # layers tied to one another lose their channels once
    cost = {r["layer"]: r["macs" if cfg.cost == "macs" else "energy"] for r in layer_table(job.model)}
    order = sorted(candidates, key=lambda n: -cost[n])
    job.log(f"energy-aware order ({cfg.cost}): " + ", ".join(order))
    for i, name in enumerate(order, 1):
        m = candidates[name]
        if cfg.granularity == "weights":
            zero_weights([m], cfg.amount)
        elif not cut_channels(job.model, m, max(1, round(original[name] * (1 - cfg.amount))), job.example):
            continue  # its channels were already cut with a partner's
        job.finetune(cfg.local_epochs, f"layer {i}/{len(order)} {name}", only=m)
    job.finetune(cfg.finetune_epochs, "global fine-tune")


def _width(m: nn.Module) -> int:
    return m.out_channels if isinstance(m, nn.Conv2d) else m.out_features


# --- the command ---------------------------------------------------------------------------------------------

def fine_tune_config(ckpt: Any, data_dir: str | Path | None, lr: float, seed: int, threads: int) -> Any:
    """The TrainConfig that fine-tunes a checkpoint's model (pruning, quantization-aware training): the run's
    own, its data where the run found it unless `data_dir` says otherwise, at `lr` (0: a tenth of the run's),
    cosine-decayed, no early stopping, in `threads` torch threads (0: the run's setting)."""
    from digitlab.infer import recorded_data_dir
    from digitlab.train.config import TrainConfig

    root = data_dir or recorded_data_dir(ckpt)
    run_cfg = TrainConfig.from_dict({**ckpt.meta["config"], "data_dir": str(root) if root is not None else None})
    return run_cfg.replace(lr=lr or run_cfg.lr / 10, schedule="cosine", seed=seed, patience=0, stop_at=0.0,
                           compile=False, channels_last=False, keep="last", threads=threads or run_cfg.threads)


def prune(checkpoint: Any, out: str | Path, config: PruneConfig | None = None, *, progress: bool = True,
          log: Callable[[str], None] = print) -> dict[str, Any]:
    """Prune a classifier checkpoint (run folder, .safetensors, loaded Checkpoint, or None: the bundled MNIST
    classifier) and save the fine-tuned result as a checkpoint in `out`, with prune.json (settings, per-layer
    table before and after, each step's validation accuracy, test accuracy before and after) and layers.png.
    Fine-tuning trains on the run's own training images with the run's own settings (augmentation, label
    smoothing, batch size) at a lower learning rate. Returns the summary written to prune.json."""
    from digitlab.atomic import write_text
    from digitlab.checkpoint import save_checkpoint
    from digitlab.compress.storage import pack, unpack
    from digitlab.infer import as_checkpoint, evaluate
    from digitlab.models import model_kind
    from digitlab.train.loop import calibrate
    from digitlab.train.trainer import prepare_data

    config = config or PruneConfig()
    ckpt = as_checkpoint(checkpoint)
    if model_kind(ckpt.meta["model"]) != "classifier" or "config" not in ckpt.meta:
        raise DigitlabError(f"prune takes a classifier trained by `digitlab train`; {ckpt.meta['model']!r} is not one")
    out = Path(out)
    if (out / "prune.json").exists():
        raise DigitlabError(f"{out} already holds a pruned model; give another --out")
    train_cfg = fine_tune_config(ckpt, config.data_dir, config.lr, config.seed, config.threads)
    lr = train_cfg.lr
    data = prepare_data(train_cfg)
    threads = torch.get_num_threads()
    if train_cfg.threads:
        torch.set_num_threads(train_cfg.threads)
    try:
        model = copy.deepcopy(ckpt.model).to(memory_format=torch.contiguous_format).train()
        norm, classes = ckpt.normalization, ckpt.classes
        size = tuple(ckpt.meta.get("input_size", (1, 28, 28)))
        test_before = evaluate(model, data.test, norm, len(classes)).accuracy
        before = layer_table(model, size)
        log(f"pruning {ckpt.meta['model']} ({total_row(before)['nonzero']:,} weights, test accuracy "
            f"{100 * test_before:.2f}%): {config.granularity}, {config.schedule}, amount {config.amount:g}")
        job = _Job(model, train_cfg, data, norm, len(classes), torch.zeros(1, *size), progress, log, [])
        t0 = time.perf_counter()
        (_energy if config.schedule == "energy" else _iterative)(job, config)
        make_permanent(model)
        seconds = time.perf_counter() - t0
        model.eval()
        if "int8" in config.storage:  # int8 storage rounds the weights: calibrate and test what users will get
            tensors, info = pack(model.state_dict(), config.storage)
            model.load_state_dict(unpack(tensors, info))
        val = data.val if data.val is not None else data.test
        cal = calibrate(model, val.images, val.labels, norm, log=log)
        after = layer_table(model, size)
        summary = {
            "source": {"model": ckpt.meta["model"], "weights_sha256": ckpt.meta["weights_sha256"]},
            "config": asdict(config),
            "fine_tune": {"lr": lr, "schedule": "cosine", "batch_size": train_cfg.batch_size},
            "test_accuracy_before": test_before,
            "test_accuracy": evaluate(model, data.test, norm, len(classes)).accuracy,
            "bytes_before": source_bytes(checkpoint), "layers_before": before, "layers_after": after,
            "total_before": total_row(before), "total_after": total_row(after), "steps": job.history,
            "seconds": seconds}
        meta = {k: v for k, v in ckpt.meta.items() if k not in ("weights_sha256", "code_version", "saved_at")}
        meta.update(temperature=cal.temperature, temperature_val_errors=cal.errors, logit_reference=cal.logit_reference,
                    metrics={"test_accuracy": summary["test_accuracy"], "test_accuracy_before": test_before},
                    pruning={k: summary[k] for k in ("source", "config")} | {
                        "weights": summary["total_after"]["nonzero"], "macs": summary["total_after"]["nonzero_macs"]})
        summary["bytes"] = save_checkpoint(out, model, meta, storage=config.storage).stat().st_size
        summary["figure"] = plot_layers(before, after, out / "layers.png")
        write_text(out / "prune.json", json.dumps(summary, indent=2))
    finally:
        torch.set_num_threads(threads)
    return summary


def source_bytes(checkpoint: Any) -> int | None:
    """Bytes of the weights file of a checkpoint given by path (None: the bundled one), else None."""
    from digitlab.checkpoint import resolve

    if checkpoint is None:
        from digitlab.pretrained import bundled

        checkpoint = bundled()
    return resolve(checkpoint)[0].stat().st_size if isinstance(checkpoint, (str, Path)) else None


def plot_layers(before: list[dict[str, Any]], after: list[dict[str, Any]], path: Path) -> str:
    """Bars of each layer's non-zero weights and non-zero MACs before and after pruning (log scale)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from digitlab.atomic import atomic_path

    names = [r["layer"] for r in before]
    now = {r["layer"]: r for r in after}
    x = range(len(names))
    fig, axes = plt.subplots(1, 2, figsize=(max(7, 0.5 * len(names) + 4), 3.6))
    for ax, key, title in zip(axes, ("nonzero", "nonzero_macs"), ("non-zero weights", "multiply-accumulates")):
        ax.bar([i - 0.2 for i in x], [r[key] for r in before], width=0.4, label="before")
        ax.bar([i + 0.2 for i in x], [now[n][key] if n in now else 0 for n in names], width=0.4, label="after")
        ax.set_yscale("log")
        ax.set_xticks(list(x), names, rotation=60, ha="right", fontsize=7)
        ax.set_title(title)
    axes[0].legend()
    fig.tight_layout()
    with atomic_path(path) as tmp:
        fig.savefig(tmp, dpi=100, format="png")
    plt.close(fig)
    return path.name
