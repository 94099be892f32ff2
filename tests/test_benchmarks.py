"""Each benchmark's --dry-run: the harness runs end to end on a little real data (figures not saved)."""

import subprocess
import sys
from pathlib import Path

import pytest

BENCHMARKS = Path(__file__).resolve().parents[1] / "benchmarks"


@pytest.mark.slow
@pytest.mark.parametrize("script, expected", [
    ("train_throughput.py", "img/s"),
    ("time_to_accuracy.py", "| 50.0% | digitlab --preset mnist-fast | 1/1 |"),
    ("best_accuracy.py", "Mean over 1 seeds: test accuracy"),
])
def test_benchmark_dry_run(shared_data_dir, script, expected):
    result = subprocess.run([sys.executable, str(BENCHMARKS / script), "--data-dir", str(shared_data_dir),
                             "--dry-run"], capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-2000:]
    assert expected in result.stdout
    assert "saved" not in result.stdout  # a dry run leaves the recorded figures alone
