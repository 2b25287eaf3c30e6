"""glibc malloc thresholds: freed activation memory is reused instead of being trimmed and faulted back in."""

from __future__ import annotations

import os
import platform
import subprocess
import sys

import pytest

pytestmark = pytest.mark.skipif(
    platform.system() != "Linux" or platform.libc_ver()[0] != "glibc", reason="glibc malloc only"
)

# A fresh process (malloc's thresholds are process state) allocates and frees three 12 MiB blocks four times, like
# one forward pass's activations, and prints whether the thresholds were applied and the last round's page faults.
PROBE = """
import resource, sys, torch
from yolo_lightning.allocator import keep_freed_memory_for_reuse
applied = keep_freed_memory_for_reuse() if sys.argv[1] == "tune" else False
faults = lambda: resource.getrusage(resource.RUSAGE_SELF).ru_minflt
for _ in range(4):
    before = faults()
    blocks = [torch.ones(12 * 1024 * 1024, dtype=torch.uint8) for _ in range(3)]
    del blocks
print(applied, faults() - before)
"""
PAGES_PER_ROUND = 3 * 12 * 1024 * 1024 // 4096


def run_probe(mode: str, **env: str) -> tuple[bool, int]:
    """(thresholds applied, page faults of the probe's last round) in a fresh interpreter."""
    result = subprocess.run(
        [sys.executable, "-c", PROBE, mode], capture_output=True, text=True, env={**os.environ, **env}, check=True
    )
    applied, faults = result.stdout.splitlines()[-1].split()
    return applied == "True", int(faults)


def test_tuned_process_reuses_freed_blocks_without_page_faults() -> None:
    applied, faults = run_probe("tune")
    assert applied
    assert faults < PAGES_PER_ROUND // 100, f"{faults} page faults re-allocating freed blocks"


def test_user_malloc_settings_are_left_alone() -> None:
    """Also the control of the test above: with glibc's default thresholds pinned (dynamic rule off) the same probe
    faults the blocks back in every round. (Left dynamic, the default's outcome depends on what the process freed
    before, so it is no reliable control.)"""
    applied, faults = run_probe("tune", MALLOC_TRIM_THRESHOLD_="131072")
    assert not applied
    assert faults > PAGES_PER_ROUND // 3


def test_setup_applies_the_thresholds_in_every_process(tiny_data_yaml, tmp_path, monkeypatch) -> None:
    """``YOLOModule.setup`` (run by fit/validate/test/predict in each DDP process) applies them."""
    import lightning as L

    import yolo_lightning.module
    from yolo_lightning import YOLODataModule, YOLOModule

    calls = []
    monkeypatch.setattr(yolo_lightning.module, "keep_freed_memory_for_reuse", lambda: calls.append(True))
    trainer = L.Trainer(
        accelerator="cpu",
        logger=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        default_root_dir=tmp_path,
    )
    trainer.validate(
        YOLOModule(model="yolov8n.yaml", plots=False), YOLODataModule(data=tiny_data_yaml, imgsz=64, batch=8)
    )
    assert calls == [True]
