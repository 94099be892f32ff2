"""Pruning: the sparsity asked for is really reached and really gone from the file; channel pruning shrinks the
layers and the checkpoint loads at the smaller shapes (eval, export, the Recognizer take it); the energy-aware
schedule prunes layers in order of cost; compact storage round-trips; bad settings are one-line errors."""

import json
import re

import numpy as np
import pytest
import torch
from torch import nn

from digitlab.checkpoint import load_checkpoint
from digitlab.cli import main
from digitlab.compress.config import PruneConfig
from digitlab.compress.pruning import layer_table, prune, total_row
from digitlab.compress.storage import pack, unpack
from digitlab.data import load_dataset
from digitlab.errors import ConfigError, DigitlabError
from digitlab.train.config import TrainConfig


@pytest.fixture(scope="module")
def digits_run(tmp_path_factory):
    from digitlab.train.trainer import fit

    out = tmp_path_factory.mktemp("digits-prune")
    fit(TrainConfig(model="fastcnn", dataset="digits", epochs=4, batch_size=32, lr=3e-3), out, progress=False)
    return out


def conv_linear_weights(model: nn.Module) -> list[torch.Tensor]:
    return [m.weight for m in model.modules() if isinstance(m, (nn.Conv2d, nn.Linear))]


def test_weights_reach_the_sparsity_and_the_file_holds_only_the_survivors(digits_run, tmp_path):
    out = tmp_path / "sparse"
    s = prune(digits_run, out, PruneConfig(amount=0.75, steps=3, finetune_epochs=1), progress=False,
              log=lambda line: None)
    ckpt = load_checkpoint(out)
    weights = conv_linear_weights(ckpt.model)
    zeros = sum(int((w == 0).sum()) for w in weights) / sum(w.numel() for w in weights)
    assert 0.749 <= zeros <= 0.751
    assert s["total_after"]["sparsity"] == pytest.approx(zeros)
    dense = (digits_run / "model.safetensors").stat().st_size
    assert s["bytes_before"] == dense and s["bytes"] < 0.45 * dense  # values + 1-bit mask, not zeros
    assert ckpt.meta["storage"]["format"] == "sparse" and ckpt.meta["pruning"]["config"]["amount"] == 0.75
    assert [r["step"] for r in s["steps"]] == ["step 1/3", "step 2/3", "step 3/3"]
    assert s["steps"][0]["nonzero"] > s["steps"][1]["nonzero"] > s["steps"][2]["nonzero"]
    assert s["test_accuracy"] >= s["test_accuracy_before"] - 0.05  # fine-tuning keeps it (digits: 268 test images)
    summary = json.loads((out / "prune.json").read_text())
    assert summary["test_accuracy"] == ckpt.meta["metrics"]["test_accuracy"] and (out / "layers.png").is_file()


