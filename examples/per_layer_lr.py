"""Train the backbone at a fraction of the head's learning rate: python examples/per_layer_lr.py --ratio 0.1.

The backbone is ``model.yaml["backbone"]`` (layers 0..10 for yolo26n); each of Ultralytics' weight/bn/bias groups is
split into head and backbone, and warmup and the LR schedule keep the ratio.
"""

import lightning as L
from common import example_parser, print_metrics, print_param_groups

from yolo_lightning import YOLODataModule, YOLOModule


def main() -> None:
    """Train with backbone_lr_ratio, then print every parameter group's final learning rate."""
    parser = example_parser(__doc__, epochs=20, root="runs/per_layer_lr")
    parser.add_argument("--ratio", type=float, default=0.1, help="backbone lr / head lr")
    args = parser.parse_args()

    datamodule = YOLODataModule(data=args.data, imgsz=64, batch=16, workers=2, close_mosaic=5)
    model = YOLOModule(
        model=args.model, optimizer="AdamW", lr0=0.003, nbs=16, warmup_epochs=1, backbone_lr_ratio=args.ratio
    )
    trainer = L.Trainer(max_epochs=args.epochs, default_root_dir=args.root)
    trainer.fit(model, datamodule)
    print_param_groups(trainer)
    print_metrics(trainer)


if __name__ == "__main__":
    main()
