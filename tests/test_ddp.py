"""Lightning's own DDP (2 CPU processes, gloo): every val image counted once, same metrics as one process."""

from __future__ import annotations

import os
import re
import subprocess

import lightning as L
import pytest
import torch
from parity import METRIC_KEYS

from yolo_lightning import YOLODataModule, YOLOModule

DDP = ["--trainer.accelerator", "cpu", "--trainer.devices", "2", "--trainer.strategy", "ddp",
       "--trainer.enable_progress_bar", "false", "--data.imgsz", "64", "--data.workers", "0"]  # fmt: skip


def _cli(*args: str, cwd) -> subprocess.CompletedProcess:
    env = {**os.environ, "OMP_NUM_THREADS": "1"}  # two ranks on two cores
    return subprocess.run(["yolo-lightning", *args], capture_output=True, text=True, cwd=cwd, env=env)


def _printed_results(output: str) -> dict[str, float]:
    return {k: float(v) for k, v in re.findall(r"^\s+(metrics/\S+|fitness)\s+([0-9.]+)$", output, re.MULTILINE)}


@pytest.mark.slow
def test_ddp_validation_equals_single_process(trained_weights, standard_data_yaml, tmp_path):
    trainer = L.Trainer(accelerator="cpu", logger=False, enable_progress_bar=False, default_root_dir=str(tmp_path))
    trainer.validate(YOLOModule(model=str(trained_weights)), YOLODataModule(data=str(standard_data_yaml), imgsz=64, batch=8))
    single = {k: float(v) for k, v in trainer.callback_metrics.items()}

    result = _cli("validate", "--model.model", str(trained_weights), "--data.data", str(standard_data_yaml),
                  "--data.batch", "8", *DDP, cwd=tmp_path)  # fmt: skip
    assert result.returncode == 0, result.stderr[-3000:]
    distributed = _printed_results(result.stdout + result.stderr)
    assert single["metrics/mAP50(B)"] > 0
    for key in METRIC_KEYS:  # printed with 4 decimals
        assert distributed[key] == pytest.approx(single[key], abs=5e-5), key


@pytest.mark.slow
def test_ddp_fit_writes_weights_once(tiny_data_yaml, tmp_path):
    result = _cli("fit", "--data.data", str(tiny_data_yaml), "--data.batch", "8", "--trainer.max_epochs", "1",
                  "--trainer.default_root_dir", str(tmp_path / "run"), *DDP, cwd=tmp_path)  # fmt: skip
    assert result.returncode == 0, result.stderr[-3000:]
    weights = tmp_path / "run" / "weights"
    assert sorted(p.name for p in weights.iterdir()) == ["best.ckpt", "best.pt", "last.ckpt", "last.pt"]
    assert torch.load(weights / "last.pt", weights_only=False)["epoch"] == 0
