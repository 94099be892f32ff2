"""The bundled MNIST reader (digitlab.pretrained): `read(image)` and `digitlab read IMAGE` work with no
checkpoint named, offline, and read real handwriting well."""

import json

import pytest
from PIL import Image
from read_helpers import string_image, sure_digits, test_digits  # noqa: F401 - fixtures
from test_read_cli import cli  # noqa: F401 - fixture

from digitlab.errors import DigitlabError
from digitlab.pretrained import bundled, names
from digitlab.read import read, synth
from digitlab.read.recognize import bundled_reader


def test_the_bundled_set_is_a_run_folder_with_its_helpers():
    model, checker, second = bundled_reader()
    assert "mnist" in names() and bundled() == bundled("mnist")
    assert model.meta["dataset"] == checker.meta["dataset"] == second.meta["dataset"] == "mnist"
    assert model.meta["temperature"] > 0 and "logit_reference" in model.meta
    assert checker.meta["role"] == "verifier" and second.meta["role"] == "line-reader"
    assert (bundled() / "README.md").is_file()
    with pytest.raises(DigitlabError, match=f"no bundled model 'klingon' .bundled: {', '.join(names())}"):
        bundled("klingon")


def test_read_with_no_checkpoint_reads_hard_strings_of_unseen_handwriting(test_digits):
    """Two lines of 1-10 MNIST *test* digits each, with touching pairs, ruling, boxes, texture and blur
    (seed 3: neither a reported nor a tuning seed). Without its line reader the same classifier reads
    about two thirds of such images; with it about nine in ten."""
    samples = synth.generate(*test_digits, synth.HARD, 30, seed=3)
    right = sum(read(s.image).text == s.text for s in samples)
    assert right >= 24, f"{right} of 30"
    model, checker, _ = bundled_reader()
    alone = sum(read(s.image, model, verifier=checker).text == s.text for s in samples)
    assert alone < right


def test_digitlab_read_with_no_model_uses_the_bundled_reader(cli, test_digits, tmp_path):
    model, _, _ = bundled_reader()
    page = tmp_path / "amount.png"
    # trained with label smoothing 0.1, the model's raw softmax tops out near 0.9
    Image.fromarray(string_image(sure_digits(model, *test_digits, sure=0.85), "30715")).save(page)
    code, out, err = cli("read", page)
    assert code == 0 and out.strip().startswith(f"{page}: 30715") and err == ""
    code, out, _ = cli("read", page, "--json", "--line-reader", "none", "--verifier", "none")
    assert code == 0 and json.loads(out)[0]["text"] == "30715"


def test_eval_read_with_no_model_scores_the_bundled_reader(cli, test_digits, tmp_path):
    synth.write_benchmark(tmp_path / "easy", *test_digits, synth.EASY, n=8, seed=5)
    code, out, _ = cli("eval-read", tmp_path / "easy", "--json")
    report = json.loads(out)
    assert code == 0 and report["images"] == 8 and report["exact_match"] >= 6 / 8
