"""Clip gradients at a chosen norm and log the pre-clip norm: python examples/gradient_clipping.py --max-norm 5."""

import argparse

import lightning as L

from yolo_lightning import YOLODataModule, YOLOModule
from yolo_lightning.callbacks import GradientClipping


def main() -> None:
    """Train yolo26n on the embedded synthetic dataset with GradientClipping, then print the norms and metrics."""
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--epochs", type=int, default=20)
    parser.add_argument("--max-norm", type=float, default=None, help="default: 10.0 for YOLO, 0.1 for RT-DETR; 0: off")
    parser.add_argument("--model", default="yolo26n.yaml")
    parser.add_argument("--data", default="synthetic", help="a data.yaml path, or 'synthetic'")
    parser.add_argument("--root", default="runs/gradient_clipping", help="Lightning's default_root_dir")
    args = parser.parse_args()

    datamodule = YOLODataModule(data=args.data, imgsz=64, batch=16, workers=2, close_mosaic=5)
    model = YOLOModule(model=args.model, optimizer="AdamW", lr0=0.003, nbs=16, warmup_epochs=1)
    clipping = GradientClipping(max_norm=args.max_norm)
    trainer = L.Trainer(max_epochs=args.epochs, default_root_dir=args.root, callbacks=[clipping])
    trainer.fit(model, datamodule)
    norm = float(trainer.callback_metrics["train/grad_norm_epoch"])
    print(f"max_norm {clipping.resolved_max_norm}, last epoch's mean pre-clip gradient norm {norm:.3f}")
    for key in ("metrics/precision(B)", "metrics/recall(B)", "metrics/mAP50(B)", "metrics/mAP50-95(B)"):
        print(f"{key:<22} {float(trainer.callback_metrics[key]):.4f}")


if __name__ == "__main__":
    main()
