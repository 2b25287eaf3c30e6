"""bench/gpu_check.py end to end on CPU with tiny settings: every code path but the CUDA calls."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

SCRIPT = Path(__file__).resolve().parents[1] / "bench" / "gpu_check.py"
ROWS = (
    "| 32-true best.pt (epoch ",
    "| 32-true best.pt: `Trainer(precision='32-true').validate` vs `YOLO(best.pt).val()` |",
    "| 16-mixed (ran as bf16-mixed) best.pt (epoch ",
    "| 16-mixed (ran as bf16-mixed) best.pt: `Trainer(precision='32-true').validate` vs `YOLO(best.pt).val()` |",
    "| train images/s | ",
    "| validation images/s | ",
    "| peak GPU memory, MiB (`max_memory_allocated`) | n/a (no CUDA) |",
    "| train images/s, yolo-lightning 32-true (no AMP, for reference) |",
)


@pytest.mark.slow
def test_gpu_check_runs_end_to_end_on_cpu(tmp_path: Path) -> None:
    command = [
        sys.executable, str(SCRIPT), "--accelerator", "cpu", "--imgsz", "64", "--images", "16", "--val-images", "8",
        "--batch", "8", "--epochs", "2", "--workers", "0", "--out", str(tmp_path),
    ]  # fmt: skip
    env = {**os.environ, "OMP_NUM_THREADS": "1"}  # conftest's YOLO_CONFIG_DIR and YOLO_OFFLINE pass on
    result = subprocess.run(command, capture_output=True, text=True, env=env, timeout=300)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    table = result.stdout[result.stdout.index("| check or measure |") :].splitlines()
    for row in ROWS:
        assert sum(line.startswith(row) for line in table) == 1, (row, table)
    assert all(line.endswith("| PASS |") or "| PASS (weak" in line for line in table if "best.pt" in line)
    assert "torch " in result.stdout and "lightning " in result.stdout and "CPU (" in result.stdout
    assert (tmp_path / "lightning-16-mixed" / "weights" / "best.pt").is_file()
    assert "gpu_check: all checks passed" in result.stderr
