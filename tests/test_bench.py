"""`digitlab bench`: one row per checkpoint and format, with the sizes of the real files, the accuracy on the whole
test set (the same in PyTorch and ONNX Runtime fp32), and a speed and latency for each batch size asked for.
Correctness only: how fast is for benchmarks/inference.py, never a test."""

import json

import pytest

from digitlab.bench import bench, file_sizes
from digitlab.cli import main
from digitlab.engine import onnx_cache
from digitlab.errors import ConfigError


def test_each_format_is_measured_on_the_whole_test_set(digits_run, cache):
    rows = bench([digits_run], labels=["digits"], batches=(1, 16), seconds=0.05, log=lambda line: None)
    assert [(r.model, r.format) for r in rows] == [("digits", "pytorch"), ("digits", "onnx"), ("digits", "int8")]
    pytorch, onnx, int8 = rows
    summary = json.loads((digits_run / "summary.json").read_text())
    assert pytorch.test_images == 268 and pytorch.test_accuracy == pytest.approx(summary["test_accuracy"])
    assert onnx.test_accuracy == pytorch.test_accuracy and abs(int8.test_accuracy - onnx.test_accuracy) < 0.02
    assert (pytorch.bytes, pytorch.gzip_bytes) == file_sizes(digits_run / "model.safetensors")
    assert (onnx.bytes, onnx.gzip_bytes) == file_sizes(onnx_cache(pytorch_meta(digits_run)))
    assert int8.bytes < onnx.bytes / 2 and 0 < pytorch.gzip_bytes < pytorch.bytes
    for r in rows:
        assert set(r.images_per_s) == {1, 16} and all(v > 0 for v in r.images_per_s.values())
        assert 0 < r.p50_us <= r.p99_us and r.weights == r.nonzero > 0 and r.macs > r.weights


def pytorch_meta(run):
    from digitlab.checkpoint import load_checkpoint

    return load_checkpoint(run).meta


def test_cli_prints_the_table_and_writes_json(digits_run, cache, tmp_path, capsys):
    out = tmp_path / "bench.json"
    assert main(["bench", str(digits_run), "--formats", "onnx", "--batches", "1,4", "--seconds", "0.05",
                 "--json", str(out)]) == 0
    printed = capsys.readouterr().out
    assert "img/s @4" in printed and "onnx" in printed and "p99 us" in printed
    rows = json.loads(out.read_text())
    assert len(rows) == 1 and rows[0]["format"] == "onnx" and set(rows[0]["images_per_s"]) == {"1", "4"}


@pytest.mark.parametrize("argv, message", [
    (["--formats", "tflite"], "formats must be among pytorch, onnx, int8"),
    (["--batches", "1,x"], "--batches takes batch sizes like 1,64,1024"),
    (["--batches", "0"], "batch sizes must be >= 1"),
])
def test_bad_options_are_one_line_errors(digits_run, cache, capsys, argv, message):
    assert main(["bench", str(digits_run), *argv]) != 0
    err = capsys.readouterr().err
    assert message in err and err.count("\n") == 1


def test_bench_refuses_unknown_formats_before_loading_anything():
    with pytest.raises(ConfigError, match="formats must be among"):
        bench(["no-such-run"], formats=("onnx", "gif"))