def test_channels_shrink_the_layers_and_the_pruned_checkpoint_works_everywhere(digits_run, tmp_path, capsys):
    out = tmp_path / "thin"
    code = main(["prune", str(digits_run), "--out", str(out), "--granularity", "channels", "--schedule", "energy",
                 "--amount", "0.5", "--local-epochs", "0.5", "--finetune-epochs", "1", "--no-progress"])
    printed = capsys.readouterr().out
    assert code == 0
    original, pruned = load_checkpoint(digits_run), load_checkpoint(out)
    before, after = conv_linear_weights(original.model), conv_linear_weights(pruned.model)
    assert [w.shape[0] for w in after[:-1]] == [w.shape[0] // 2 for w in before[:-1]]  # half the filters
    assert after[-1].shape[0] == 10 and after[-1].shape[1] == before[-1].shape[1] // 2  # the head: fewer inputs
    assert total_row(layer_table(pruned.model))["macs"] < 0.4 * total_row(layer_table(original.model))["macs"]
    # energy-aware: layers in order of their multiply-accumulates, each fine-tuned alone, then all together
    macs = {r["layer"]: r["macs"] for r in layer_table(original.model)}
    summary = json.loads((out / "prune.json").read_text())
    steps = [r["step"].split()[2] for r in summary["steps"][:-1]]
    assert steps == sorted(steps, key=lambda n: -macs[n]) and summary["steps"][-1]["step"] == "global fine-tune"
    assert "features.0.0" in printed and "16x1x5x5 -> 8x1x5x5" in printed and "test accuracy" in printed
    # the smaller model evaluates, exports (checked against PyTorch) and runs in the Recognizer
    assert main(["eval", "--checkpoint", str(out)]) == 0
    assert f"{100 * summary['test_accuracy']:.2f}%" in capsys.readouterr().out
    from digitlab.engine import Recognizer
    from digitlab.export import export_onnx

    report = export_onnx(out, tmp_path / "thin.onnx", images=100)
    assert report.max_abs_diff < 1e-3
    images = load_dataset("digits", "all").images[:64]
    fast, slow = Recognizer(tmp_path / "thin.onnx"), Recognizer(out, backend="torch")
    assert np.abs(fast.logits(images) - slow.logits(images)).max() < 1e-3


def test_storage_round_trips_sparse_exactly_and_int8_within_half_a_step():
    gen = torch.Generator().manual_seed(0)
    w = torch.randn(16, 8, 3, 3, generator=gen)
    w[torch.rand(w.shape, generator=gen) < 0.8] = 0
    state = {"conv.weight": w, "conv.bias": torch.randn(16, generator=gen), "fc.weight": torch.randn(10, 40)}
    for storage in ("sparse", "int8", "sparse-int8"):
        tensors, info = pack(state, storage)
        back = unpack(tensors, info)
        assert back.keys() == state.keys() and all(back[k].shape == state[k].shape for k in state)
        assert torch.equal(back["conv.bias"], state["conv.bias"])
        assert (back["conv.weight"][w == 0] == 0).all()  # pruned weights stay exactly zero
        step = w.reshape(16, -1).abs().amax(1) / 127
        err = (back["conv.weight"] - w).reshape(16, -1).abs().amax(1)
        assert (err == 0).all() if storage == "sparse" else (err <= step / 2 + 1e-7).all()
    assert "fc.weight:mask" not in pack(state, "sparse")[0]  # dense tensors are not stored sparse
    assert pack(state, "sparse")[0]["conv.weight:values"].numel() == int((w != 0).sum())


@pytest.mark.parametrize("argv, message", [
    (["--amount", "1.5"], "amount must be in (0, 1), got 1.5"),
    (["--steps", "0"], "steps must be >= 1, got 0"),
    (["--storage", "zip"], "storage must be one of sparse, sparse-int8, dense, int8"),
])
def test_bad_settings_are_one_line_errors(digits_run, tmp_path, capsys, argv, message):
    with pytest.raises(ConfigError, match=re.escape(message.split(",")[0])):
        PruneConfig(**{argv[0][2:]: argv[1] if argv[0] == "--storage" else float(argv[1])})
    assert main(["prune", str(digits_run), "--out", str(tmp_path / "x"), *argv]) != 0
    err = capsys.readouterr().err
    assert message in err and err.count("\n") == 1 and "Traceback" not in err
    assert not (tmp_path / "x").exists()


def test_a_used_folder_is_refused(digits_run, tmp_path):
    prune(digits_run, tmp_path / "once", PruneConfig(amount=0.5, steps=1, finetune_epochs=0), progress=False,
          log=lambda line: None)
    with pytest.raises(DigitlabError, match="already holds a pruned model"):
        prune(digits_run, tmp_path / "once", PruneConfig(amount=0.5, steps=1), progress=False)


def test_layers_tied_by_a_residual_add_lose_their_channels_once(tmp_path):
    """In a residual network the convs that feed one add share their channels: pruning half of each layer's
    channels in the energy-aware order must leave half of them, not a quarter."""
    from digitlab.train.trainer import fit

    run = tmp_path / "rescnn"
    fit(TrainConfig(model="rescnn", dataset="digits", epochs=1, batch_size=64, limit=256), run, progress=False)
    s = prune(run, tmp_path / "thin", PruneConfig(granularity="channels", schedule="energy", amount=0.5,
                                                  local_epochs=0, finetune_epochs=0), progress=False,
              log=lambda line: None)
    before = {r["layer"]: r["shape"][0] for r in s["layers_before"]}
    after = {r["layer"]: r["shape"][0] for r in s["layers_after"]}
    last = list(before)[-1]
    assert all(after[n] == before[n] // 2 for n in before if n != last), (before, after)
