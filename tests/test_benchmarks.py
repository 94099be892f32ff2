"""Each benchmark's --dry-run: the harness runs end to end on a little real data (figures not saved)."""

import re
import subprocess
import sys
from pathlib import Path

import pytest

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
