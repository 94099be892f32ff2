"""Each benchmark's --dry-run: the harness runs end to end on a little real data (figures not saved)."""

import re
import subprocess
import sys
from pathlib import Path

import pytest
from read_helpers import read_model  # noqa: F401 - fixture

BENCHMARKS = Path(__file__).resolve().parents[1] / "benchmarks"


@pytest.mark.slow
@pytest.mark.parametrize("script, options, expected", [
    ("train_throughput.py", [], r"img/s"),
    # the compiled-against-eager row: throughputs, speed-up, compile seconds, epochs to pay off
    ("train_throughput.py", ["--compile", "--models", "fastcnn"], r"\| fastcnn \| \d+ \| \d+ \| [\d.]+x \| [\d.]+ \|"),
    ("time_to_accuracy.py", [], re.escape("| 50.0% | digitlab --preset mnist-fast | 1/1 |")),
    ("best_accuracy.py", [], r"Mean over 1 seeds: test accuracy"),
])
def test_benchmark_dry_run(shared_data_dir, script, options, expected):
    result = subprocess.run([sys.executable, str(BENCHMARKS / script), "--data-dir", str(shared_data_dir),
                             "--dry-run", *options], capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-2000:]
    assert re.search(expected, result.stdout), result.stdout[-2000:]
    assert "saved" not in result.stdout  # a dry run leaves the recorded figures alone


@pytest.mark.slow
@pytest.mark.parametrize("script, options, expected", [
    ("read_synthetic.py", ["--verifier", "none"],
     r"\| easy \| 1 \| 20 \|.*\| hard \| 2 \| 20 \|.*\| cheque \| 3 \| 20 \|.*\| cell \| 4 \| 20 \|"
     r".*\| band \| - \| \d+% of"),
    # strings drawn from the run's own test digits, one row per variant
    ("read_scripts.py", [], r"\| mnist \| lenet5-improved \| .* \| no \| \d+ \| [\d.]+% \| hard \| 20 \|"),
])
def test_reading_benchmark_dry_run(shared_data_dir, read_model, script, options, expected):
    _, run = read_model
    result = subprocess.run([sys.executable, str(BENCHMARKS / script), "--data-dir", str(shared_data_dir),
                             "--checkpoint", str(run), "--dry-run", *options],
                            capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-2000:]
    assert re.search(expected, result.stdout, re.S), result.stdout[-2000:]
    assert "saved" not in result.stdout
