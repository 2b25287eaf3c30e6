"""DepthTrainer's post-training calibration: after the final validation, each saved depth checkpoint gets the
log-affine output calibration (``cal_a``/``cal_b`` of its head) Ultralytics' ``calibrate_checkpoint`` selects on the
validation images, so ``YOLO("best.pt")`` predicts metric-scaled depth as a best.pt of DepthTrainer does."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import torch
from lightning.pytorch.utilities import rank_zero_warn
from torch.utils.data import DataLoader, Dataset
from ultralytics.models.yolo.depth.calibrate import calibrate_checkpoint

from yolo_lightning.files import stage_copy


def calibrate_depth_weights(
    weights: list[Path], dataset: Dataset, batch: int, device: torch.device, data: dict[str, Any], plot_dir: Path | None
) -> None:
    """Calibrate each existing file of ``weights`` on ``dataset`` (the validation images), as DepthTrainer.final_eval;
    ``plot_dir``: where the first file's ``val_batch*_calibrated.jpg`` panels go (None: no plots).

    Ultralytics re-saves the checkpoint in place with ``torch.save``; here it works on a copy that replaces the file
    only once written whole, so an interruption never leaves a truncated best.pt.
    """
    loader = DataLoader(dataset, batch_size=batch, shuffle=False, num_workers=0, collate_fn=dataset.collate_fn)
    for index, path in enumerate(p for p in weights if p.is_file()):
        staged = stage_copy(path, path)
        try:
            calibrate_checkpoint(
                staged, loader, device, plot_dir=plot_dir if index == 0 else None, dataset_hash=data.get("hash"),
                validation_split=_validation_split(data), max_depth=data.get("max_depth") or 100.0,
            )  # fmt: skip
            os.replace(staged, path)
        except Exception as e:  # as DepthTrainer.final_eval: the weights stay valid, only uncalibrated
            rank_zero_warn(f"Depth calibration of {path} skipped ({type(e).__name__}: {e}); it stays uncalibrated.")
        finally:
            staged.unlink(missing_ok=True)


def _validation_split(data: dict[str, Any]) -> str | None:
    """The validation split relative to the dataset root, the provenance DepthTrainer records (None if outside)."""
    try:
        return Path(data["val"]).resolve().relative_to(Path(data["path"]).resolve()).as_posix()
    except (KeyError, TypeError, ValueError):  # no split path, a list of folders, or one outside the root
        return None
