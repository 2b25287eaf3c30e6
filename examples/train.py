"""The quick start with the Python API (its config's recipe): python examples/train.py --epochs 50."""

import lightning as L

from common import example_parser, print_metrics

from yolo_lightning import YOLODataModule, YOLOModule


def main() -> None:
    """Parse the few options of this example and run Trainer.fit, then print the final metrics."""
    parser = example_parser(__doc__, epochs=50, root="runs/example", model="yolov8n.yaml", data="synthetic256")
    args = parser.parse_args()

    datamodule = YOLODataModule(data=args.data, imgsz=64, batch=32, workers=0, mosaic=0.0, scale=0.2)
    model = YOLOModule(
        model=args.model, optimizer="AdamW", lr0=0.003, nbs=32, warmup_epochs=1, warmup_bias_lr=0.0, cls=4.0
    )
    trainer = L.Trainer(max_epochs=args.epochs, default_root_dir=args.root)
    trainer.fit(model, datamodule)
    print_metrics(trainer)


if __name__ == "__main__":
    main()
