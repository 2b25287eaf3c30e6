"""DepthTrainer's post-training calibration: after the final validation, each saved depth checkpoint gets the
log-affine output calibration (``cal_a``/``cal_b`` of its head) Ultralytics' ``calibrate_checkpoint`` selects on the
validation images, so ``YOLO("best.pt")`` predicts metric-scaled depth as a best.pt of DepthTrainer does."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import torch
from lightning.pytorch.utilities import rank_zero_info, rank_zero_warn
from torch import nn
from torch.utils.data import DataLoader, Dataset
from ultralytics.models.yolo.depth.calibrate import _depth_head, calibrate_checkpoint

from yolo_lightning.files import stage_copy


def calibrate_depth_weights(
    weights: list[Path], dataset: Dataset, batch: int, device: torch.device, data: dict[str, Any],
    plot_dir: Path | None, network: nn.Module,
) -> None:  # fmt: skip
    """Calibrate each existing file of ``weights`` on ``dataset`` (the validation images), as DepthTrainer.final_eval,
    and give ``network`` (the trained module's) the first file's calibration, as Ultralytics' model reloads best.pt
    after training; ``plot_dir``: where the first file's ``val_batch*_calibrated.jpg`` panels go (None: no plots).

    Under DDP, DepthTrainer calibrates on rank 0's share of the validation images; here every validation image is
    used (as a single-GPU DepthTrainer does). Ultralytics re-saves the checkpoint in place with ``torch.save``; here
    it works on a copy that replaces the file only once written whole and flushed to disk, so an interruption never
    leaves a truncated best.pt. A failed calibration leaves the file as it was, with a warning (as DepthTrainer).
    """
    loader = DataLoader(dataset, batch_size=batch, shuffle=False, num_workers=0, collate_fn=dataset.collate_fn)
    for index, path in enumerate(p for p in weights if p.is_file()):
        staged = None
        try:
            staged = stage_copy(path, path)
            calibration = calibrate_checkpoint(
                staged, loader, device, plot_dir=plot_dir if index == 0 else None, dataset_hash=data.get("hash"),
                validation_split=_validation_split(data), max_depth=data.get("max_depth") or 100.0,
            )  # fmt: skip
            _flush(staged)
            os.replace(staged, path)
        except Exception as e:  # as DepthTrainer.final_eval: the weights stay valid, only uncalibrated
            rank_zero_warn(f"Depth calibration of {path} skipped ({type(e).__name__}: {e}); it stays uncalibrated.")
            continue
        finally:
            if staged is not None:
                staged.unlink(missing_ok=True)
        if calibration is not None:
            rank_zero_info(f"Depth calibration written to {path}: a={calibration['a']:.4f} b={calibration['b']:.4f}")
            if index == 0 and (head := _depth_head(network)) is not None:
                head.cal_a.fill_(calibration["a"])
                head.cal_b.fill_(calibration["b"])


def _flush(path: Path) -> None:
    """Force ``path``'s content to disk before it replaces a checkpoint."""
    with open(path, "rb") as file:
        os.fsync(file.fileno())


def _validation_split(data: dict[str, Any]) -> str | None:
    """The validation split relative to the dataset root, the provenance DepthTrainer records (None if outside)."""
    try:
        return Path(data["val"]).resolve().relative_to(Path(data["path"]).resolve()).as_posix()
    except (KeyError, TypeError, ValueError):  # no split path, a list of folders, or one outside the root
        return None
