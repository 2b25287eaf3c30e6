"""Train yolo26n on the embedded synthetic dataset with the Python API: python examples/train.py --epochs 60."""

import argparse

import lightning as L

from yolo_lightning import YOLODataModule, YOLOModule


def main() -> None:
    """Parse the few options of this example and run Trainer.fit, then print the final metrics."""
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--epochs", type=int, default=60)
    parser.add_argument("--model", default="yolo26n.yaml")
    parser.add_argument("--data", default="synthetic", help="a data.yaml path, or 'synthetic'")
    parser.add_argument("--root", default="runs/example", help="Lightning's default_root_dir")
    args = parser.parse_args()

    datamodule = YOLODataModule(data=args.data, imgsz=64, batch=16, workers=2, close_mosaic=0)
    model = YOLOModule(model=args.model, optimizer="AdamW", lr0=0.003, nbs=16, warmup_epochs=1, cls=2.0)
    trainer = L.Trainer(max_epochs=args.epochs, default_root_dir=args.root)
    trainer.fit(model, datamodule)
    for key in ("metrics/precision(B)", "metrics/recall(B)", "metrics/mAP50(B)", "metrics/mAP50-95(B)"):
        print(f"{key:<22} {float(trainer.callback_metrics[key]):.4f}")


if __name__ == "__main__":
    main()
