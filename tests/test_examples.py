"""The README's examples run (shortened to one epoch on the small dataset by their own arguments)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


@pytest.mark.slow
def test_quickstart_config_trains_and_prints_results(tiny_data_yaml, tmp_path):
    result = subprocess.run(
        ["yolo-lightning", "fit", "--config", str(ROOT / "examples/configs/quickstart.yaml"),
         "--trainer.max_epochs", "1", "--data.data", str(tiny_data_yaml), "--trainer.default_root_dir", str(tmp_path)],
        capture_output=True, text=True, cwd=tmp_path,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr[-3000:]
    assert "yolo-lightning fit results:" in result.stderr + result.stdout
    assert "metrics/mAP50-95(B)" in result.stderr + result.stdout


@pytest.mark.slow
def test_python_api_example(tiny_data_yaml, tmp_path):
    result = subprocess.run(
        [sys.executable, str(ROOT / "examples/train.py"), "--epochs", "1", "--data", str(tiny_data_yaml),
         "--root", str(tmp_path)],
        capture_output=True, text=True, cwd=tmp_path,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr[-3000:]
    assert "metrics/mAP50-95(B)" in result.stdout
