"""RT-DETR with a 10x lower backbone learning rate (the guide's RTDETRBackboneLRTrainer): python examples/rtdetr_backbone_lr.py.

With ``backbone_lr_ratio`` set, RT-DETR's ``optimizer="auto"`` means AdamW, lr0 1e-4, warmup_bias_lr 0; the backbone
length comes from the YAML, so rtdetr-l/-x/-resnet50/-resnet101 all work. Gradients are clipped at RT-DETR's 0.1.
"""

import lightning as L
from common import example_parser, print_metrics, print_param_groups

from yolo_lightning import YOLODataModule, YOLOModule
from yolo_lightning.callbacks import GradientClipping


def main() -> None:
    """Train RT-DETR with backbone_lr_ratio and RT-DETR's gradient clipping, then print its groups and metrics."""
    parser = example_parser(__doc__, epochs=5, root="runs/rtdetr_backbone_lr", model="rtdetr-l.yaml")
    parser.add_argument("--ratio", type=float, default=0.1, help="backbone lr / head lr")
    args = parser.parse_args()

    datamodule = YOLODataModule(data=args.data, imgsz=64, batch=8, workers=2, close_mosaic=0)
    model = YOLOModule(model=args.model, nbs=8, warmup_epochs=1, backbone_lr_ratio=args.ratio)
    trainer = L.Trainer(max_epochs=args.epochs, default_root_dir=args.root, callbacks=[GradientClipping()])
    trainer.fit(model, datamodule)
    print_param_groups(trainer)
    print_metrics(trainer)


if __name__ == "__main__":
    main()
