"""Log mean and per-class F1/P/R/AP every epoch, with plots and a COCO mAP cross-check: python examples/per_class_f1.py.

Keys: ``metrics/F1(B)`` and ``metrics/F1(B)/<class>`` (also precision, recall, mAP50, mAP50-95 per class), read at
the confidence Ultralytics picks. After the last epoch the F1/PR curves and confusion matrices land in ``--root``.
The COCO cross-check needs faster-coco-eval: pip install -e ".[coco]".
"""

import lightning as L
from common import example_parser, print_metrics

from yolo_lightning import YOLODataModule, YOLOModule


def main() -> None:
    """Train with per-class metrics (always logged) and the torchmetrics MeanAveragePrecision cross-check."""
    args = example_parser(__doc__, epochs=20, root="runs/per_class_f1").parse_args()

    datamodule = YOLODataModule(data=args.data, imgsz=64, batch=16, workers=2, close_mosaic=5)
    model = YOLOModule(model=args.model, optimizer="AdamW", lr0=0.003, nbs=16, warmup_epochs=1, map_cross_check=True)
    trainer = L.Trainer(max_epochs=args.epochs, default_root_dir=args.root)
    trainer.fit(model, datamodule)
    per_class_f1 = sorted(k for k in trainer.callback_metrics if k.startswith("metrics/F1(B)/"))
    print_metrics(trainer, ("metrics/F1(B)", *per_class_f1, "metrics/mAP50-95(B)", "metrics/coco/mAP50-95(B)"))


if __name__ == "__main__":
    main()
