"""Freeze yolo26n's backbone (layers 0..9) for 5 epochs, then fine-tune every layer: python examples/freeze_backbone.py."""

import lightning as L

from common import example_parser, print_metrics

from yolo_lightning import YOLODataModule, YOLOModule
from yolo_lightning.callbacks import FreezeBackbone


def main() -> None:
    """Parse the few options of this example and run Trainer.fit with FreezeBackbone, then print the final metrics."""
    parser = example_parser(__doc__, epochs=20, root="runs/freeze_backbone")
    parser.add_argument("--freeze", type=int, default=10, help="freeze the first N layers (yolo26n's backbone: 10)")
    parser.add_argument("--unfreeze-at-epoch", type=int, default=5, help="the epoch from which every layer trains")
    args = parser.parse_args()

    datamodule = YOLODataModule(data=args.data, imgsz=64, batch=16, workers=2, close_mosaic=5)
    model = YOLOModule(model=args.model, optimizer="AdamW", lr0=0.003, nbs=16, warmup_epochs=1)
    freeze = FreezeBackbone(layers=args.freeze, unfreeze_at_epoch=args.unfreeze_at_epoch)
    trainer = L.Trainer(max_epochs=args.epochs, default_root_dir=args.root, callbacks=[freeze])
    trainer.fit(model, datamodule)
    print_metrics(trainer)


if __name__ == "__main__":
    main()
