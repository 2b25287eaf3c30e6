"""The README's examples run (shortened to one epoch on the small dataset by their own arguments)."""

from __future__ import annotations

import pytest
from example_runs import run_example_config, run_example_script


@pytest.mark.slow
def test_quickstart_config_trains_and_prints_results(tiny_data_yaml, tmp_path):
    output = run_example_config("quickstart.yaml", tiny_data_yaml, tmp_path, "--trainer.max_epochs", "1")
    assert "yolo-lightning fit results:" in output and "metrics/mAP50-95(B)" in output


@pytest.mark.slow
def test_python_api_example(tiny_data_yaml, tmp_path):
    assert "metrics/mAP50-95(B)" in run_example_script("train.py", tiny_data_yaml, tmp_path, "--epochs", "1")
