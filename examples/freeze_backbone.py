"""Freeze yolo26n's backbone (layers 0..9) for 5 epochs, then fine-tune every layer: python examples/freeze_backbone.py."""

import argparse

import lightning as L

from yolo_lightning import YOLODataModule, YOLOModule
from yolo_lightning.callbacks import FreezeBackbone


def main() -> None:
    """Parse the few options of this example and run Trainer.fit with FreezeBackbone, then print the final metrics."""
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--epochs", type=int, default=20)
    parser.add_argument("--freeze", type=int, default=10, help="freeze the first N layers (yolo26n's backbone: 10)")
    parser.add_argument("--unfreeze-at-epoch", type=int, default=5, help="the epoch from which every layer trains")
    parser.add_argument("--model", default="yolo26n.yaml")
    parser.add_argument("--data", default="synthetic", help="a data.yaml path, or 'synthetic'")
    parser.add_argument("--root", default="runs/freeze_backbone", help="Lightning's default_root_dir")
    args = parser.parse_args()

    datamodule = YOLODataModule(data=args.data, imgsz=64, batch=16, workers=2, close_mosaic=5)
    model = YOLOModule(model=args.model, optimizer="AdamW", lr0=0.003, nbs=16, warmup_epochs=1)
    freeze = FreezeBackbone(layers=args.freeze, unfreeze_at_epoch=args.unfreeze_at_epoch)
    trainer = L.Trainer(max_epochs=args.epochs, default_root_dir=args.root, callbacks=[freeze])
    trainer.fit(model, datamodule)
    for key in ("metrics/precision(B)", "metrics/recall(B)", "metrics/mAP50(B)", "metrics/mAP50-95(B)"):
        print(f"{key:<22} {float(trainer.callback_metrics[key]):.4f}")


if __name__ == "__main__":
    main()
