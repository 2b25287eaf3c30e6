"""A standalone 2-process CPU DDP fit for tests/test_preemption.py, preempted by a SIGTERM that reaches one rank only.

Run as a script, never imported by pytest: Lightning's ``ddp`` re-executes ``sys.argv`` for rank 1.

    python tests/preemption_probe.py OUT_DIR --data DATA_YAML --sigterm-rank 0|1 [--linger S] [--resume LAST_CKPT]
                                     [--during train|validation]

The run folder is ``OUT_DIR/run``. Rank 0 (the launching process) waits for the ranks it started and writes their exit
statuses to ``OUT_DIR/children.json`` (its own is the script's); with ``--linger`` it stays S more seconds, as a slow
logger would, after they have exited.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import threading
import time
from pathlib import Path
from typing import Any

import lightning as L

from yolo_lightning import YOLODataModule, YOLOModule

EPOCHS = 2
SIGTERM_AT = (1, 1)  # (epoch, batch): the middle batch of epoch 1 (24 images, global batch 8: 3 batches an epoch)
SLOW_BATCH_S = 1.5  # that batch takes this long on every rank...
SIGTERM_AFTER_S = 0.5  # ...and the signal comes this far into it


class SigtermOneRank(L.Callback):
    """Slow down batch ``SIGTERM_AT`` on every rank, and send SIGTERM to rank ``rank`` only, in the middle of it; with
    ``during="validation"``, epoch 0's first validation batch instead."""

    def __init__(self, rank: int, during: str) -> None:
        self.rank = rank
        self.during = during

    def on_train_batch_start(self, trainer: L.Trainer, pl_module: L.LightningModule, batch: Any, batch_idx: int) -> None:
        if self.during == "train" and (trainer.current_epoch, batch_idx) == SIGTERM_AT and trainer.ckpt_path is None:
            self._preempt(trainer)

    def on_validation_batch_start(self, trainer: L.Trainer, pl_module: L.LightningModule, *args: Any) -> None:
        if self.during == "validation" and trainer.current_epoch == 0 and trainer.ckpt_path is None:
            self._preempt(trainer)

    def _preempt(self, trainer: L.Trainer) -> None:
        if trainer.global_rank == self.rank:
            threading.Timer(SIGTERM_AFTER_S, os.kill, (os.getpid(), signal.SIGTERM)).start()
        time.sleep(SLOW_BATCH_S)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("out", type=Path)
    parser.add_argument("--data", required=True)
    parser.add_argument("--sigterm-rank", type=int, default=1)
    parser.add_argument("--linger", type=float, default=0.0)
    parser.add_argument("--resume", default=None)
    parser.add_argument("--during", default="train", choices=["train", "validation"])
    args = parser.parse_args()
    trainer = L.Trainer(
        accelerator="cpu", devices=2, strategy="ddp", max_epochs=EPOCHS, logger=False, enable_progress_bar=False,
        enable_model_summary=False, num_sanity_val_steps=0, default_root_dir=str(args.out / "run"),
        callbacks=[SigtermOneRank(args.sigterm_rank, args.during)],
    )  # fmt: skip
    module = YOLOModule(model="yolov8n.yaml", nbs=8, plots=False)  # nbs = the global batch: a step every batch
    try:
        trainer.fit(module, YOLODataModule(data=args.data, imgsz=64, batch=8, workers=0), ckpt_path=args.resume)
    finally:
        if trainer.global_rank == 0:
            children = {str(r + 1): proc.wait(timeout=120) for r, proc in enumerate(trainer.strategy.launcher.procs)}
            (args.out / "children.json").write_text(json.dumps(children))
            time.sleep(args.linger)


if __name__ == "__main__":
    main()
