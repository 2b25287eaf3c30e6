"""Where a default run's epoch goes: training steps, validation, and what UltralyticsCheckpoint writes.

    python bench/epoch_costs.py --epochs 10

Runs the quick start's earlier recipe (yolov8n, ``data="synthetic"``: 128 images, 64 px, batch 16, cls 2.0, no plots;
the quick start now trains on ``synthetic256`` at batch 32 with cls 4.0: other step costs, see bench/step_cost.py, and
the same checkpoint costs per epoch) with a plain ``L.Trainer().fit`` and times, by wrapping them, the module's
steps, the checkpoint callback's ``on_validation_end`` and the calls inside it (Lightning's ``save_checkpoint``, the
Ultralytics ``.pt`` build, ``torch.save``, ``fsync``, the byte copy of best.* to last.*). Prints seconds in total,
calls and seconds per epoch.
"""

from __future__ import annotations

import argparse
import collections
import functools
import tempfile
import time
from typing import Any

import lightning as L
import torch
from lightning.pytorch.trainer.connectors.checkpoint_connector import _CheckpointConnector

from yolo_lightning import YOLODataModule, YOLOModule, files
from yolo_lightning.callbacks import checkpoint

SECONDS: dict[str, float] = collections.defaultdict(float)
CALLS: collections.Counter[str] = collections.Counter()


def timed(owner: Any, name: str, label: str) -> None:
    """Replace ``owner.name`` by a wrapper that adds its wall time to ``SECONDS[label]``."""
    original = getattr(owner, name)

    @functools.wraps(original)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        start = time.perf_counter()
        try:
            return original(*args, **kwargs)
        finally:
            SECONDS[label] += time.perf_counter() - start
            CALLS[label] += 1

    setattr(owner, name, wrapper)


def main() -> None:
    """Fit with the timers in place and print the table."""
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--epochs", type=int, default=10)
    args = parser.parse_args()
    for owner, name, label in [
        (YOLOModule, "training_step", "module.training_step (forward + loss)"),
        (YOLOModule, "validation_step", "module.validation_step"),
        (YOLOModule, "on_validation_epoch_end", "module.on_validation_epoch_end (metrics)"),
        (checkpoint.UltralyticsCheckpoint, "on_validation_end", "checkpoint callback, all of it"),
        (checkpoint.UltralyticsCheckpoint, "_finite", "  finite check of the weights"),
        (checkpoint.UltralyticsCheckpoint, "_ultralytics_checkpoint", "  build the fp16 .pt dict"),
        (L.Trainer, "save_checkpoint", "  Lightning save_checkpoint (.ckpt)"),
        (_CheckpointConnector, "dump_checkpoint", "    dump_checkpoint (state dicts)"),
        (torch, "save", "  torch.save (.ckpt and .pt)"),
        (files.os, "fsync", "  fsync"),
        (checkpoint, "stage_copy", "  copy best.* to last.*"),
    ]:  # fmt: skip
        timed(owner, name, label)
    datamodule = YOLODataModule(data="synthetic", imgsz=64, batch=16, workers=0, mosaic=0.0, scale=0.2)
    module = YOLOModule(model="yolov8n.yaml", optimizer="AdamW", lr0=0.003, nbs=16, warmup_epochs=1,
                        warmup_bias_lr=0.0, cls=2.0, plots=False)  # fmt: skip
    start = time.perf_counter()
    trainer = L.Trainer(max_epochs=args.epochs, default_root_dir=tempfile.mkdtemp(), enable_progress_bar=False, logger=False)
    trainer.fit(module, datamodule)
    print(f"\nfit: {time.perf_counter() - start:.1f} s for {args.epochs} epochs (torch threads: the plan line above)")
    print("| what | s total | calls | s per epoch |\n|---|---|---|---|")
    for label in SECONDS:
        print(f"| {label} | {SECONDS[label]:.2f} | {CALLS[label]} | {SECONDS[label] / args.epochs:.3f} |")


if __name__ == "__main__":
    main()
