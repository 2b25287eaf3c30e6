"""Keep best.pt by mAP50 instead of Ultralytics' fitness (mAP50-95): python examples/best_by_map50.py.

``UltralyticsCheckpoint`` is Lightning's ModelCheckpoint writing Ultralytics-format best.pt/last.pt; ``monitor`` takes
any logged key (``metrics/recall(B)``, ``metrics/F1(B)/star``...), ``mode`` "max" or "min".
"""

from pathlib import Path

import lightning as L
from common import example_parser

from yolo_lightning import YOLODataModule, YOLOModule
from yolo_lightning.callbacks import UltralyticsCheckpoint


def main() -> None:
    """Train with best.pt chosen by mAP50, then print which epoch won and where the file is."""
    args = example_parser(__doc__, epochs=20, root="runs/best_by_map50").parse_args()

    datamodule = YOLODataModule(data=args.data, imgsz=64, batch=16, workers=2, close_mosaic=5)
    model = YOLOModule(model=args.model, optimizer="AdamW", lr0=0.003, nbs=16, warmup_epochs=1)
    checkpoint = UltralyticsCheckpoint(monitor="metrics/mAP50(B)", mode="max")
    trainer = L.Trainer(max_epochs=args.epochs, default_root_dir=args.root, callbacks=[checkpoint])
    trainer.fit(model, datamodule)
    history = checkpoint.history["metrics/mAP50(B)"]
    best_epoch = max(range(len(history)), key=history.__getitem__)
    best_pt = Path(checkpoint.best_model_path).with_suffix(".pt")
    print(f"best.pt: epoch {best_epoch}, metrics/mAP50(B) {float(checkpoint.best_model_score):.4f}: {best_pt}")
    print(f"  plain Ultralytics loads it: from ultralytics import YOLO; YOLO('{best_pt}').val()")


if __name__ == "__main__":
    main()
