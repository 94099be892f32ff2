"""The bundled pretrained sets (digitlab.pretrained): each classifier scores on its real test images what its
card says, the registry names them as timm does, create_model(name, pretrained=...) gives their weights, and
`digitlab models --pretrained` lists them."""

import json

import pytest
import torch

import digitlab
from digitlab import pretrained
from digitlab.cli import main
from digitlab.errors import ModelError
from digitlab.infer import evaluate_checkpoint


@pytest.mark.parametrize("name", pretrained.names())
def test_each_bundled_classifier_scores_as_its_card_says(name, shared_data_dir):
    card = pretrained.card(name)
    report = evaluate_checkpoint(pretrained.bundled(name), data_dir=shared_data_dir)
    assert report["dataset"] == card["dataset"] and report["images"] >= 1500  # Kannada: 15% of its test split
    assert report["accuracy"] == pytest.approx(card["test_accuracy"], abs=1e-4)  # the whole test set, as recorded
    assert card["verifier"] and card["line_reader"] and card["field_reader"]
    text = (pretrained.bundled(name) / "README.md").read_text()
    assert f"{100 * card['test_accuracy']:.2f}%" in text  # the card in the folder gives the same figure
    meta = json.loads((pretrained.bundled(name) / "model.json").read_text())
    assert meta["weights_sha256"] and meta["temperature"] > 0


def test_the_registry_and_create_model_give_the_bundled_weights(capsys):
    names = pretrained.list_pretrained()
    assert names == sorted(f"{pretrained.card(n)['model']}.{n}" for n in pretrained.names())
    assert "fastcnn.mnist" in names and pretrained.list_pretrained("*.mnist") == ["fastcnn.mnist"]
    model = digitlab.create_model("fastcnn", pretrained="mnist")
    same = digitlab.create_model("fastcnn", pretrained="fastcnn.mnist")
    bundled = pretrained.pretrained_model("fastcnn", "mnist")
    assert not model.training
    for a, b in zip(model.state_dict().values(), bundled.state_dict().values()):
        assert torch.equal(a, b)
    with torch.no_grad():  # a fresh copy each time: changing one leaves the others and the cache alone
        next(same.parameters()).zero_()
    assert not torch.equal(next(same.parameters()), next(model.parameters()))
    with pytest.raises(ModelError, match="no pretrained 'lenet5' weights 'mnist'; pretrained: .*fastcnn.mnist"):
        digitlab.create_model("lenet5", pretrained="mnist")
    with pytest.raises(ModelError, match="takes its arguments from the bundled weights"):
        digitlab.create_model("fastcnn", pretrained="mnist", num_classes=5)
    assert main(["models", "--pretrained"]) == 0
    printed = capsys.readouterr().out
    assert printed.splitlines()[0].split()[:3] == ["pretrained", "dataset", "test"]
    for name in names:
        assert name in printed


def test_eval_of_a_bundled_set_writes_nothing_into_the_package(shared_data_dir, capsys):
    before = sorted(pretrained.ROOT.rglob("*.png"))
    assert main(["eval", "--checkpoint", "mnist", "--data-dir", str(shared_data_dir)]) == 0
    assert "confusion matrix:" not in capsys.readouterr().out
    assert sorted(pretrained.ROOT.rglob("*.png")) == before
