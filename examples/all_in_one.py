"""The guide's seven customizations in one run, no custom trainer: python examples/all_in_one.py.

Per-class F1 (always logged) + class weights + best.pt by mAP50 + freeze-then-unfreeze + per-layer LR + SyncBatchNorm
(active under multi-GPU DDP) + gradient clipping. best.pt/last.pt stay plain Ultralytics files.
"""

from pathlib import Path

import lightning as L
from common import example_parser, print_metrics

from yolo_lightning import YOLODataModule, YOLOModule
from yolo_lightning.callbacks import FreezeBackbone, GradientClipping, SyncBatchNorm, UltralyticsCheckpoint


def main() -> None:
    """Train with every customization at once, then print what each did."""
    parser = example_parser(__doc__, epochs=20, root="runs/all_in_one")
    parser.add_argument("--unfreeze-at-epoch", type=int, default=5, help="the epoch from which every layer trains")
    parser.add_argument("--devices", default="auto", help="Lightning's devices: 'auto', a count, or '0,1'")
    args = parser.parse_args()

    datamodule = YOLODataModule(data=args.data, imgsz=64, batch=16, workers=2, close_mosaic=5)
    model = YOLOModule(
        model=args.model, optimizer="AdamW", lr0=0.003, nbs=16, warmup_epochs=1,
        class_weights="inverse_frequency", class_weights_power=0.5, backbone_lr_ratio=0.1,
    )  # fmt: skip
    checkpoint = UltralyticsCheckpoint(monitor="metrics/mAP50(B)")
    callbacks = [
        checkpoint,
        FreezeBackbone(layers=10, unfreeze_at_epoch=args.unfreeze_at_epoch),
        GradientClipping(max_norm=5.0),
        SyncBatchNorm(),
    ]
    trainer = L.Trainer(max_epochs=args.epochs, devices=args.devices, default_root_dir=args.root, callbacks=callbacks)
    trainer.fit(model, datamodule)
    if trainer.is_global_zero:
        print(f"best.pt by metrics/mAP50(B) = {float(checkpoint.best_model_score):.4f}: {Path(checkpoint.best_model_path).with_suffix('.pt')}")
        print_metrics(trainer, ("metrics/F1(B)", "metrics/F1(B)/star", "metrics/mAP50(B)", "train/grad_norm_epoch"))


if __name__ == "__main__":
    main()
