"""Clip gradients at a chosen norm and log the pre-clip norm: python examples/gradient_clipping.py --max-norm 5."""

import lightning as L

from common import example_parser, print_metrics

from yolo_lightning import YOLODataModule, YOLOModule
from yolo_lightning.callbacks import GradientClipping


def main() -> None:
    """Train yolo26n on the embedded synthetic dataset with GradientClipping, then print the norms and metrics."""
    parser = example_parser(__doc__, epochs=20, root="runs/gradient_clipping")
    parser.add_argument("--max-norm", type=float, default=None, help="default: 10.0 for YOLO, 0.1 for RT-DETR; 0: off")
    args = parser.parse_args()

    datamodule = YOLODataModule(data=args.data, imgsz=64, batch=16, workers=2, close_mosaic=5)
    model = YOLOModule(model=args.model, optimizer="AdamW", lr0=0.003, nbs=16, warmup_epochs=1)
    clipping = GradientClipping(max_norm=args.max_norm)
    trainer = L.Trainer(max_epochs=args.epochs, default_root_dir=args.root, callbacks=[clipping])
    trainer.fit(model, datamodule)
    norm = float(trainer.callback_metrics["train/grad_norm_epoch"])
    print(f"max_norm {clipping.resolved_max_norm}, last epoch's mean pre-clip gradient norm {norm:.3f}")
    print_metrics(trainer)


if __name__ == "__main__":
    main()
